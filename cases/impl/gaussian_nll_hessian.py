"""Second order of a Gaussian NLL with a learned variance (heteroscedastic regression).

L(w, v) = mean(s/2 + r^2 exp(-s)/2) + log(2 pi)/2, with the mean mu = X w, the log-variance
s = Z v (its own features Z) and r = y - mu. With q = exp(-s) / n per sample:

    H[w,w] = X^T diag(q) X,
    H[w,v] = X^T diag(r q) Z        (d/dv of dL/dw = -X^T (r q)),
    H[v,v] = Z^T diag(r^2 q / 2) Z,

and H[v,w] = H[w,v]^T. Candidates return the 6 x 6 matrix over (w, v) in that order.
"""
import numpy as np


def _parts(X, Z, y, w, v):
    n = X.shape[0]
    r = y - X @ w
    q = np.exp(-(Z @ v)) / n
    return r, q


def hessian(X, Z, y, w, v):
    r, q = _parts(X, Z, y, w, v)
    Hww = X.T @ (q[:, None] * X)
    Hwv = X.T @ ((r * q)[:, None] * Z)
    Hvv = Z.T @ ((r * r * q / 2)[:, None] * Z)
    return np.block([[Hww, Hwv], [Hwv.T, Hvv]])


def hessian_cross_block_transposed(X, Z, y, w, v):
    r, q = _parts(X, Z, y, w, v)
    Hww = X.T @ (q[:, None] * X)
    Hvv = Z.T @ ((r * r * q / 2)[:, None] * Z)
    # BUG: the mixed block written as Z^T diag(rq) X, i.e. H[v,w], in the place of H[w,v].
    Hvw = Z.T @ ((r * q)[:, None] * X)
    return np.block([[Hww, Hvw], [Hvw.T, Hvv]])


def hessian_forgot_cross_term(X, Z, y, w, v):
    r, q = _parts(X, Z, y, w, v)
    Hww = X.T @ (q[:, None] * X)
    Hvv = Z.T @ ((r * r * q / 2)[:, None] * Z)
    # BUG: the mean and the variance treated as independent parameters: the mixed block is left out.
    zero = np.zeros((Hww.shape[0], Hvv.shape[0]), dtype=Hww.dtype)
    return np.block([[Hww, zero], [zero.T, Hvv]])


def hessian_diag(X, Z, y, w, v):
    r, q = _parts(X, Z, y, w, v)
    return {"w": (q[:, None] * X * X).sum(axis=0), "v": ((r * r * q / 2)[:, None] * Z * Z).sum(axis=0)}


def hessian_diag_variance_factor(X, Z, y, w, v):
    r, q = _parts(X, Z, y, w, v)
    # BUG: the 1/2 of r^2 exp(-s)/2 dropped in the variance block's second derivative.
    return {"w": (q[:, None] * X * X).sum(axis=0), "v": ((r * r * q)[:, None] * Z * Z).sum(axis=0)}
