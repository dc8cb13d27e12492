"""Rewrites of cases/gaussian-mixture.toml (shipped: cases/impl/fresh_losses.py:backward_gmm)."""
import numpy as np


def _z(x, mu, logsig):
    sig = np.exp(logsig)
    return (x[:, None] - mu) / sig, sig


def grad_logresp(x, logpi, mu, logsig):
    """Log-responsibilities by a hand-written logsumexp, r = exp(logp - lse)."""
    z, sig = _z(x, mu, logsig)
    logp = logpi - logsig - z * z / 2 - x.dtype.type(0.5 * np.log(2 * np.pi))
    m = logp.max(axis=1, keepdims=True)
    lse = m + np.log(np.sum(np.exp(logp - m), axis=1, keepdims=True))
    r = np.exp(logp - lse)
    return {"mu": -np.mean(r * z, axis=0) / sig, "logsig": np.mean(r * (1 - z ** 2), axis=0)}


def grad_density_em(x, logpi, mu, logsig):
    """EM style: densities without a log/max-shift, r = p / sum p, sums N_k and S_k expanded."""
    dt = x.dtype.type
    sig = np.exp(logsig)
    d = x[:, None] - mu
    p = np.exp(logpi) / (sig * dt(np.sqrt(2 * np.pi))) * np.exp(-d * d / (2 * sig * sig))
    r = p / p.sum(axis=1, keepdims=True)
    n = x.shape[0]
    Nk = r.sum(axis=0)
    # d/dmu = -sum r (x - mu) / sig^2 / n; d/dlogsig = -(sum r (x-mu)^2 / sig^2 - N_k) / n
    dmu = -(r * d).sum(axis=0) / (sig * sig) / n
    dlogsig = (Nk - (r * d * d).sum(axis=0) / (sig * sig)) / n
    return {"mu": dmu, "logsig": dlogsig}


def grad_loop(x, logpi, mu, logsig):
    """A loop over the points, softmax of each point's log-densities, float32 accumulators."""
    dt = x.dtype.type
    sig = np.exp(logsig)
    c = dt(0.5 * np.log(2 * np.pi))
    dmu = np.zeros_like(mu)
    dls = np.zeros_like(logsig)
    for xi in x:
        z = (xi - mu) / sig
        lp = logpi - logsig - dt(0.5) * z * z - c
        e = np.exp(lp - lp.max())
        r = e / e.sum()
        dmu -= r * z / sig
        dls -= r * (z * z - 1)
    n = dt(x.shape[0])
    return {"mu": dmu / n, "logsig": dls / n}
