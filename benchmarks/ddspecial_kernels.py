"""CPU time per entry of the vectorised ball rules of sin, cos, tan, sinh, cosh, the sinc family, the
gamma family, arctan/arcsin/arccos and erf (verigrad.engine.ddspecial / ddgamma) against the Arb fallback they replace.

Run: ``python3 benchmarks/ddspecial_kernels.py [N]`` (N entries per rule, default 10**6; the Arb
column is measured on 2000 entries).  Prints one row per function: ns/entry of the rule, µs/entry
through Arb (the fast engine's fallback, ``fastball._unary_arb``), and the speed-up.
"""

from __future__ import annotations

import sys
import time

import numpy as np

ARGS = {
    "sin": lambda r, n: r.normal(size=n) * 100, "cos": lambda r, n: r.normal(size=n) * 100,
    "tan": lambda r, n: r.normal(size=n) * 100, "sinh": lambda r, n: r.normal(size=n) * 5,
    "cosh": lambda r, n: r.normal(size=n) * 5, "sinc": lambda r, n: r.normal(size=n) * 3,
    "dsinc": lambda r, n: r.normal(size=n) * 3, "d2sinc": lambda r, n: r.normal(size=n) * 3,
    "gammaln": lambda r, n: r.uniform(0.01, 50, n), "digamma": lambda r, n: r.uniform(0.01, 50, n),
    "trigamma": lambda r, n: r.uniform(0.01, 50, n), "tetragamma": lambda r, n: r.uniform(0.01, 50, n),
    "arctan": lambda r, n: r.normal(size=n) * 3, "arcsin": lambda r, n: r.uniform(-0.99, 0.99, n),
    "arccos": lambda r, n: r.uniform(-0.99, 0.99, n), "erf": lambda r, n: r.uniform(-2, 2, n),
}


def _cpu(f) -> float:
    t = time.process_time()
    f()
    return time.process_time() - t


def main(argv: list[str]) -> int:
    from verigrad.engine import ddspecial, fastball
    from verigrad.expr.functions import FUNCTIONS
    from verigrad.expr.graph import Builder

    n = int(argv[0]) if argv else 10**6
    rng = np.random.default_rng(1)
    rows = []
    for name, gen in ARGS.items():
        x = gen(rng, n)
        ball = fastball.from_float(x)
        rule = getattr(ddspecial, name)
        rule(fastball.from_float(x[:10]))  # constants
        t_fast = _cpu(lambda: rule(ball)) / n
        m = 2000
        node = Builder().unary(name, Builder().leaf("x", (m,), variable=True))
        small = fastball.from_float(x[:m])
        t_arb = _cpu(lambda: fastball._unary_arb(small, node)) / m
        assert FUNCTIONS[name].dd_ball == name
        rows.append((name, t_fast * 1e9, t_arb * 1e6, t_arb / t_fast))
    sys.stdout.write(f"{'function':<11} {'rule ns/entry':>14} {'Arb µs/entry':>13} {'speed-up':>9}   (N = {n})\n")
    for name, f, a, s in rows:
        sys.stdout.write(f"{name:<11} {f:14.0f} {a:13.1f} {s:8.0f}x\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
