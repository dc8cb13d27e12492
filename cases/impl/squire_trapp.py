"""f(x) = exp(x) / sqrt(sin(x)^3 + cos(x)^3), the classic complex-step test."""
import numpy as np


def forward(x):
    return np.exp(x) / np.sqrt(np.sin(x) ** 3 + np.cos(x) ** 3)


def backward(x):
    s, c = np.sin(x), np.cos(x)
    u = s ** 3 + c ** 3
    du = 3 * s ** 2 * c - 3 * c ** 2 * s
    f = np.exp(x) / np.sqrt(u)
    return {"x": np.asarray(f * (1 - du / (2 * u)))}


def backward_dropped_half(x):
    s, c = np.sin(x), np.cos(x)
    u = s ** 3 + c ** 3
    du = 3 * s ** 2 * c - 3 * c ** 2 * s
    f = np.exp(x) / np.sqrt(u)
    # BUG: d/dx u^(-1/2) = -(1/2) u^(-3/2) u'; the 1/2 is missing.
    return {"x": np.asarray(f * (1 - du / u))}


def backward_wrong_sign(x):
    s, c = np.sin(x), np.cos(x)
    u = s ** 3 + c ** 3
    # BUG: d/dx cos^3 x = -3 cos^2 x sin x, written with a plus sign.
    du = 3 * s ** 2 * c + 3 * c ** 2 * s
    f = np.exp(x) / np.sqrt(u)
    return {"x": np.asarray(f * (1 - du / (2 * u)))}
