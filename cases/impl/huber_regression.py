"""Huber-loss linear regression."""
import numpy as np


def forward(X, y, delta, w):
    r = X @ w - y
    a = np.abs(r)
    quad = a <= delta
    loss = np.where(quad, 0.5 * r * r, delta * (a - 0.5 * delta))
    return np.sum(loss) / X.shape[0]


def backward(X, y, delta, w):
    n = X.shape[0]
    r = X @ w - y
    psi = np.clip(r, -delta, delta)      # Huber's psi function
    return {"w": X.T @ psi / n}


def backward_no_clip(X, y, delta, w):
    n = X.shape[0]
    r = X @ w - y
    # BUG: the least-squares gradient; the linear branch (|r| > delta) is ignored.
    return {"w": X.T @ r / n}


def backward_sign_flipped(X, y, delta, w):
    n = X.shape[0]
    # BUG: residual taken as y - Xw, but the loss is differentiated as if Xw - y.
    r = y - X @ w
    psi = np.clip(r, -delta, delta)
    return {"w": X.T @ psi / n}
