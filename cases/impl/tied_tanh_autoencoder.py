"""Hand-written backward passes of cases/tied-tanh-autoencoder.toml (a held-out loss, issue 17 item 4)."""
import numpy as np


def _parts(X, W):
    H = np.tanh(X @ W)
    dR = 2 * (H @ W.T - X) / X.size  # d loss / d reconstruction
    dec = dR.T @ H                   # the decoder's share (R = H W^T)
    dZ = (dR @ W) * (1 - H * H)      # textbook tanh derivative
    return dec, X.T @ dZ


def backward(X, W):
    dec, enc = _parts(X, W)
    return {"W": enc + dec}


def backward_encoder_only(X, W):
    return {"W": _parts(X, W)[1]}
