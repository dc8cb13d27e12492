"""Candidates of tiny-linreg (test data for the report tests)."""


def grad(X, y, w):
    r = X @ w - y
    return {"w": X.T @ r / X.shape[0]}


def grad_doubled(X, y, w):
    r = X @ w - y
    # BUG: the 1/2 of the loss is forgotten: the gradient is twice too large.
    return {"w": 2 * X.T @ r / X.shape[0]}

