"""Softmax cross-entropy with integer class labels y (int64), logits Z = X W^T + b (rows are samples)."""
import numpy as np


def _log_softmax(Z):
    m = np.max(Z, axis=1, keepdims=True)
    return Z - m - np.log(np.sum(np.exp(Z - m), axis=1, keepdims=True))


def forward(X, y, W, b):
    log_p = _log_softmax(X @ W.T + b)
    return -np.mean(np.take_along_axis(log_p, y[:, None], axis=1))


def backward(X, y, W, b):
    n = X.shape[0]
    dZ = np.exp(_log_softmax(X @ W.T + b))
    dZ[np.arange(n), y] -= 1          # p - onehot(y), one entry per row
    dZ /= n
    return {"W": dZ.T @ X, "b": dZ.sum(axis=0)}


def backward_column_indexing(X, y, W, b):
    n = X.shape[0]
    dZ = np.exp(_log_softmax(X @ W.T + b))
    # BUG: dZ[:, y] selects whole columns: every row loses 1 in every class that is some sample's label.
    dZ[:, y] -= 1
    dZ /= n
    return {"W": dZ.T @ X, "b": dZ.sum(axis=0)}


def backward_sum_not_mean(X, y, W, b):
    n = X.shape[0]
    dZ = np.exp(_log_softmax(X @ W.T + b))
    dZ[np.arange(n), y] -= 1
    # BUG: the loss is a mean over samples; the 1/n is missing.
    return {"W": dZ.T @ X, "b": dZ.sum(axis=0)}
