"""A small CNN: conv2d (3x3, cross-correlation) -> relu -> 2x2 max-pool -> linear -> cross-entropy.

Written the way a hand-rolled numpy backprop is: the convolution as a loop over the
kernel offsets (each offset one shifted slice of the input times one weight per
channel pair), the pooling through a reshape to windows, the argmax mask for its
backward pass. Shapes: X (N, 1, H, W), W1 (F, 1, k, k), b1 (F,), W2 (classes, F*Hp*Wp),
y (N,) int64 class labels.
"""
import numpy as np


def _conv(X, W1, b1):
    n, c, h, w = X.shape
    f, _, k, _ = W1.shape
    ho, wo = h - k + 1, w - k + 1
    out = np.zeros((n, f, ho, wo), dtype=X.dtype) + b1[None, :, None, None]
    for u in range(k):
        for v in range(k):
            patch = X[:, :, u:u + ho, v:v + wo]                      # (n, c, ho, wo)
            out += np.einsum("nchw,fc->nfhw", patch, W1[:, :, u, v])
    return out


def _windows(A):
    n, f, h, w = A.shape
    return A.reshape(n, f, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, f, h // 2, w // 2, 4)


def _forward_parts(X, W1, b1, W2, b2):
    pre = _conv(X, W1, b1)
    A = np.maximum(pre, 0)
    win = _windows(A)
    P = win.max(axis=-1)
    F = P.reshape(P.shape[0], -1)
    Z = F @ W2.T + b2
    return pre, A, win, P, F, Z


def _log_softmax(Z):
    m = np.max(Z.real, axis=1, keepdims=True)        # real part: complex-step safe
    S = Z - m
    return S - np.log(np.sum(np.exp(S), axis=1, keepdims=True))


def forward(X, y, W1, b1, W2, b2):
    *_, Z = _forward_parts(X, W1, b1, W2, b2)
    return -np.sum(_log_softmax(Z)[np.arange(len(y)), y]) / X.shape[0]


def _backward(X, y, W1, b1, W2, b2, bug=None):
    pre, A, win, P, F, Z = _forward_parts(X, W1, b1, W2, b2)
    n = X.shape[0]
    dZ = np.exp(_log_softmax(Z))
    dZ[np.arange(n), y] -= 1                            # y: int64 class labels
    dZ = dZ / n
    dW2 = dZ.T @ F
    db2 = dZ.sum(axis=0)
    dP = (dZ @ W2).reshape(P.shape)
    if bug == "pool":
        mask = np.ones_like(win)                        # BUG: every window entry gets the gradient
    else:
        first = np.argmax(win, axis=-1)                 # the first maximum of each window
        mask = (np.arange(4) == first[..., None]).astype(X.dtype)
    dwin = mask * dP[..., None]
    nn, f, hp, wp, _ = win.shape
    dA = dwin.reshape(nn, f, hp, wp, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(A.shape)
    dpre = dA * (pre > 0).astype(X.dtype)
    k = W1.shape[2]
    ho, wo = pre.shape[2:]
    dW1 = np.zeros_like(W1)
    for u in range(k):
        for v in range(k):
            # BUG "flip": the kernel gradient of a true convolution (kernel reversed), not of
            # the cross-correlation that conv2d computes
            uu, vv = (k - 1 - u, k - 1 - v) if bug == "flip" else (u, v)
            patch = X[:, :, uu:uu + ho, vv:vv + wo]
            dW1[:, :, u, v] = np.einsum("nfhw,nchw->fc", dpre, patch)
    db1 = dpre.sum(axis=(0, 2, 3))
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


def backward(X, y, W1, b1, W2, b2):
    return _backward(X, y, W1, b1, W2, b2)


def backward_kernel_reversed(X, y, W1, b1, W2, b2):
    return _backward(X, y, W1, b1, W2, b2, bug="flip")


def backward_pool_no_argmax(X, y, W1, b1, W2, b2):
    return _backward(X, y, W1, b1, W2, b2, bug="pool")
