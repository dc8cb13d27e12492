"""A layer-norm block: H = X W^T, N = (H - mean) / sqrt(var + eps) per row, Y = gamma * N + beta,
loss = mean((Y - T)^2). The backward pass is the textbook one (Ba, Kiros & Hinton 2016):
dH = (dN - mean(dN) - N * mean(dN * N)) / sqrt(var + eps), per row.
"""
import numpy as np

EPS = 1e-5


def _forward_parts(X, W, gamma, beta):
    H = X @ W.T
    mu = np.mean(H, axis=1, keepdims=True)
    D = H - mu
    var = np.mean(D * D, axis=1, keepdims=True)      # D * D, not abs(D)**2: complex-step safe
    s = np.sqrt(var + EPS)
    N = D / s
    return H, D, s, N, gamma * N + beta


def forward(X, T, W, gamma, beta):
    *_, Y = _forward_parts(X, W, gamma, beta)
    R = Y - T
    return np.sum(R * R) / R.size


def _backward(X, T, W, gamma, beta, bug=None):
    H, D, s, N, Y = _forward_parts(X, W, gamma, beta)
    dY = 2 * (Y - T) / Y.size
    dgamma = np.sum(dY * N, axis=0)
    dbeta = np.sum(dY, axis=0)
    dN = dY * gamma
    if bug == "constant-variance":
        # BUG: the variance treated as a constant: only the mean is differentiated
        dH = (dN - np.mean(dN, axis=1, keepdims=True)) / s
    elif bug == "sample-variance":
        # BUG: the backward pass of the sample variance (ddof=1) under a population-variance forward
        n = H.shape[1]
        dH = (dN - np.mean(dN, axis=1, keepdims=True)
              - N * np.sum(dN * N, axis=1, keepdims=True) / (n - 1)) / s
    else:
        dH = (dN - np.mean(dN, axis=1, keepdims=True) - N * np.mean(dN * N, axis=1, keepdims=True)) / s
    return {"W": dH.T @ X, "gamma": dgamma, "beta": dbeta}


def backward(X, T, W, gamma, beta):
    return _backward(X, T, W, gamma, beta)


def backward_constant_variance(X, T, W, gamma, beta):
    return _backward(X, T, W, gamma, beta, bug="constant-variance")


def backward_sample_variance(X, T, W, gamma, beta):
    return _backward(X, T, W, gamma, beta, bug="sample-variance")
