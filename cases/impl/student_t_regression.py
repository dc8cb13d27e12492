"""Student-t regression: y = X w + noise, noise ~ t(nu) with scale exp(log_s); nu is learned too.

The per-sample negative log-likelihood is
    -gammaln((nu+1)/2) + gammaln(nu/2) + log(nu*pi)/2 + log_s + (nu+1)/2 * log1p(z2),
with z2 = r**2 / (nu * exp(2 log_s)), r = y - X w; the loss is its mean.
"""
import numpy as np
from scipy.special import digamma, loggamma  # loggamma: real for nu > 0, and complex-step capable


def forward(X, y, w, log_s, nu):
    r = y - X @ w
    z2 = r**2 / (nu * np.exp(2 * log_s))
    nll = -loggamma((nu + 1) / 2) + loggamma(nu / 2) + np.log(nu * np.pi) / 2 + log_s + (nu + 1) / 2 * np.log1p(z2)
    return np.mean(nll)


def _parts(X, y, w, log_s, nu):
    n = X.shape[0]
    r = y - X @ w
    z2 = r**2 / (nu * np.exp(2 * log_s))
    # d nll / d z2 = (nu+1)/2 / (1 + z2); z2 depends on w (through r), log_s and nu
    a = (nu + 1) / 2 / (1 + z2)
    return n, r, z2, a


def backward(X, y, w, log_s, nu):
    n, r, z2, a = _parts(X, y, w, log_s, nu)
    dw = X.T @ (a * (-2 * z2 / r)) / n
    dlog_s = np.mean(1 - 2 * a * z2)
    dnu = np.mean(-digamma((nu + 1) / 2) / 2 + digamma(nu / 2) / 2 + 1 / (2 * nu)
                  + np.log1p(z2) / 2 - a * z2 / nu)
    return {"w": dw, "log_s": np.asarray(dlog_s, dtype=X.dtype), "nu": np.asarray(dnu, dtype=X.dtype)}


def backward_nu_explicit_only(X, y, w, log_s, nu):
    n, r, z2, a = _parts(X, y, w, log_s, nu)
    dw = X.T @ (a * (-2 * z2 / r)) / n
    dlog_s = np.mean(1 - 2 * a * z2)
    # BUG: differentiates only the explicit nu's; z2 = r^2/(nu s^2) depends on nu too (the -a z2/nu term).
    dnu = np.mean(-digamma((nu + 1) / 2) / 2 + digamma(nu / 2) / 2 + 1 / (2 * nu) + np.log1p(z2) / 2)
    return {"w": dw, "log_s": np.asarray(dlog_s, dtype=X.dtype), "nu": np.asarray(dnu, dtype=X.dtype)}


def backward_digamma_chain_rule(X, y, w, log_s, nu):
    n, r, z2, a = _parts(X, y, w, log_s, nu)
    dw = X.T @ (a * (-2 * z2 / r)) / n
    dlog_s = np.mean(1 - 2 * a * z2)
    # BUG: d/dnu gammaln(nu/2) is digamma(nu/2)/2; the inner derivatives 1/2 are dropped.
    dnu = np.mean(-digamma((nu + 1) / 2) + digamma(nu / 2) + 1 / (2 * nu) + np.log1p(z2) / 2 - a * z2 / nu)
    return {"w": dw, "log_s": np.asarray(dlog_s, dtype=X.dtype), "nu": np.asarray(dnu, dtype=X.dtype)}
