"""Write the benchmark case files in benchmarks/cases/ (deterministic; re-run to regenerate).

    python benchmarks/make_cases.py

The files are committed; this script documents how they were made.  Labels
(one-hot Y, 0/1 y) are written inline as exact values; everything else is drawn
by the case's own seeded generator, so the files stay small (no .npy data, even
for the 10^7-entry X of logistic-1000x10000, whose file raises [limits]).

The issue-16 cases (MLP 784-{32,128}-10, logistic 1000x{1000,10000}, Rosenbrock
10^{4,5,6}, a small conv net) each have one correct hand-written numpy gradient
candidate in cases/impl/ (``grad``; ``forward`` there is the same loss in plain
numpy, the benchmarks' central-difference baseline) and ``[check] schemes = []``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent / "cases"

NET3 = '''name = "bench-net3-47"
description = """Benchmark: the 47-parameter 3-layer ReLU network of the 'Gradient Checking'
exercise. X (4,3), W1 (5,4), b1 (5,1), W2 (3,5), b2 (3,1), W3 (1,3), b3 (1,1) drawn with
numpy.random.seed(1) randn in that order; LINEAR-RELU-LINEAR-RELU-LINEAR-SIGMOID,
cross-entropy mean over m = 3 with Y = [[1, 1, 0]]."""
seed = 1
rng = "numpy-legacy"
loss = "mean(-Y*log(A3) - (1 - Y)*log(1 - A3))"

[symbols]
X  = { constant = true, shape = [4, 3], init = "normal" }
Y  = { constant = true, value = [[1, 1, 0]] }
W1 = { shape = [5, 4], init = "normal" }
b1 = { shape = [5, 1], init = "normal" }
W2 = { shape = [3, 5], init = "normal" }
b2 = { shape = [3, 1], init = "normal" }
W3 = { shape = [1, 3], init = "normal" }
b3 = { shape = [1, 1], init = "normal" }

[define]
Z1 = "W1 @ X + b1"
A1 = "relu(Z1)"
Z2 = "W2 @ A1 + b2"
A2 = "relu(Z2)"
Z3 = "W3 @ A2 + b3"
A3 = "sigmoid(Z3)"
'''


def _fmt(rows) -> str:
    return "[" + ", ".join("[" + ", ".join(str(int(v)) for v in r) + "]" for r in rows) + "]"


def softmax(samples: int = 32, features: int = 50, classes: int = 10) -> str:
    labels = np.random.default_rng(11).integers(0, classes, size=samples)
    Y = np.eye(classes, dtype=int)[labels]
    params = classes * features
    return f'''name = "bench-softmax-{params}"
description = """Benchmark: softmax cross-entropy of a linear layer without bias, W {classes}x{features}
({params} parameters), {samples} samples, one-hot labels Y, loss = mean over samples of
-sum(Y * log_softmax(X W^T))."""
seed = 5
rng = "numpy"
loss = "mean(-sum(Y * log_softmax(X @ W.T, axis=1), axis=1))"

[symbols]
X = {{ constant = true, shape = [{samples}, {features}], init = "normal" }}
Y = {{ constant = true, value = {_fmt(Y)} }}
W = {{ shape = [{classes}, {features}], init = "normal(0, 0.3)" }}
'''


def logistic(samples: int, features: int) -> str:
    y = np.random.default_rng(7).integers(0, 2, size=samples)
    sigma = round(0.5 / math.sqrt(features), 6)  # keeps X w of order 1 (no saturation)
    return f'''name = "bench-logistic-{samples}x{features}"
description = """Benchmark: L2-regularised logistic regression, {samples} samples x {features} features,
L = mean(-y log a - (1-y) log(1-a)) + lam/2 ||w||^2, a = sigmoid(X w + b); {features + 1} parameters."""
seed = 3
rng = "numpy"
loss = "mean(-y*log(A) - (1 - y)*log(1 - A)) + lam/2 * sum(w**2)"

[symbols]
X   = {{ constant = true, shape = [{samples}, {features}], init = "normal" }}
y   = {{ constant = true, value = [{", ".join(str(int(v)) for v in y)}] }}
lam = {{ constant = true, value = 0.1 }}
w   = {{ shape = [{features}], init = "normal(0, {sigma})" }}
b   = {{ value = 0.1 }}

[define]
A = "sigmoid(X @ w + b)"
'''


def rosenbrock(n: int) -> str:
    return f'''name = "bench-rosenbrock-{n}"
description = """Benchmark: the Rosenbrock function in {n} dimensions,
sum_i 100 (x[i+1] - x[i]^2)^2 + (1 - x[i])^2, with shifted slices."""
seed = 2
rng = "numpy"
loss = "sum(100*(x[1:] - x[:-1]**2)**2 + (1 - x[:-1])**2)"

[symbols]
x = {{ shape = [{n}], init = "uniform(-2, 2)" }}
'''


LIMITS_BIG = """
[limits]
max_elements = {max_elements}
max_symbol_elements = {max_symbol}
max_intermediate_elements = {max_inter}
"""


def _candidate(module: str, name: str = "numpy-gradient") -> str:
    return f"""
[[candidate]]
name = "{name}"
code = "impl/{module}.py:grad"
expect = "pass"

