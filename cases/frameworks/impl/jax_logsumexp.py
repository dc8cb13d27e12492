"""Softmax cross-entropy in JAX with a custom_vjp logsumexp (correct and with a planted bug)."""
import jax
import jax.numpy as jnp


@jax.custom_vjp
def logsumexp_rows(z):
    m = jax.lax.stop_gradient(z.max(axis=1, keepdims=True))
    return (m + jnp.log(jnp.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]


def _lse_fwd(z):
    return logsumexp_rows(z), z


def _lse_bwd(z, g):
    p = jnp.exp(z - z.max(axis=1, keepdims=True))
    return (g[:, None] * p / p.sum(axis=1, keepdims=True),)


logsumexp_rows.defvjp(_lse_fwd, _lse_bwd)


@jax.custom_vjp
def logsumexp_rows_buggy(z):
    return logsumexp_rows(z)


def _bad_bwd(z, g):
    return (g[:, None] * jnp.exp(z),)  # BUG: softmax without dividing by the row sum


logsumexp_rows_buggy.defvjp(_lse_fwd, _bad_bwd)


def forward(X, Y, W):
    Z = X @ W
    return logsumexp_rows(Z).sum() - (Y * Z).sum()


def forward_buggy_vjp(X, Y, W):
    Z = X @ W
    return logsumexp_rows_buggy(Z).sum() - (Y * Z).sum()


def forward_plain(X, Y, W):
    Z = X @ W
    return jax.nn.logsumexp(Z, axis=1).sum() - (Y * Z).sum()


def gradient(X, Y, W):
    P = jax.nn.softmax(X @ W, axis=1)
    return {"W": X.T @ (P - Y)}


def gradient_forgot_labels(X, Y, W):
    P = jax.nn.softmax(X @ W, axis=1)
    return {"W": X.T @ P}  # BUG: the gradient of - sum(Y * Z) is missing
