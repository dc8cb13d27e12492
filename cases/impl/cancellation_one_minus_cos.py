"""f(x) = (1 - cos x) / x^2, elementwise and summed."""
import math

import numpy as np

# f'(x) = sum_{k>=1} (-1)^k 2k x^(2k-1) / (2k+2)!  =  x * sum_k c_k (x^2)^(k-1).
# Nine terms are enough for |x| < 0.5 in float64 (the next term is < 1e-22
# relative). Python floats, so float32 inputs stay float32 (NEP 50).
_SERIES = [(-1) ** k * 2 * k / math.factorial(2 * k + 2) for k in range(1, 10)]


def forward(x):
    h = np.sin(x / 2)
    return np.sum(2 * h * h / (x * x))


def backward(x):
    x2 = x * x
    series = np.zeros_like(x)
    for c in reversed(_SERIES):          # Horner in x^2
        series = series * x2 + c
    series = series * x
    # Closed form away from 0, written with 1 - cos x = 2 sin^2(x/2):
    # f'(x) = sin(x)/x^2 - 2 f(x)/x with f(x) = 2 sin^2(x/2)/x^2.
    h = np.sin(x / 2)
    f = 2 * h * h / x2
    closed = np.sin(x) / x2 - 2 * f / x
    return {"x": np.where(np.abs(x) < 0.5, series, closed)}


def backward_naive(x):
    # BUG (numerical): the derivative as written in the textbook; the two terms
    # are each ~1/x and cancel to ~-x/12.
    return {"x": np.sin(x) / x ** 2 - 2 * (1 - np.cos(x)) / x ** 3}


def backward_dropped_half(x):
    x2 = x * x
    h = np.sin(x / 2)
    f = 2 * h * h / x2
    # BUG: d/dx 2 sin^2(x/2) = 2 * 2 sin(x/2) cos(x/2) * (1/2) = sin x;
    # the inner derivative 1/2 is dropped, giving 2 sin x.
    return {"x": 2 * np.sin(x) / x2 - 2 * f / x}
