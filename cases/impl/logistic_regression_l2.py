"""Logistic regression with an L2 penalty on w (not on b)."""
import numpy as np


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def forward(X, y, lam, w, b):
    n = X.shape[0]
    a = _sigmoid(X @ w + b)
    data = np.sum(-y * np.log(a) - (1 - y) * np.log(1 - a)) / n
    return data + lam / 2 * np.sum(w * w)


def backward(X, y, lam, w, b):
    n = X.shape[0]
    a = _sigmoid(X @ w + b)
    dz = (a - y) / n
    return {"w": X.T @ dz + lam * w, "b": np.asarray(np.sum(dz))}


def backward_forgot_penalty(X, y, lam, w, b):
    n = X.shape[0]
    a = _sigmoid(X @ w + b)
    dz = (a - y) / n
    # BUG: the gradient of lam/2 ||w||^2 (= lam * w) is missing.
    return {"w": X.T @ dz, "b": np.asarray(np.sum(dz))}


def backward_bias_sum(X, y, lam, w, b):
    n = X.shape[0]
    a = _sigmoid(X @ w + b)
    dz = (a - y) / n
    # BUG: the bias gradient sums the unscaled residuals (forgot the 1/n).
    return {"w": X.T @ dz + lam * w, "b": np.asarray(np.sum(a - y))}


def backward_penalty_sign(X, y, lam, w, b):
    n = X.shape[0]
    a = _sigmoid(X @ w + b)
    dz = (a - y) / n
    # BUG: the penalty's gradient is subtracted (a sign slip in one term).
    return {"w": X.T @ dz - lam * w, "b": np.asarray(np.sum(dz))}


def backward_w_broadcast(X, y, lam, w, b):
    g = backward(X, y, lam, w, b)
    # BUG: summed over every axis and broadcast back, where each entry was meant.
    g["w"] = np.full_like(g["w"], np.sum(g["w"]))
    return g
