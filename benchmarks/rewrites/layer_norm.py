"""Rewrites of cases/layer-norm.toml (shipped: cases/impl/fresh_losses.py:backward_layernorm)."""
import numpy as np


def _fwd(X, T, eps, gamma, beta):
    mu = X.mean(axis=1, keepdims=True)
    xc = X - mu
    var = (xc ** 2).mean(axis=1, keepdims=True)
    return mu, xc, var


def grad_staged(X, T, eps, gamma, beta):
    """The staged (computational-graph) backward: dvar, dmu, then dX from three paths."""
    n, d = X.shape
    mu, xc, var = _fwd(X, T, eps, gamma, beta)
    std = np.sqrt(var + eps)
    xhat = xc / std
    dout = 2 * (xhat * gamma + beta - T) / (2 * n)
    dxhat = dout * gamma
    dvar = np.sum(dxhat * xc, axis=1, keepdims=True) * -0.5 * (var + eps) ** -1.5
    dmu = -np.sum(dxhat, axis=1, keepdims=True) / std + dvar * np.mean(-2 * xc, axis=1, keepdims=True)
    dX = dxhat / std + dvar * 2 * xc / d + dmu / d
    return {"X": dX, "gamma": np.sum(dout * xhat, axis=0), "beta": np.sum(dout, axis=0)}


def grad_compact(X, T, eps, gamma, beta):
    """The compact form (1/d) inv (d dxhat - sum dxhat - xhat sum(dxhat xhat)), einsum for gamma."""
    n, d = X.shape
    mu, xc, var = _fwd(X, T, eps, gamma, beta)
    inv = (var + eps) ** -0.5
    xhat = xc * inv
    dout = (xhat * gamma + beta - T) / n
    dxhat = dout * gamma
    dX = (inv / d) * (d * dxhat - dxhat.sum(axis=1, keepdims=True)
                      - xhat * np.sum(dxhat * xhat, axis=1, keepdims=True))
    return {"X": dX, "gamma": np.einsum("nd,nd->d", dout, xhat), "beta": dout.sum(axis=0)}


def grad_moments(X, T, eps, gamma, beta):
    """var = E[x^2] - E[x]^2 (one pass over the row), then the fused backward."""
    n, d = X.shape
    mu = X.mean(axis=1, keepdims=True)
    var = (X * X).mean(axis=1, keepdims=True) - mu * mu
    inv = 1 / np.sqrt(var + eps)
    xhat = (X - mu) * inv
    dout = (xhat * gamma + beta - T) / n
    dxhat = dout * gamma
    dX = inv * (dxhat - dxhat.mean(axis=1, keepdims=True) - xhat * (dxhat * xhat).mean(axis=1, keepdims=True))
    return {"X": dX, "gamma": (dout * xhat).sum(axis=0), "beta": dout.sum(axis=0)}


def grad_float64(X, T, eps, gamma, beta):
    """The fused backward in float64, cast to the input dtype."""
    dt = X.dtype
    X, T, eps, gamma, beta = (np.asarray(a, dtype=np.float64) for a in (X, T, eps, gamma, beta))
    n, d = X.shape
    xc = X - X.mean(axis=1, keepdims=True)
    inv = 1 / np.sqrt((xc * xc).mean(axis=1, keepdims=True) + eps)
    xhat = xc * inv
    dout = (xhat * gamma + beta - T) / n
    dxhat = dout * gamma
    dX = inv * (dxhat - dxhat.mean(axis=1, keepdims=True) - xhat * (dxhat * xhat).mean(axis=1, keepdims=True))
    g = {"X": dX, "gamma": (dout * xhat).sum(axis=0), "beta": dout.sum(axis=0)}
    return {k: v.astype(dt) for k, v in g.items()}


def grad_xc_form(X, T, eps, gamma, beta):
    """dX = inv (dxhat - mean(dxhat)) - xc inv^3 mean(dxhat xc): the centred input, not xhat, in the last term."""
    n, d = X.shape
    mu, xc, var = _fwd(X, T, eps, gamma, beta)
    inv = 1 / np.sqrt(var + eps)
    xhat = xc * inv
    dout = (xhat * gamma + beta - T) / n
    dxhat = dout * gamma
    dX = (inv * (dxhat - dxhat.mean(axis=1, keepdims=True))
          - xc * inv ** 3 * np.mean(dxhat * xc, axis=1, keepdims=True))
    return {"X": dX, "gamma": np.einsum("nd,nd->d", dout, xc * inv), "beta": np.mean(dout, axis=0) * n}
