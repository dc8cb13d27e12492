"""2x2 max-pooling (stride 2) of an (H, W) array followed by sum(C * pooled).

Shared by the maxpool-ties and maxpool-no-ties cases.
"""
import numpy as np


def _windows(x):
    """(H, W) -> (H/2, W/2, 4): each window flattened in row-major order."""
    H, W = x.shape
    return x.reshape(H // 2, 2, W // 2, 2).transpose(0, 2, 1, 3).reshape(H // 2, W // 2, 4)


def _unwindows(g):
    """Inverse of _windows."""
    h, w, _ = g.shape
    return g.reshape(h, w, 2, 2).transpose(0, 2, 1, 3).reshape(2 * h, 2 * w)


def forward(x, C):
    return np.sum(C * _windows(x).max(axis=2))


def backward_argmax(x, C):
    """Route each window's upstream weight to its first maximum (the argmax
    convention of most frameworks): a valid subgradient at ties."""
    win = _windows(x)
    k = np.argmax(win, axis=2)
    g = np.zeros_like(win)
    rows, cols = np.indices(k.shape)
    g[rows, cols, k] = C
    return {"x": _unwindows(g)}


def backward_split_ties(x, C):
    """Split each window's upstream weight evenly among its tied maxima:
    also a valid subgradient (the average of the one-sided choices)."""
    win = _windows(x)
    mask = (win == win.max(axis=2, keepdims=True)).astype(x.dtype)
    share = mask / np.sum(mask, axis=2, keepdims=True)
    return {"x": _unwindows(share * C[:, :, None])}


def backward_mask(x, C):
    """The common mask-based backward pass. Correct without ties.
    At ties (BUG there): every tied entry receives the full upstream weight."""
    win = _windows(x)
    mask = (win == win.max(axis=2, keepdims=True)).astype(x.dtype)
    return {"x": _unwindows(mask * C[:, :, None])}


def backward_unravel_swapped(x, C):
    """BUG: the flat (row-major) index k of a 2x2 window is (row, col) =
    divmod(k, 2); here it is unravelled as (k % 2, k // 2), which moves the
    gradient of an off-diagonal maximum to the other off-diagonal entry."""
    H, W = x.shape
    g = np.zeros_like(x)
    for i in range(H // 2):
        for j in range(W // 2):
            k = int(np.argmax(x[2 * i:2 * i + 2, 2 * j:2 * j + 2]))
            di, dj = k % 2, k // 2           # should be divmod(k, 2)
            g[2 * i + di, 2 * j + dj] = C[i, j]
    return {"x": g}


def backward_forgot_upstream(x, C):
    """BUG: routes 1 (not C[i, j]) to each window's maximum."""
    win = _windows(x)
    k = np.argmax(win, axis=2)
    g = np.zeros_like(win)
    rows, cols = np.indices(k.shape)
    g[rows, cols, k] = 1
    return {"x": _unwindows(g)}
