"""Softmax cross-entropy of a linear layer, Z = X W^T + b (rows are samples)."""
import numpy as np


def _softmax(Z, axis):
    E = np.exp(Z - np.max(Z, axis=axis, keepdims=True))
    return E / np.sum(E, axis=axis, keepdims=True)


def forward(X, Y, W, b):
    Z = X @ W.T + b
    m = np.max(Z, axis=1, keepdims=True)
    log_p = Z - m - np.log(np.sum(np.exp(Z - m), axis=1, keepdims=True))
    return -np.sum(Y * log_p) / X.shape[0]


def backward(X, Y, W, b):
    n = X.shape[0]
    P = _softmax(X @ W.T + b, axis=1)
    dZ = (P - Y) / n
    return {"W": dZ.T @ X, "b": np.sum(dZ, axis=0)}


def backward_forgot_one_hot(X, Y, W, b):
    n = X.shape[0]
    P = _softmax(X @ W.T + b, axis=1)
    # BUG: the gradient of -log p_y w.r.t. the logits is p - y; the "- y" is missing.
    dZ = P / n
    return {"W": dZ.T @ X, "b": np.sum(dZ, axis=0)}


def backward_wrong_axis(X, Y, W, b):
    n = X.shape[0]
    # BUG: normalises over the samples (axis 0) instead of the classes (axis 1).
    P = _softmax(X @ W.T + b, axis=0)
    dZ = (P - Y) / n
    return {"W": dZ.T @ X, "b": np.sum(dZ, axis=0)}


def backward_transposed_dW(X, Y, W, b):
    n = X.shape[0]
    P = _softmax(X @ W.T + b, axis=1)
    dZ = (P - Y) / n
    # BUG: X^T dZ is dW transposed (8x10 instead of 10x8).
    return {"W": X.T @ dZ, "b": np.sum(dZ, axis=0)}
