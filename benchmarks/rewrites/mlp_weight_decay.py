"""Rewrites of cases/mlp-weight-decay.toml (shipped: cases/impl/fresh_losses.py:backward_mlp)."""
import numpy as np


def grad_sech2_einsum(X, Y, lam, W1, b1, W2, b2):
    """tanh' as 1/cosh(z)**2 on the pre-activation, einsum products, mean over samples."""
    Z = np.einsum("ni,ij->nj", X, W1) + b1
    H = np.tanh(Z)
    E = np.einsum("nj,jk->nk", H, W2) + b2 - Y
    n = X.shape[0]
    dW2 = np.einsum("nj,nk->jk", H, E) / n + lam * W2
    db2 = E.mean(axis=0)
    dZ = np.einsum("nk,jk->nj", E, W2) / np.cosh(Z) ** 2
    dW1 = np.einsum("ni,nj->ij", X, dZ) / n + lam * W1
    return {"W1": dW1, "b1": dZ.mean(axis=0), "W2": dW2, "b2": db2}


def grad_factored(X, Y, lam, W1, b1, W2, b2):
    """(1 - H)(1 + H) for tanh', 1/n precomputed and multiplied, 2/64 written out."""
    inv = X.dtype.type(2.0 / 64.0)  # d/dO of sum((O-Y)^2)/64
    H = np.tanh(X @ W1 + b1)
    R = H @ W2 + b2 - Y
    dO = inv * R
    dW2 = H.T @ dO + lam * W2
    dZ = (dO @ W2.T) * ((1 - H) * (1 + H))
    dW1 = X.T @ dZ + lam * W1
    return {"W1": dW1, "b1": np.sum(dZ, axis=0), "W2": dW2, "b2": np.sum(dO, axis=0)}


def grad_float64(X, Y, lam, W1, b1, W2, b2):
    """The shipped formula computed in float64, cast to the input dtype at the end."""
    dt = X.dtype
    X, Y, lam, W1, b1, W2, b2 = (np.asarray(a, dtype=np.float64) for a in (X, Y, lam, W1, b1, W2, b2))
    H = np.tanh(X @ W1 + b1)
    d = (H @ W2 + b2 - Y) / X.shape[0]
    dZ = (d @ W2.T) * (1 - H ** 2)
    g = {"W1": X.T @ dZ + lam * W1, "b1": dZ.sum(0), "W2": H.T @ d + lam * W2, "b2": d.sum(0)}
    return {k: v.astype(dt) for k, v in g.items()}


def grad_loop(X, Y, lam, W1, b1, W2, b2):
    """Per-sample backprop accumulated in a loop (outer products), weight decay added last."""
    n = X.shape[0]
    dW1, db1, dW2, db2 = (np.zeros_like(a) for a in (W1, b1, W2, b2))
    for i in range(n):
        h = np.tanh(X[i] @ W1 + b1)
        e = (h @ W2 + b2 - Y[i]) / n
        dW2 += np.outer(h, e)
        db2 += e
        dz = (W2 @ e) * (1 - h ** 2)
        dW1 += np.outer(X[i], dz)
        db1 += dz
    return {"W1": dW1 + lam * W1, "b1": db1, "W2": dW2 + lam * W2, "b2": db2}


def grad_split_residual(X, Y, lam, W1, b1, W2, b2):
    """The residual's two terms apart (expanded products): H^T O / n - H^T Y / n, and likewise for dZ."""
    n = X.shape[0]
    H = np.tanh(X @ W1 + b1)
    O = H @ W2 + b2
    dW2 = (H.T @ O - H.T @ Y) / n + lam * W2
    dH = (O @ W2.T - Y @ W2.T) / n
    dZ = dH - dH * H * H
    return {"W1": X.T @ dZ + lam * W1, "b1": dZ.sum(axis=0), "W2": dW2, "b2": (O.sum(axis=0) - Y.sum(axis=0)) / n}
