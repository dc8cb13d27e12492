"""Row-wise log-sum-exp with large logits; its gradient is the softmax."""
import numpy as np


def forward(x):
    m = np.max(x, axis=1, keepdims=True)
    return np.sum(m[:, 0] + np.log(np.sum(np.exp(x - m), axis=1)))


def backward(x):
    e = np.exp(x - np.max(x, axis=1, keepdims=True))
    return {"x": e / np.sum(e, axis=1, keepdims=True)}


def backward_naive(x):
    # BUG (numerical): exp(1000) overflows to inf in float32 and float64,
    # so this is inf / inf = nan. Silence the warnings; the result is the point.
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(x)
        return {"x": e / np.sum(e, axis=1, keepdims=True)}


def backward_wrong_axis(x):
    # BUG: normalised over the rows (axis 0) instead of within each row.
    e = np.exp(x - np.max(x, axis=0, keepdims=True))
    return {"x": e / np.sum(e, axis=0, keepdims=True)}
