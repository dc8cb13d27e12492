"""A small conv net: one 3x3 filter K (valid, stride 1) + bias c, relu, flatten, linear W + bo,
softmax cross-entropy (rows are samples).

``forward`` is the same loss in plain numpy (the benchmarks' central-difference baseline);
``grad`` is the one correct candidate of the benchmark case ``conv-16x16-3x3.toml``.
"""
import numpy as np


def _log_softmax(Z):
    m = np.max(Z, axis=1, keepdims=True)
    return Z - m - np.log(np.sum(np.exp(Z - m), axis=1, keepdims=True))


def _conv(X, K, c):
    o = X.shape[1] - 2
    C = np.zeros((X.shape[0], o, o), dtype=X.dtype)
    for a in range(3):
        for b in range(3):
            C += K[a, b] * X[:, a:a + o, b:b + o]
    return C + c


def forward(X, Y, K, c, W, bo):
    F = np.maximum(_conv(X, K, c), 0).reshape(X.shape[0], -1)
    return -np.sum(Y * _log_softmax(F @ W + bo)) / X.shape[0]


def grad(X, Y, K, c, W, bo):
    n, o = X.shape[0], X.shape[1] - 2
    C = _conv(X, K, c)
    F = np.maximum(C, 0).reshape(n, -1)
    P = np.exp(_log_softmax(F @ W + bo))
    dZ = (P - Y) / n
    dC = (dZ @ W.T).reshape(C.shape) * (C > 0).astype(X.dtype)
    dK = np.empty_like(K)
    for a in range(3):
        for b in range(3):
            dK[a, b] = np.sum(dC * X[:, a:a + o, b:b + o])
    return {"K": dK, "c": np.asarray(np.sum(dC)), "W": F.T @ dZ, "bo": np.sum(dZ, axis=0)}
