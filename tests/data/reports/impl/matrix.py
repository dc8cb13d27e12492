"""Candidates of matrix-ls (test data for the report tests)."""
import numpy as np


def grad(X, Y, W):
    return {"W": X.T @ (X @ W - Y) / Y.size}


def grad_doubled(X, Y, W):
    # BUG: the 1/2 of the loss is forgotten.
    return {"W": 2 * X.T @ (X @ W - Y) / Y.size}


def grad_crashes(X, Y, W):
    print("about to fail <here> & now")
    raise RuntimeError("not implemented <yet>")


def grad_row_bug(X, Y, W):
    g = X.T @ (X @ W - Y) / Y.size
    g[1] *= 3  # BUG: row 1 only
    return {"W": g}
