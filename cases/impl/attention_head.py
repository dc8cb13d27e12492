"""One self-attention head with a linear read-out: sum(C * softmax(Q K^T / sqrt(d)) V)."""
import math

import numpy as np


def _scale(X):
    # math.sqrt returns a Python float (a weak scalar under NEP 50), so float32
    # stays float32; np.sqrt(3) would be an np.float64 scalar and upcast.
    return 1 / math.sqrt(X.shape[1])


def _forward_parts(X, Wq, Wk, Wv):
    Q, K, V = X @ Wq, X @ Wk, X @ Wv
    S = Q @ K.T * _scale(X)
    # Subtract the row maximum of the real part: exact (softmax is shift
    # invariant), stable, and still fine for complex-step inputs.
    E = np.exp(S - np.max(S.real, axis=1, keepdims=True))
    P = E / np.sum(E, axis=1, keepdims=True)
    return Q, K, V, P


def forward(X, C, Wq, Wk, Wv):
    _, _, V, P = _forward_parts(X, Wq, Wk, Wv)
    return np.sum(C * (P @ V))


def _backward(X, C, Wq, Wk, Wv, bug=None):
    Q, K, V, P = _forward_parts(X, Wq, Wk, Wv)
    dO = C
    dV = P.T @ dO
    dP = dO @ V.T
    if bug == "softmax":
        dS = P * dP                      # BUG: missing "- rowsum(dP * P)"
    else:
        dS = P * (dP - np.sum(dP * P, axis=1, keepdims=True))
    dS = dS * _scale(X)
    if bug == "qk":
        dQ, dK = dS.T @ K, dS @ Q        # BUG: query/key roles mixed up
    else:
        dQ, dK = dS @ K, dS.T @ Q
    dWv = dV.T @ X if bug == "wv" else X.T @ dV   # BUG for "wv": transposed
    return {"Wq": X.T @ dQ, "Wk": X.T @ dK, "Wv": dWv}


def backward(X, C, Wq, Wk, Wv):
    return _backward(X, C, Wq, Wk, Wv)


def backward_softmax_missing_term(X, C, Wq, Wk, Wv):
    return _backward(X, C, Wq, Wk, Wv, bug="softmax")


def backward_qk_mixed_up(X, C, Wq, Wk, Wv):
    return _backward(X, C, Wq, Wk, Wv, bug="qk")


def backward_transposed_dWv(X, C, Wq, Wk, Wv):
    return _backward(X, C, Wq, Wk, Wv, bug="wv")
