"""Rewrites of cases/cauchy-regression.toml (shipped: cases/impl/fresh_losses.py:backward_cauchy)."""
import numpy as np


def grad_rational(X, y, c, w):
    """psi(r) = c^2 r / (c^2 + r^2), einsum, np.mean."""
    r = X @ w - y
    c2 = c * c
    psi = c2 * r / (c2 + r * r)
    return {"w": np.mean(X * psi[:, None], axis=0)}


def grad_chain(X, y, c, w):
    """The chain rule through the log, as an autodiff would: c^2/2 * 1/(1+(r/c)^2) * 2 (r/c) / c."""
    r = X @ w - y
    q = r / c
    dl = (c ** 2 / 2) * (1 / (1 + q ** 2)) * (2 * q) * (1 / c)
    return {"w": np.einsum("ni,n->i", X, dl) / X.shape[0]}


def grad_loop(X, y, c, w):
    """A loop over samples (residual by a dot product), float32 accumulator."""
    n = X.shape[0]
    g = np.zeros_like(w)
    for i in range(n):
        r = np.dot(X[i], w) - y[i]
        g += X[i] * (r / (1 + (r / c) ** 2))
    return {"w": g / n}


def grad_psi_expanded(X, y, c, w):
    """psi(r) = r - r^3 / (c^2 + r^2) (long division of the rational function; cancels for |r| >> c)."""
    r = X @ w - y
    psi = r - r ** 3 / (c * c + r * r)
    return {"w": X.T @ psi / X.shape[0]}
