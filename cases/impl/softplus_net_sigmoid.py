"""Hand-written backward passes of cases/softplus-net-sigmoid.toml (a held-out loss, issue 17 item 4).

They keep the dtype of their inputs and use their own evaluation order (BLAS products, np.sum,
``outer``), not verigrad's gradient graph."""
import numpy as np


def _forward(X, W, c, v, b):
    Z = X @ W + c
    H = np.logaddexp(np.zeros((), dtype=Z.dtype), Z)  # softplus
    a = H @ v + b
    P = 1 / (1 + np.exp(-a))
    return Z, H, P


def _backward(X, y, W, c, v, b, dsoftplus, prior=True):
    n = X.shape[0]
    Z, H, P = _forward(X, W, c, v, b)
    da = 2 * (P - y) / n * P * (1 - P)
    dv = H.T @ da
    db = da.sum()
    dZ = np.outer(da, v) * dsoftplus(Z)
    dW = X.T @ dZ
    if prior:
        dW = dW + 0.04 * W / (1 + W * W)
    return {"W": dW, "c": dZ.sum(axis=0), "v": dv, "b": np.asarray(db, dtype=X.dtype)}


def _stable_sigmoid(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def backward(X, y, W, c, v, b):
    return _backward(X, y, W, c, v, b, _stable_sigmoid)


def backward_naive(X, y, W, c, v, b):
    return _backward(X, y, W, c, v, b, lambda z: np.exp(z) / (1 + np.exp(z)))


def backward_no_prior(X, y, W, c, v, b):
    return _backward(X, y, W, c, v, b, _stable_sigmoid, prior=False)
