"""Rewrites of cases/logistic-regression-l2.toml (shipped: cases/impl/logistic_regression_l2.py:backward)."""
import numpy as np


def grad_tanh_sigmoid(X, y, lam, w, b):
    """sigmoid(z) = (1 + tanh(z/2)) / 2, np.mean for the bias."""
    a = 0.5 * (1 + np.tanh((X @ w + b) / 2))
    d = a - y
    return {"w": X.T @ d / X.shape[0] + lam * w, "b": np.asarray(np.mean(d))}


def grad_stable_sigmoid(X, y, lam, w, b):
    """The branch-free stable sigmoid (exp(-|z|)), einsum."""
    z = X @ w + b
    e = np.exp(-np.abs(z))
    a = np.where(z >= 0, 1 / (1 + e), e / (1 + e))
    d = (a - y) / X.shape[0]
    return {"w": np.einsum("ni,n->i", X, d) + lam * w, "b": np.asarray(d.sum())}


def grad_chain_through_log(X, y, lam, w, b):
    """dL/da = -y/a + (1-y)/(1-a), times da/dz = a (1 - a): the chain rule not simplified."""
    a = 1 / (1 + np.exp(-(X @ w + b)))
    dz = (-y / a + (1 - y) / (1 - a)) * (a * (1 - a)) / X.shape[0]
    return {"w": X.T @ dz + lam * w, "b": np.asarray(np.sum(dz))}


def grad_loop_float64(X, y, lam, w, b):
    """A loop over samples accumulating in float64 (math.exp), cast to the input dtype."""
    import math

    n = X.shape[0]
    gw = np.zeros(w.shape, dtype=np.float64)
    gb = 0.0
    for i in range(n):
        z = float(np.dot(X[i].astype(np.float64), w.astype(np.float64))) + float(b)
        d = 1 / (1 + math.exp(-z)) - float(y[i])
        gw += d * X[i].astype(np.float64)
        gb += d
    return {"w": (gw / n + float(lam) * w.astype(np.float64)).astype(X.dtype), "b": np.asarray(gb / n, dtype=X.dtype)}


def grad_two_terms(X, y, lam, w, b):
    """dz = -y (1 - a) + (1 - y) a (the two log terms differentiated apart), X^T dz / n."""
    a = 1 / (1 + np.exp(-(X @ w + b)))
    dz = -y * (1 - a) + (1 - y) * a
    n = X.shape[0]
    return {"w": X.T @ dz / n + lam * w, "b": np.asarray(dz.sum() / n)}
