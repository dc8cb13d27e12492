"""784-H-10 ReLU MLP with softmax cross-entropy (rows are samples): hand-written numpy backprop.

``forward`` is the same loss in plain numpy (the benchmarks' central-difference baseline);
``grad`` is the one correct candidate of the benchmark cases ``mlp-784-*-10.toml``.
"""
import numpy as np


def _log_softmax(Z):
    m = np.max(Z, axis=1, keepdims=True)
    return Z - m - np.log(np.sum(np.exp(Z - m), axis=1, keepdims=True))


def forward(X, Y, W1, b1, W2, b2):
    A1 = np.maximum(X @ W1 + b1, 0)
    return -np.sum(Y * _log_softmax(A1 @ W2 + b2)) / X.shape[0]


def grad(X, Y, W1, b1, W2, b2):
    n = X.shape[0]
    Z1 = X @ W1 + b1
    A1 = np.maximum(Z1, 0)
    Z2 = A1 @ W2 + b2
    P = np.exp(_log_softmax(Z2))
    dZ2 = (P - Y) / n
    dZ1 = (dZ2 @ W2.T) * (Z1 > 0).astype(X.dtype)
    return {"W1": X.T @ dZ1, "b1": np.sum(dZ1, axis=0),
            "W2": A1.T @ dZ2, "b2": np.sum(dZ2, axis=0)}
