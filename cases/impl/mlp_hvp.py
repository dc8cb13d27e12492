"""Hessian-vector products of a small tanh MLP with a squared loss (Pearlmutter's R-operator).

Columns are examples: Z1 = W1 X + b1, A1 = tanh(Z1), Z2 = W2 A1 + b2,
L = sum((Z2 - Y)^2) / (2 m). ``hvp`` applies the R-operator R{.} (the directional
derivative along V = vector) to every line of the backward pass; it is exact.

``gauss_newton`` is the Gauss-Newton (GGN) product J^T J V that second-order optimisers often
use *in place of* the Hessian: it leaves out every term that carries the residual dZ2 (the
curvature of the network itself). ``forgot_tanh_curvature`` leaves out only the tanh''
term, a classic slip in a hand-derived R-op.
"""
import numpy as np


def _forward(X, W1, b1, W2, b2, Y):
    m = X.shape[1]
    Z1 = W1 @ X + b1
    A1 = np.tanh(Z1)
    Z2 = W2 @ A1 + b2
    dZ2 = (Z2 - Y) / m
    return m, A1, dZ2


def loss(X, Y, W1, b1, W2, b2):
    m, A1, dZ2 = _forward(X, W1, b1, W2, b2, Y)
    return np.sum((dZ2 * m) ** 2) / (2 * m)


def gradient(X, Y, W1, b1, W2, b2):
    m, A1, dZ2 = _forward(X, W1, b1, W2, b2, Y)
    dA1 = W2.T @ dZ2
    dZ1 = dA1 * (1 - A1 * A1)
    return {"W1": dZ1 @ X.T, "b1": dZ1.sum(axis=1, keepdims=True),
            "W2": dZ2 @ A1.T, "b2": dZ2.sum(axis=1, keepdims=True)}


def _r_op(X, Y, W1, b1, W2, b2, vector, *, residual_terms=True, tanh_curvature=True):
    m, A1, dZ2 = _forward(X, W1, b1, W2, b2, Y)
    VW1, Vb1, VW2, Vb2 = vector["W1"], vector["b1"], vector["W2"], vector["b2"]
    D1 = 1 - A1 * A1                       # tanh'(Z1)
    RZ1 = VW1 @ X + Vb1
    RA1 = D1 * RZ1
    RZ2 = VW2 @ A1 + W2 @ RA1 + Vb2
    RdZ2 = RZ2 / m
    dA1 = W2.T @ dZ2
    RdW2 = RdZ2 @ A1.T
    RdA1 = W2.T @ RdZ2
    if residual_terms:
        RdW2 = RdW2 + dZ2 @ RA1.T
        RdA1 = RdA1 + VW2.T @ dZ2
    RdZ1 = RdA1 * D1
    if residual_terms and tanh_curvature:
        RdZ1 = RdZ1 + dA1 * (-2 * A1 * RA1)   # tanh'' = -2 tanh tanh'
    return {"W1": RdZ1 @ X.T, "b1": RdZ1.sum(axis=1, keepdims=True),
            "W2": RdW2, "b2": RdZ2.sum(axis=1, keepdims=True)}


def hvp(X, Y, W1, b1, W2, b2, vector):
    return _r_op(X, Y, W1, b1, W2, b2, vector)


def gauss_newton(X, Y, W1, b1, W2, b2, vector):
    # BUG (as a Hessian): the GGN product drops every term that carries the residual.
    return _r_op(X, Y, W1, b1, W2, b2, vector, residual_terms=False)


def forgot_tanh_curvature(X, Y, W1, b1, W2, b2, vector):
    # BUG: R{tanh'(Z1)} = tanh''(Z1) R{Z1} is left out of R{dZ1}.
    return _r_op(X, Y, W1, b1, W2, b2, vector, tanh_curvature=False)
