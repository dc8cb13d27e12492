"""Logistic regression written for half precision: numpy float16 or ml_dtypes bfloat16 in, same out.

Every array arrives in the dtype under test; the arithmetic below stays in it (numpy keeps float16,
ml_dtypes keeps bfloat16 for elementwise ufuncs). ``@`` on bfloat16 returns float32 in numpy, so the
matrix products are rounded back to the input dtype: a candidate that returned float32 would not
exercise bfloat16 (verdict ``not exercised``).
"""
import numpy as np


def _mm(a, b):
    return (a @ b).astype(a.dtype)


def _total(a):
    """Sum accumulated in float32 for the 16-bit dtypes (as numpy does for float16), in the dtype otherwise."""
    return np.sum(a.astype(np.float32) if a.dtype.itemsize < 4 else a).astype(a.dtype)


def _sigmoid(z):
    # exp of a non-positive number never overflows (float16's largest value is 65504)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype)


def forward(X, y, w, b):
    n = X.shape[0]
    z = _mm(X, w) + b
    # log(1 + exp(-|z|)) + max(z, 0) - y z: the stable binary cross-entropy of the logits
    loss = np.log1p(np.exp(-np.abs(z))) + np.maximum(z, 0) - y * z
    return _total(loss) / n


def backward(X, y, w, b):
    n = X.shape[0]
    dz = (_sigmoid(_mm(X, w) + b) - y) / n
    return {"w": _mm(X.T, dz), "b": _total(dz)}


def backward_sum_not_mean(X, y, w, b):
    dz = _sigmoid(_mm(X, w) + b) - y
    # BUG: the 1/n of the mean is forgotten (a factor n = 16 on both gradients).
    return {"w": _mm(X.T, dz), "b": _total(dz)}


def backward_residual_sign(X, y, w, b):
    n = X.shape[0]
    # BUG: y - sigmoid(z) instead of sigmoid(z) - y (the ascent direction).
    dz = (y - _sigmoid(_mm(X, w) + b)) / n
    return {"w": _mm(X.T, dz), "b": _total(dz)}


def backward_float32(X, y, w, b):
    g = backward(X.astype(np.float32), y.astype(np.float32), w.astype(np.float32), b.astype(np.float32))
    # Upcast: computed and returned in float32, so the half-precision arithmetic never ran.
    return g
