"""Rewrites of cases/rosenbrock-10d.toml (shipped: cases/impl/rosenbrock_10d.py:backward)."""
import numpy as np


def grad_scipy(x):
    """scipy.optimize.rosen_der's formula (interior, first, last entries written apart)."""
    xm, xm_m1, xm_p1 = x[1:-1], x[:-2], x[2:]
    der = np.zeros_like(x)
    der[1:-1] = 200 * (xm - xm_m1 ** 2) - 400 * (xm_p1 - xm ** 2) * xm - 2 * (1 - xm)
    der[0] = -400 * x[0] * (x[1] - x[0] ** 2) - 2 * (1 - x[0])
    der[-1] = 200 * (x[-1] - x[-2] ** 2)
    return {"x": der}


def grad_expanded(x):
    """The polynomial multiplied out: 400 x^3 - 400 x x_next + 202 x - 2 - 200 x_prev^2 (interior)."""
    g = np.zeros_like(x)
    a, nx = x[:-1], x[1:]
    g[:-1] += 400 * a * a * a - 400 * a * nx + 2 * a - 2
    g[1:] += 200 * nx - 200 * a * a
    return {"x": g}


def grad_loop(x):
    """A loop over the terms, each adding its two partials (x*x, not x**2)."""
    g = np.zeros_like(x)
    for i in range(x.shape[0] - 1):
        t = x[i + 1] - x[i] * x[i]
        g[i] += -400 * t * x[i] - 2 * (1 - x[i])
        g[i + 1] += 200 * t
    return {"x": g}
