"""Lennard-Jones energy of a small cluster, reduced units (epsilon = sigma = 1).

The candidates loop over pairs like an MD code; S (the pair incidence matrix
used by the symbolic loss) is accepted and ignored.
"""
import numpy as np


def forward(S, P):
    n = P.shape[0]
    E = P.dtype.type(0)
    for i in range(n):
        for j in range(i + 1, n):
            d = P[i] - P[j]
            inv6 = 1 / np.sum(d * d) ** 3
            E = E + 4 * (inv6 * inv6 - inv6)
    return E


def _pair_gradient(P, factor_two=2):
    n = P.shape[0]
    G = np.zeros_like(P)
    for i in range(n):
        for j in range(i + 1, n):
            d = P[i] - P[j]
            r2 = np.sum(d * d)
            inv2 = 1 / r2
            inv6 = inv2 ** 3
            # dE/d(r^2) for 4 (r^-12 - r^-6) = 4 (s^-6 - s^-3) with s = r^2
            dE_dr2 = 4 * (-6 * inv6 * inv6 + 3 * inv6) * inv2
            g = factor_two * dE_dr2 * d          # d(r^2)/d(P_i) = 2 d
            G[i] += g
            G[j] -= g
    return G


def backward(S, P):
    return {"P": _pair_gradient(P)}


def backward_forces(S, P):
    # BUG: returns the forces F = -grad E (what the integrator wants),
    # not the gradient that was asked for.
    return {"P": -_pair_gradient(P)}


def backward_forgot_2(S, P):
    # BUG: d(r^2)/dd = 2 d, written as d.
    return {"P": _pair_gradient(P, factor_two=1)}
