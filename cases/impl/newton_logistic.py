"""Second order of L2-regularised logistic regression (Newton's method).

L(w, b) = mean(-y log p - (1 - y) log(1 - p)) + lam/2 ||w||^2 with p = sigmoid(X w + b).
With D = diag(p (1 - p)) / n the Hessian over (w, b) is

    H[w,w] = X^T D X + lam I,   H[w,b] = X^T D 1,   H[b,b] = 1^T D 1,

the matrix a Newton step (or IRLS) solves with. Candidates return the 6 x 6 matrix over
(w[0..4], b) in declaration order, H v for the direction ``vector``, or the diagonal.
"""
import numpy as np


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _design(X, w, b):
    """X with a column of ones, and the weights d = p (1 - p) / n (all in the input dtype)."""
    n = X.shape[0]
    p = _sigmoid(X @ w + b)
    Xa = np.concatenate([X, np.ones((n, 1), dtype=X.dtype)], axis=1)
    return Xa, p * (1 - p) / n


def _penalty(lam, w):
    k = w.shape[0]
    P = np.zeros((k + 1, k + 1), dtype=w.dtype)
    P[:k, :k] = lam * np.eye(k, dtype=w.dtype)
    return P


def hessian(X, y, lam, w, b):
    Xa, d = _design(X, w, b)
    return Xa.T @ (d[:, None] * Xa) + _penalty(lam, w)


def hessian_forgot_penalty(X, y, lam, w, b):
    Xa, d = _design(X, w, b)
    # BUG: the Hessian of lam/2 ||w||^2 (lam I on the w block) is missing.
    return Xa.T @ (d[:, None] * Xa)


def hessian_upper_only(X, y, lam, w, b):
    Xa, d = _design(X, w, b)
    H = Xa.T @ (d[:, None] * Xa) + _penalty(lam, w)
    # BUG: only the upper triangle is filled in (a loop over i <= j that forgets H[j, i] = H[i, j]).
    return np.triu(H)


def hessian_diagonal_doubled(X, y, lam, w, b):
    Xa, d = _design(X, w, b)
    H = Xa.T @ (d[:, None] * Xa) + _penalty(lam, w)
    # BUG: d^2/dx^2 treated like the mixed 2 d^2/dx_i dx_j of a quadratic form: the diagonal is doubled.
    return H + np.diag(np.diag(H))


def hvp(X, y, lam, w, b, vector):
    Xa, d = _design(X, w, b)
    v = np.concatenate([vector["w"], np.reshape(vector["b"], (1,))])
    Hv = Xa.T @ (d * (Xa @ v)) + _penalty(lam, w) @ v
    return {"w": Hv[:-1], "b": np.asarray(Hv[-1])}


def hvp_sum_not_mean(X, y, lam, w, b, vector):
    n = X.shape[0]
    Xa, d = _design(X, w, b)
    v = np.concatenate([vector["w"], np.reshape(vector["b"], (1,))])
    # BUG: the data term summed over the samples instead of averaged (a factor n on it).
    Hv = Xa.T @ ((n * d) * (Xa @ v)) + _penalty(lam, w) @ v
    return {"w": Hv[:-1], "b": np.asarray(Hv[-1])}


def hessian_diag(X, y, lam, w, b):
    Xa, d = _design(X, w, b)
    diag = (d[:, None] * Xa * Xa).sum(axis=0)
    return {"w": diag[:-1] + lam, "b": np.asarray(diag[-1])}
