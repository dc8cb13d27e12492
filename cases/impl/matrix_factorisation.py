"""||A - U V^T||_F^2."""
import numpy as np


def forward(A, U, V):
    R = A - U @ V.T
    return np.sum(R * R)


def backward(A, U, V):
    R = A - U @ V.T
    return {"U": -2 * R @ V, "V": -2 * R.T @ U}


def backward_dropped_2(A, U, V):
    R = A - U @ V.T
    # BUG: d/dR ||R||^2 = 2R; the 2 is dropped.
    return {"U": -R @ V, "V": -R.T @ U}


def backward_sign_flipped(A, U, V):
    # BUG: residual written the other way round, signs kept as for A - U V^T.
    R = U @ V.T - A
    return {"U": -2 * R @ V, "V": -2 * R.T @ U}


def backward_rows_reversed(A, U, V):
    R = A - U @ V.T
    # BUG: the rows of the residual are taken in reverse order (an index that runs backwards).
    return {"U": -2 * R[::-1] @ V, "V": -2 * R.T @ U}
