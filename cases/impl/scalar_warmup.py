"""J(theta) = theta * x: the one-dimensional gradient-checking warm-up."""
import numpy as np


def forward(theta, x):
    return theta * x


def backward(theta, x):
    # dJ/dtheta = x. Copy so the caller's constant is not aliased.
    return {"theta": np.array(x, dtype=x.dtype)}


def backward_wrong_symbol(theta, x):
    # BUG: differentiated with respect to x instead of theta (dJ/dx = theta).
    return {"theta": np.array(theta, dtype=theta.dtype)}
