"""Lasso objective: mean squared error / 2 + lam * ||w||_1."""
import numpy as np


def forward(X, y, lam, w):
    r = y - X @ w
    return (r @ r) / (2 * X.shape[0]) + lam * np.sum(np.abs(w))


def backward(X, y, lam, w):
    n = X.shape[0]
    r = y - X @ w
    return {"w": -(X.T @ r) / n + lam * np.sign(w)}


def backward_forgot_l1(X, y, lam, w):
    n = X.shape[0]
    r = y - X @ w
    # BUG: the penalty's (sub)gradient lam * sign(w) is missing.
    return {"w": -(X.T @ r) / n}


def backward_l2_for_l1(X, y, lam, w):
    n = X.shape[0]
    r = y - X @ w
    # BUG: lam * w is the gradient of lam/2 ||w||^2, not of lam ||w||_1.
    return {"w": -(X.T @ r) / n + lam * w}
