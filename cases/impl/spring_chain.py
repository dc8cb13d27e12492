"""A chain of linear springs in the plane."""
import numpy as np


def forward(k, L, P):
    D = P[1:] - P[:-1]
    ell = np.sqrt(np.sum(D * D, axis=1))
    return np.sum(k / 2 * (ell - L) ** 2)


def backward(k, L, P):
    D = P[1:] - P[:-1]
    ell = np.sqrt(np.sum(D * D, axis=1))
    t = (k * (ell - L) / ell)[:, None] * D    # dE/dP[i+1] from spring i
    G = np.zeros_like(P)
    G[1:] += t
    G[:-1] -= t                               # equal and opposite on P[i]
    return {"P": G}


def backward_forgot_reaction(k, L, P):
    D = P[1:] - P[:-1]
    ell = np.sqrt(np.sum(D * D, axis=1))
    t = (k * (ell - L) / ell)[:, None] * D
    G = np.zeros_like(P)
    G[1:] += t
    # BUG: the opposite contribution to the spring's left node is missing.
    return {"P": G}


def backward_unnormalised(k, L, P):
    D = P[1:] - P[:-1]
    ell = np.sqrt(np.sum(D * D, axis=1))
    # BUG: d|D|/dD = D/|D|; the division by |D| is missing.
    t = (k * (ell - L))[:, None] * D
    G = np.zeros_like(P)
    G[1:] += t
    G[:-1] -= t
    return {"P": G}
