"""L2-regularised logistic regression, mean(-y log a - (1-y) log(1-a)) + lam/2 ||w||^2.

``forward`` is the same loss in plain numpy (the benchmarks' central-difference baseline);
``grad`` is the one correct candidate of the benchmark cases ``logistic-1000x*.toml``.
"""
import numpy as np


def forward(X, y, lam, w, b):
    a = 1 / (1 + np.exp(-(X @ w + b)))
    return np.sum(-y * np.log(a) - (1 - y) * np.log(1 - a)) / X.shape[0] + lam / 2 * np.sum(w * w)


def grad(X, y, lam, w, b):
    a = 1 / (1 + np.exp(-(X @ w + b)))
    dz = (a - y) / X.shape[0]
    return {"w": X.T @ dz + lam * w, "b": np.asarray(np.sum(dz))}