[check]
dtypes = ["float32", "float64"]
schemes = []
"""


def mlp(hidden: int, inputs: int = 784, classes: int = 10, batch: int = 64) -> str:
    """784-H-10 ReLU MLP, softmax cross-entropy, batch 64, one-hot labels as an exact constant."""
    labels = np.random.default_rng(17).integers(0, classes, size=batch)
    Y = np.eye(classes, dtype=int)[labels]
    params = inputs * hidden + hidden + hidden * classes + classes
    s1 = round(math.sqrt(2 / inputs), 6)  # He initialisation
    s2 = round(math.sqrt(2 / hidden), 6)
    return f'''name = "bench-mlp-{inputs}-{hidden}-{classes}"
description = """Benchmark: a {inputs}-{hidden}-{classes} ReLU MLP ({params} parameters), batch {batch}, softmax
cross-entropy with one-hot labels Y: Z1 = X W1 + b1, A1 = relu(Z1), Z2 = A1 W2 + b2,
loss = mean over the batch of -sum(Y * log_softmax(Z2)). X ~ U(0, 1) (pixel-like), He-initialised
weights, small random biases. One correct numpy backprop candidate."""
seed = 13
rng = "numpy"
loss = "mean(-sum(Y * log_softmax(Z2, axis=1), axis=1))"

[symbols]
X  = {{ constant = true, shape = [{batch}, {inputs}], init = "uniform(0, 1)" }}
Y  = {{ constant = true, value = {_fmt(Y)} }}
W1 = {{ shape = [{inputs}, {hidden}], init = "normal(0, {s1})" }}
b1 = {{ shape = [{hidden}], init = "normal(0, 0.01)" }}
W2 = {{ shape = [{hidden}, {classes}], init = "normal(0, {s2})" }}
b2 = {{ shape = [{classes}], init = "normal(0, 0.01)" }}

[define]
Z1 = "X @ W1 + b1"
A1 = "relu(Z1)"
Z2 = "A1 @ W2 + b2"
''' + _candidate("mlp")


def logistic_big(samples: int, features: int) -> str:
    """L2 logistic regression like logistic(), with one candidate and (if needed) raised limits."""
    text = logistic(samples, features) + _candidate("logistic")
    entries = samples * features
    if entries > 1_000_000:
        text += LIMITS_BIG.format(max_elements=2 * entries, max_symbol=entries, max_inter=2 * entries)
    return text


def rosenbrock_big(n: int) -> str:
    return rosenbrock(n) + _candidate("rosenbrock")


def conv(batch: int = 32, side: int = 16, classes: int = 10) -> str:
    """A small conv net: one 3x3 filter (nine shifted slices times scalar weights) + bias, relu,
    flatten, a linear layer, softmax cross-entropy."""
    labels = np.random.default_rng(19).integers(0, classes, size=batch)
    Y = np.eye(classes, dtype=int)[labels]
    o = side - 2
    feats = o * o
    params = 9 + 1 + feats * classes + classes
    terms = " +\n    ".join(f"K[{a}, {b}] * X[:, {a}:{a + o}, {b}:{b + o}]" for a in range(3) for b in range(3))
    s2 = round(math.sqrt(1 / feats), 6)
    return f'''name = "bench-conv-{side}x{side}-3x3"
description = """Benchmark: a small conv net ({params} parameters) on a batch of {batch} single-channel
{side}x{side} images: a 3x3 convolution (valid, stride 1) written as nine shifted slices times the
scalar kernel weights K[a, b], plus a bias c; relu; flattened to {feats} features; a linear layer
W ({feats}x{classes}) + bo; softmax cross-entropy with one-hot labels Y, mean over the batch."""
seed = 23
rng = "numpy"
loss = "mean(-sum(Y * log_softmax(Z, axis=1), axis=1))"

[symbols]
X  = {{ constant = true, shape = [{batch}, {side}, {side}], init = "normal" }}
Y  = {{ constant = true, value = {_fmt(Y)} }}
K  = {{ shape = [3, 3], init = "normal(0, 0.333333)" }}
c  = {{ value = 0.05 }}
W  = {{ shape = [{feats}, {classes}], init = "normal(0, {s2})" }}
bo = {{ shape = [{classes}], init = "normal(0, 0.01)" }}

[define]
C = """{terms} + c"""
A = "relu(C)"
F = "reshape(A, ({batch}, {feats}))"
Z = "F @ W + bo"
''' + _candidate("conv")


def main() -> None:
    HERE.mkdir(parents=True, exist_ok=True)
    files = {"net3-47.toml": NET3, "softmax-500.toml": softmax()}
    for f in (10, 100, 1000):
        files[f"logistic-200x{f}.toml"] = logistic(200, f)
    for n in (10, 100, 1000):
        files[f"rosenbrock-{n}.toml"] = rosenbrock(n)
    # issue 16: realistic sizes, each with one correct hand-written numpy gradient (cases/impl/)
    for h in (32, 128):
        files[f"mlp-784-{h}-10.toml"] = mlp(h)
    for f in (1000, 10000):
        files[f"logistic-1000x{f}.toml"] = logistic_big(1000, f)
    for n in (10**4, 10**5, 10**6):
        files[f"rosenbrock-{n}.toml"] = rosenbrock_big(n)
    files["conv-16x16-3x3.toml"] = conv()
    for name, text in files.items():
        (HERE / name).write_text(text, encoding="utf-8")
        print("wrote", HERE / name)


if __name__ == "__main__":
    main()
