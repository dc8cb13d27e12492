"""Write the benchmark case files in benchmarks/cases/ (deterministic; re-run to regenerate).

    python benchmarks/make_cases.py

The files are committed; this script documents how they were made.  Labels
(one-hot Y, 0/1 y) are written inline as exact values; everything else is drawn
by the case's own seeded generator, so the files stay small.
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


def main() -> None:
    HERE.mkdir(parents=True, exist_ok=True)
    files = {"net3-47.toml": NET3, "softmax-500.toml": softmax()}
    for f in (10, 100, 1000):
        files[f"logistic-200x{f}.toml"] = logistic(200, f)
    for n in (10, 100, 1000):
        files[f"rosenbrock-{n}.toml"] = rosenbrock(n)
    for name, text in files.items():
        (HERE / name).write_text(text, encoding="utf-8")
        print("wrote", HERE / name)


if __name__ == "__main__":
    main()
