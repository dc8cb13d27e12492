"""Hand-written numpy backward passes, written the way a user would (issue 17, item 4).

Each ``backward_*`` computes the gradient with its own evaluation order (BLAS products,
``np.sum``, fused expressions), not the order of verigrad's gradient graph, and keeps the dtype
of its inputs: they are the *correct* candidates that the per-entry tolerance must not flag.
The functions after them are buggy candidates (bug shapes wrong_axis, reversed, offset) of
``cases/softmax-ce-labels.toml`` and ``cases/cauchy-regression.toml``.
"""
import numpy as np


# --- MLP with weight decay: tanh hidden layer, squared error, lam/2 (|W1|^2 + |W2|^2) ------------

def backward_mlp(X, Y, lam, W1, b1, W2, b2):
    n = X.shape[0]
    H = np.tanh(X @ W1 + b1)
    out = H @ W2 + b2
    dout = (out - Y) / n
    dW2 = H.T @ dout + lam * W2
    db2 = dout.sum(axis=0)
    dH = dout @ W2.T
    dZ = dH * (1 - H * H)
    dW1 = X.T @ dZ + lam * W1
    db1 = dZ.sum(axis=0)
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


# --- Gaussian mixture negative log-likelihood (1-D, K components, fixed weights) ------------------

def backward_gmm(x, logpi, mu, logsig):
    sig = np.exp(logsig)
    z = (x[:, None] - mu[None, :]) / sig[None, :]
    logp = logpi[None, :] - logsig[None, :] - 0.5 * z * z - 0.5 * np.log(2 * np.pi).astype(x.dtype)
    m = logp.max(axis=1, keepdims=True)
    r = np.exp(logp - m)
    r = r / r.sum(axis=1, keepdims=True)  # responsibilities
    n = x.shape[0]
    dmu = -(r * z / sig[None, :]).sum(axis=0) / n
    dlogsig = -(r * (z * z - 1)).sum(axis=0) / n
    return {"mu": dmu, "logsig": dlogsig}


# --- layer norm followed by a linear read-out, squared error ---------------------------------------

def backward_layernorm(X, T, eps, gamma, beta):
    n, d = X.shape
    mu = X.mean(axis=1, keepdims=True)
    xc = X - mu
    var = (xc * xc).mean(axis=1, keepdims=True)
    inv = 1 / np.sqrt(var + eps)
    xhat = xc * inv
    out = xhat * gamma + beta
    dout = (out - T) / n
    dxhat = dout * gamma
    # the fused layer-norm backward: inv * (dxhat - mean(dxhat) - xhat mean(dxhat xhat))
    dX = inv * (dxhat - dxhat.mean(axis=1, keepdims=True) - xhat * (dxhat * xhat).mean(axis=1, keepdims=True))
    return {"X": dX, "gamma": (dout * xhat).sum(axis=0), "beta": dout.sum(axis=0)}


# --- softmax cross-entropy with integer labels (one-hot constant) ---------------------------------

def backward_softmax_ce(X, Yoh, W, b):
    n = X.shape[0]
    Z = X @ W + b
    Z = Z - Z.max(axis=1, keepdims=True)
    P = np.exp(Z)
    P /= P.sum(axis=1, keepdims=True)
    dZ = (P - Yoh) / n
    return {"W": X.T @ dZ, "b": dZ.sum(axis=0)}


# --- robust regression with the Cauchy loss: mean(c^2/2 log(1 + (r/c)^2)) -------------------------

def backward_cauchy(X, y, c, w):
    n = X.shape[0]
    r = X @ w - y
    psi = r / (1 + (r / c) ** 2)
    return {"w": X.T @ psi / n}


# --- buggy candidates (issue 17, item 5) -----------------------------------------------------------

def backward_ce_bias_broadcast(X, Yoh, W, b):
    g = backward_softmax_ce(X, Yoh, W, b)
    # BUG: dW summed over the input axis and broadcast back (a reduction over the wrong axis)
    g["W"] = np.broadcast_to(g["W"].sum(axis=0, keepdims=True), g["W"].shape).copy()
    return g


def backward_ce_first_row_broadcast(X, Yoh, W, b):
    g = backward_softmax_ce(X, Yoh, W, b)
    # BUG: one input's row broadcast to every row, where a sum over the batch was meant
    g["W"] = np.broadcast_to(g["W"][:1, :], g["W"].shape).copy()
    return g


def backward_cauchy_reversed(X, y, c, w):
    g = backward_cauchy(X, y, c, w)
    # BUG: the coefficients' order reversed (the design matrix read right to left)
    g["w"] = g["w"][::-1].copy()
    return g


def backward_cauchy_offset(X, y, c, w):
    g = backward_cauchy(X, y, c, w)
    # BUG: a constant added to every entry (a stray + c where * c was meant)
    g["w"] = g["w"] + X.dtype.type(0.25)
    return g


# --- buggy candidates of mlp-weight-decay, gaussian-mixture and layer-norm -------------------------

def backward_mlp_no_decay(X, Y, lam, W1, b1, W2, b2):
    """The weight-decay term forgotten: the data term's gradient only."""
    return backward_mlp(X, Y, 0.0 * lam, W1, b1, W2, b2)


def backward_gmm_sign_slip(x, logpi, mu, logsig):
    """d/dlogsig of -z^2/2 - logsig written as (z^2 + 1) instead of (z^2 - 1)."""
    sig = np.exp(logsig)
    z = (x[:, None] - mu[None, :]) / sig[None, :]
    logp = logpi[None, :] - logsig[None, :] - 0.5 * z * z - 0.5 * np.log(2 * np.pi).astype(x.dtype)
    r = np.exp(logp - logp.max(axis=1, keepdims=True))
    r = r / r.sum(axis=1, keepdims=True)
    n = x.shape[0]
    return {"mu": -(r * z / sig[None, :]).sum(axis=0) / n, "logsig": -(r * (z * z + 1)).sum(axis=0) / n}


def backward_layernorm_constant_variance(X, T, eps, gamma, beta):
    """The variance treated as a constant: the xhat * mean(dxhat * xhat) term of dX is missing."""
    n, d = X.shape
    xc = X - X.mean(axis=1, keepdims=True)
    inv = 1 / np.sqrt((xc * xc).mean(axis=1, keepdims=True) + eps)
    xhat = xc * inv
    dout = (xhat * gamma + beta - T) / n
    dxhat = dout * gamma
    dX = inv * (dxhat - dxhat.mean(axis=1, keepdims=True))
    return {"X": dX, "gamma": (dout * xhat).sum(axis=0), "beta": dout.sum(axis=0)}
