"""Least squares L(beta) = 1/(2n) ||y - X beta||^2 (plain numpy operators only)."""


def forward(X, y, beta):
    r = y - X @ beta
    return (r @ r) / (2 * X.shape[0])


def backward(X, y, beta):
    n = X.shape[0]
    r = y - X @ beta
    return {"beta": -(X.T @ r) / n}


def backward_missing_1_over_n(X, y, beta):
    r = y - X @ beta
    # BUG: the 1/n of the mean is dropped.
    return {"beta": -(X.T @ r)}


def backward_sign_flipped(X, y, beta):
    n = X.shape[0]
    r = y - X @ beta
    # BUG: d/dbeta of (y - X beta)^2 is -2 X^T r; the minus sign got lost.
    return {"beta": (X.T @ r) / n}


def backward_offset(X, y, beta):
    n = X.shape[0]
    r = y - X @ beta
    # BUG: a penalty 0.1 * sum(beta) that is not in the loss: its gradient 0.1 is added to every entry.
    return {"beta": -(X.T @ r) / n + beta.dtype.type(0.1)}
