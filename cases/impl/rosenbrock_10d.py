"""Rosenbrock function in n dimensions."""
import numpy as np


def forward(x):
    return np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def backward(x):
    g = np.zeros_like(x)
    t = x[1:] - x[:-1] ** 2
    g[:-1] += -400 * x[:-1] * t - 2 * (1 - x[:-1])
    g[1:] += 200 * t
    return {"x": g}


def backward_interior_only(x):
    n = x.shape[0]
    g = np.zeros_like(x)
    # BUG: the textbook interior formula, but the two end entries
    # (g[0] = -400 x0 (x1 - x0^2) - 2 (1 - x0), g[n-1] = 200 (x[n-1] - x[n-2]^2))
    # are never filled in.
    for i in range(1, n - 1):
        g[i] = (200 * (x[i] - x[i - 1] ** 2)
                - 400 * x[i] * (x[i + 1] - x[i] ** 2)
                - 2 * (1 - x[i]))
    return {"x": g}


def backward_sign_slip(x):
    g = np.zeros_like(x)
    t = x[1:] - x[:-1] ** 2
    # BUG: d/dx (1 - x)^2 = -2 (1 - x), written here as +2 (1 - x).
    g[:-1] += -400 * x[:-1] * t + 2 * (1 - x[:-1])
    g[1:] += 200 * t
    return {"x": g}
