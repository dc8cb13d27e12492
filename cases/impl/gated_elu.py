"""A gated ELU unit: H = where(Z > 0, Z, expm1(Z)) * sigmoid(G), Z = X W, G = X U; prediction H v.

loss = mean((H v - t)**2) / 2 over the rows of X.
"""
import numpy as np


def _sigmoid(x):
    return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))


def forward(X, t, W, U, v):
    Z, G = X @ W, X @ U
    H = np.where(Z > 0, Z, np.expm1(Z)) * _sigmoid(G)
    return np.mean((H @ v - t) ** 2) / 2


def _backward(X, t, W, U, v, bug=None):
    n = X.shape[0]
    Z, G = X @ W, X @ U
    E = np.where(Z > 0, Z, np.expm1(Z))
    S = _sigmoid(G).astype(X.dtype)
    e = (E * S) @ v - t                     # residuals, (n,)
    dH = np.outer(e, v) / n                 # d loss / d H
    if bug == "expm1-slope":
        # BUG: the slope of the negative branch is exp(Z); expm1(Z) is its value.
        dE = np.where(Z > 0, 1, np.expm1(Z)).astype(X.dtype)
    else:
        dE = np.where(Z > 0, 1, np.exp(Z)).astype(X.dtype)
    if bug == "gate-not-applied":
        dZ = dH * dE                        # BUG: H = E * S, so dE must be scaled by the gate S
    else:
        dZ = dH * S * dE
    dG = dH * E * S * (1 - S)
    return {"W": X.T @ dZ, "U": X.T @ dG, "v": (E * S).T @ e / n}


def backward(X, t, W, U, v):
    return _backward(X, t, W, U, v)


def backward_expm1_slope(X, t, W, U, v):
    return _backward(X, t, W, U, v, "expm1-slope")


def backward_gate_not_applied(X, t, W, U, v):
    return _backward(X, t, W, U, v, "gate-not-applied")
