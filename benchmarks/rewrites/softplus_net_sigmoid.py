"""Rewrites of cases/softplus-net-sigmoid.toml (shipped: cases/impl/softplus_net_sigmoid.py:backward)."""
import numpy as np


def grad_tanh_forms(X, y, W, c, v, b):
    """softplus = log1p(exp(z)), sigmoid = (1 + tanh(z/2))/2 for both uses, P (1 - P) as P - P*P."""
    n = X.shape[0]
    Z = X @ W + c
    H = np.log1p(np.exp(Z))
    P = 0.5 * (1 + np.tanh((H @ v + b) / 2))
    da = (2 / n) * (P - y) * (P - P * P)
    dZ = da[:, None] * v[None, :] * (0.5 * (1 + np.tanh(Z / 2)))
    return {"W": X.T @ dZ + 0.04 * W / (1 + W ** 2), "c": dZ.sum(axis=0), "v": H.T @ da,
            "b": np.asarray(da.sum(), dtype=X.dtype)}


def grad_exp_derivative(X, y, W, c, v, b):
    """sigmoid'(a) = exp(-a) / (1 + exp(-a))**2, softplus' = 1 / (1 + exp(-z)), einsum, mean."""
    Z = np.einsum("ni,ij->nj", X, W) + c
    H = np.logaddexp(np.zeros((), dtype=Z.dtype), Z)
    a = H @ v + b
    ea = np.exp(-a)
    P = 1 / (1 + ea)
    da = 2 * (P - y) * ea / (1 + ea) ** 2
    dZ = np.einsum("n,j->nj", da, v) / (1 + np.exp(-Z))
    n = X.shape[0]
    return {"W": np.einsum("ni,nj->ij", X, dZ) / n + 2 * 0.02 * W / (1 + W * W), "c": dZ.mean(axis=0),
            "v": np.einsum("nj,n->j", H, da) / n, "b": np.asarray(da.mean(), dtype=X.dtype)}


def grad_loop(X, y, W, c, v, b):
    """A loop over samples (per-sample backprop), the prior's gradient added last."""
    n = X.shape[0]
    dW, dc, dv = np.zeros_like(W), np.zeros_like(c), np.zeros_like(v)
    db = np.zeros((), dtype=X.dtype)
    for i in range(n):
        z = X[i] @ W + c
        h = np.logaddexp(np.zeros((), dtype=z.dtype), z)
        p = 1 / (1 + np.exp(-(h @ v + b)))
        da = 2 * (p - y[i]) * p * (1 - p) / n
        dv += da * h
        db += da
        dz = da * v / (1 + np.exp(-z))
        dW += np.outer(X[i], dz)
        dc += dz
    return {"W": dW + 0.04 * W / (1 + W * W), "c": dc, "v": dv, "b": db}


def grad_float64(X, y, W, c, v, b):
    """The shipped backward in float64, cast to the input dtype."""
    dt = X.dtype
    X, y, W, c, v, b = (np.asarray(a, dtype=np.float64) for a in (X, y, W, c, v, b))
    n = X.shape[0]
    Z = X @ W + c
    H = np.logaddexp(0.0, Z)
    P = 1 / (1 + np.exp(-(H @ v + b)))
    da = 2 * (P - y) / n * P * (1 - P)
    dZ = np.outer(da, v) / (1 + np.exp(-Z))
    g = {"W": X.T @ dZ + 0.04 * W / (1 + W * W), "c": dZ.sum(0), "v": H.T @ da, "b": np.asarray(da.sum())}
    return {k: v_.astype(dt) for k, v_ in g.items()}
