"""d/dx log(1 + exp(x)) = sigmoid(x)."""
import numpy as np


def backward(x):
    # e = exp(-|x|) is in (0, 1]: sigmoid(x) = 1/(1+e) for x >= 0, e/(1+e) else.
    e = np.exp(-np.abs(x))
    return {"x": np.where(x >= 0, 1 / (1 + e), e / (1 + e))}


def backward_naive(x):
    # BUG (numerical): exp(x) overflows for large x, giving inf / inf = nan.
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(x)
        return {"x": e / (1 + e)}
