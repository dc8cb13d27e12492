"""sum(c * relu(W x + b)) + lam * ||W||_1 at a point on the kinks."""
import numpy as np


def forward(x, c, lam, W, b):
    z = W @ x + b
    return np.sum(c * np.maximum(z, 0)) + lam * np.sum(np.abs(W))


def backward(x, c, lam, W, b):
    z = W @ x + b
    dz = c * (z > 0).astype(z.dtype)          # relu'(0) := 0 (PyTorch's choice)
    dW = np.outer(dz, x) + lam * np.sign(W)   # sign(0) = 0
    return {"W": dW, "b": dz}


def backward_right_convention(x, c, lam, W, b):
    z = W @ x + b
    dz = c * (z >= 0).astype(z.dtype)         # relu'(0) := 1, also valid
    dW = np.outer(dz, x) + lam * np.where(W >= 0, 1, -1).astype(W.dtype)  # sign(0) := +1
    return {"W": dW, "b": dz}


def backward_abs_prime_one(x, c, lam, W, b):
    z = W @ x + b
    dz = c * (z > 0).astype(z.dtype)
    # BUG: d|w|/dw is sign(w), not 1; wrong for every negative weight.
    dW = np.outer(dz, x) + lam
    return {"W": dW, "b": dz}


def backward_forgot_relu_prime(x, c, lam, W, b):
    # BUG: the upstream gradient is passed straight through the ReLU.
    dz = c.copy()
    dW = np.outer(dz, x) + lam * np.sign(W)
    return {"W": dW, "b": dz}
