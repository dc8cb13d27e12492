"""Multi-head self-attention written with np.einsum, batch b, heads h, tokens t, width d, head width e:
Q = einsum('btd,hde->bhte', X, Wq) (and K, V), S = einsum('bhqe,bhke->bhqk', Q, K) / sqrt(e),
P = softmax(S) over the keys, O = einsum('bhqk,bhke->bhqe', P, V), loss = sum(C * O).
"""
import math

import numpy as np


def _parts(X, Wq, Wk, Wv):
    Q = np.einsum("btd,hde->bhte", X, Wq)
    K = np.einsum("btd,hde->bhte", X, Wk)
    V = np.einsum("btd,hde->bhte", X, Wv)
    scale = 1 / math.sqrt(Wq.shape[2])                 # a Python float: float32 stays float32
    S = np.einsum("bhqe,bhke->bhqk", Q, K) * scale
    E = np.exp(S - np.max(S.real, axis=-1, keepdims=True))   # real part: complex-step safe
    P = E / np.sum(E, axis=-1, keepdims=True)
    return Q, K, V, P, scale


def forward(X, C, Wq, Wk, Wv):
    _, _, V, P, _ = _parts(X, Wq, Wk, Wv)
    return np.sum(C * np.einsum("bhqk,bhke->bhqe", P, V))


def _backward(X, C, Wq, Wk, Wv, bug=None):
    Q, K, V, P, scale = _parts(X, Wq, Wk, Wv)
    dO = C
    dV = np.einsum("bhqk,bhqe->bhke", P, dO)
    dP = np.einsum("bhqe,bhke->bhqk", dO, V)
    axis = -2 if bug == "axis" else -1                 # BUG "axis": the softmax sum over the queries
    dS = P * (dP - np.sum(dP * P, axis=axis, keepdims=True)) * scale
    dQ = np.einsum("bhqk,bhke->bhqe", dS, K)
    if bug == "keys":
        dK = np.einsum("bhqk,bhqe->bhqe", dS, Q)       # BUG: dS not transposed for the keys
    else:
        dK = np.einsum("bhqk,bhqe->bhke", dS, Q)
    grads = {name: np.einsum("btd,bhte->hde", X, d) for name, d in (("Wq", dQ), ("Wk", dK), ("Wv", dV))}
    return grads


def backward(X, C, Wq, Wk, Wv):
    return _backward(X, C, Wq, Wk, Wv)


def backward_softmax_wrong_axis(X, C, Wq, Wk, Wv):
    return _backward(X, C, Wq, Wk, Wv, bug="axis")


def backward_keys_not_transposed(X, C, Wq, Wk, Wv):
    return _backward(X, C, Wq, Wk, Wv, bug="keys")
