"""The 3-layer network of the classic 'Gradient Checking' exercise.

Shapes: X (4, m), W1 (5, 4), b1 (5, 1), W2 (3, 5), b2 (3, 1), W3 (1, 3),
b3 (1, 1), Y (1, m) with m = 3. Columns are examples.
"""
import numpy as np


def _relu(x):
    # np.maximum(0, x): the Python int 0 is a weak scalar, x keeps its dtype.
    return np.maximum(0, x)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _forward_cache(X, W1, b1, W2, b2, W3, b3):
    Z1 = np.dot(W1, X) + b1
    A1 = _relu(Z1)
    Z2 = np.dot(W2, A1) + b2
    A2 = _relu(Z2)
    Z3 = np.dot(W3, A2) + b3
    A3 = _sigmoid(Z3)
    return Z1, A1, Z2, A2, Z3, A3


def forward_propagation_n(X, Y, W1, b1, W2, b2, W3, b3):
    """The exercise's forward_propagation_n followed by its cost."""
    m = X.shape[1]
    _, _, _, _, _, A3 = _forward_cache(X, W1, b1, W2, b2, W3, b3)
    logprobs = np.multiply(-np.log(A3), Y) + np.multiply(-np.log(1 - A3), 1 - Y)
    cost = 1. / m * np.sum(logprobs)
    return cost


def backward_propagation(X, Y, W1, b1, W2, b2, W3, b3):
    """Correct backprop that stays in the dtype it is given."""
    m = X.shape[1]
    Z1, A1, Z2, A2, Z3, A3 = _forward_cache(X, W1, b1, W2, b2, W3, b3)
    dZ3 = A3 - Y
    dW3 = 1. / m * np.dot(dZ3, A2.T)
    db3 = 1. / m * np.sum(dZ3, axis=1, keepdims=True)
    dA2 = np.dot(W3.T, dZ3)
    # The exercise writes np.int64(A2 > 0): an int64 array times a float32 array
    # is float64, so the whole float32 backward pass would silently become float64.
    # Casting the mask to the activations' own dtype keeps float32 float32.
    dZ2 = np.multiply(dA2, (A2 > 0).astype(A2.dtype))
    dW2 = 1. / m * np.dot(dZ2, A1.T)
    db2 = 1. / m * np.sum(dZ2, axis=1, keepdims=True)
    dA1 = np.dot(W2.T, dZ2)
    dZ1 = np.multiply(dA1, (A1 > 0).astype(A1.dtype))
    dW1 = 1. / m * np.dot(dZ1, X.T)
    db1 = 1. / m * np.sum(dZ1, axis=1, keepdims=True)
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2, "W3": dW3, "b3": db3}


def backward_propagation_n_buggy(X, Y, W1, b1, W2, b2, W3, b3):
    """The exercise's backward_propagation_n with its two planted bugs,
    but with dtype-preserving masks (so float32 really is float32)."""
    m = X.shape[1]
    Z1, A1, Z2, A2, Z3, A3 = _forward_cache(X, W1, b1, W2, b2, W3, b3)
    dZ3 = A3 - Y
    dW3 = 1. / m * np.dot(dZ3, A2.T)
    db3 = 1. / m * np.sum(dZ3, axis=1, keepdims=True)
    dA2 = np.dot(W3.T, dZ3)
    dZ2 = np.multiply(dA2, (A2 > 0).astype(A2.dtype))
    dW2 = 1. / m * np.dot(dZ2, A1.T) * 2          # BUG (planted): factor 2
    db2 = 1. / m * np.sum(dZ2, axis=1, keepdims=True)
    dA1 = np.dot(W2.T, dZ2)
    dZ1 = np.multiply(dA1, (A1 > 0).astype(A1.dtype))
    dW1 = 1. / m * np.dot(dZ1, X.T)
    db1 = 4. / m * np.sum(dZ1, axis=1, keepdims=True)   # BUG (planted): 4/m
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2, "W3": dW3, "b3": db3}


def backward_propagation_n_verbatim(X, Y, W1, b1, W2, b2, W3, b3):
    """The exercise's backward_propagation_n as published: the two planted bugs
    and the np.int64 masks, which upcast a float32 backward pass to float64."""
    m = X.shape[1]
    Z1, A1, Z2, A2, Z3, A3 = _forward_cache(X, W1, b1, W2, b2, W3, b3)
    dZ3 = A3 - Y
    dW3 = 1. / m * np.dot(dZ3, A2.T)
    db3 = 1. / m * np.sum(dZ3, axis=1, keepdims=True)
    dA2 = np.dot(W3.T, dZ3)
    dZ2 = np.multiply(dA2, np.int64(A2 > 0))
    dW2 = 1. / m * np.dot(dZ2, A1.T) * 2
    db2 = 1. / m * np.sum(dZ2, axis=1, keepdims=True)
    dA1 = np.dot(W2.T, dZ2)
    dZ1 = np.multiply(dA1, np.int64(A1 > 0))
    dW1 = 1. / m * np.dot(dZ1, X.T)
    db1 = 4. / m * np.sum(dZ1, axis=1, keepdims=True)
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2, "W3": dW3, "b3": db3}
