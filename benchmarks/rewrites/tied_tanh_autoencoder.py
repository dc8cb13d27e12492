"""Rewrites of cases/tied-tanh-autoencoder.toml (shipped: cases/impl/tied_tanh_autoencoder.py:backward)."""
import numpy as np


def grad_gram(X, W):
    """dR W expanded as (H (W^T W) - X W): the Gram matrix first; tanh' as 1/cosh^2."""
    Z = X @ W
    H = np.tanh(Z)
    k = 2 / X.size
    G = W.T @ W
    dZ = k * (H @ G - Z) / np.cosh(Z) ** 2
    dec = k * ((H @ W.T).T @ H - X.T @ H)
    return {"W": X.T @ dZ + dec}


def grad_einsum(X, W):
    """einsum for every product, (1 - H)(1 + H) for tanh', the factor 2/N applied last."""
    H = np.tanh(np.einsum("ni,ij->nj", X, W))
    E = np.einsum("nj,ij->ni", H, W) - X
    enc = np.einsum("ni,nj->ij", X, np.einsum("ni,ij->nj", E, W) * ((1 - H) * (1 + H)))
    dec = np.einsum("ni,nj->ij", E, H)
    return {"W": (enc + dec) * (2 / X.size)}


def grad_loop(X, W):
    """A loop over samples, float32 accumulator."""
    g = np.zeros_like(W)
    k = 2 / X.size
    for x in X:
        h = np.tanh(x @ W)
        e = k * (W @ h - x)
        g += np.outer(e, h) + np.outer(x, (e @ W) * (1 - h * h))
    return {"W": g}


def grad_float64(X, W):
    """The textbook backward in float64, cast to the input dtype."""
    dt = X.dtype
    X, W = X.astype(np.float64), W.astype(np.float64)
    H = np.tanh(X @ W)
    dR = 2 * (H @ W.T - X) / X.size
    return {"W": (dR.T @ H + X.T @ ((dR @ W) * (1 - H * H))).astype(dt)}


def grad_split_residual(X, W):
    """Every product of the residual expanded: (H W^T)^T H - X^T H and X^T (H W^T W (1-H^2)) - X^T (X W (1-H^2))."""
    Z = X @ W
    H = np.tanh(Z)
    D = 1 - H * H
    k = 2 / X.size
    R = H @ W.T
    dec = R.T @ H - X.T @ H
    enc = X.T @ ((R @ W) * D) - X.T @ (Z * D)
    return {"W": k * (dec + enc)}
