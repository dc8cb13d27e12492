"""Heteroscedastic Gaussian NLL: mean X w, log-variance X v."""
import math

import numpy as np


def forward(X, y, w, v):
    n = X.shape[0]
    mu = X @ w
    s = X @ v
    # math.log gives a Python float, which does not upcast float32 arrays.
    return np.sum(s / 2 + (y - mu) ** 2 * np.exp(-s) / 2) / n + math.log(2 * math.pi) / 2


def backward(X, y, w, v):
    n = X.shape[0]
    r = y - X @ w
    p = np.exp(-(X @ v))           # precision 1 / sigma^2
    dw = -(X.T @ (r * p)) / n
    dv = X.T @ (0.5 - 0.5 * r ** 2 * p) / n
    return {"w": dw, "v": dv}


def backward_swapped(X, y, w, v):
    n = X.shape[0]
    r = y - X @ w
    p = np.exp(-(X @ v))
    dw = -(X.T @ (r * p)) / n
    dv = X.T @ (0.5 - 0.5 * r ** 2 * p) / n
    # BUG: keys mixed up; both arrays have shape (3,) so nothing complains.
    return {"w": dv, "v": dw}


def backward_sign_lost(X, y, w, v):
    n = X.shape[0]
    r = y - X @ w
    p = np.exp(-(X @ v))
    dw = -(X.T @ (r * p)) / n
    # BUG: d/ds exp(-s) = -exp(-s); the minus sign is lost.
    dv = X.T @ (0.5 + 0.5 * r ** 2 * p) / n
    return {"w": dw, "v": dv}
