"""Second-order candidates for loss = sum(exp(a) * b) + sum(a**2), variables a (2,), b (2,)."""
import numpy as np


def _hessian(a, b):
    h = np.zeros((4, 4), a.dtype)
    h[:2, :2] = np.diag(np.exp(a) * b + 2)
    h[:2, 2:] = h[2:, :2] = np.diag(np.exp(a))
    return h


def diag_flat(a, b):
    """The diagonal as one flat array of N entries, not one array per variable."""
    return np.diag(_hessian(a, b))


def diag_ok(a, b):
    d = np.diag(_hessian(a, b))
    return {"a": d[:2], "b": d[2:]}


def hvp_ignores_vector(a, b, vector):
    """H @ ones: the direction is ignored."""
    hv = _hessian(a, b) @ np.ones(4, a.dtype)
    return {"a": hv[:2], "b": hv[2:]}


def hessian_upper(a, b):
    """Only the upper triangle filled in."""
    return np.triu(_hessian(a, b))


def diag_lists(a, b):
    """The diagonal as plain Python lists of floats, one per variable."""
    d = np.diag(_hessian(a, b)).tolist()
    return [d[:2], d[2:]]
