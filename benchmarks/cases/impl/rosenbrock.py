"""Rosenbrock, sum_i 100 (x[i+1] - x[i]^2)^2 + (1 - x[i])^2.

``forward`` is the same loss in plain numpy (the benchmarks' central-difference baseline);
``grad`` is the one correct candidate of the benchmark cases ``rosenbrock-10000.toml`` and up.
"""
import numpy as np


def forward(x):
    return np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def grad(x):
    t = x[1:] - x[:-1] ** 2
    g = np.zeros_like(x)
    g[:-1] = -400 * x[:-1] * t - 2 * (1 - x[:-1])
    g[1:] += 200 * t
    return {"x": g}
