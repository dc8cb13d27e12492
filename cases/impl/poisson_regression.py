"""Poisson regression with log link: mean(exp(eta) - y * eta), eta = X w + b."""
import numpy as np


def forward(X, y, w, b):
    eta = X @ w + b
    return np.sum(np.exp(eta) - y * eta) / X.shape[0]


def backward(X, y, w, b):
    n = X.shape[0]
    r = np.exp(X @ w + b) - y
    return {"w": X.T @ r / n, "b": np.asarray(np.sum(r) / n)}


def backward_identity_link(X, y, w, b):
    n = X.shape[0]
    # BUG: the mean is exp(eta), not eta (this is the Gaussian GLM's gradient).
    r = (X @ w + b) - y
    return {"w": X.T @ r / n, "b": np.asarray(np.sum(r) / n)}


def backward_intercept_sum(X, y, w, b):
    n = X.shape[0]
    r = np.exp(X @ w + b) - y
    # BUG: forgot the 1/n for the intercept.
    return {"w": X.T @ r / n, "b": np.asarray(np.sum(r))}
