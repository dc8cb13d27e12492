"""Rules of the special functions of the function table: ``gammaln``, ``digamma``, ``sinc``, ``log_sigmoid``.

:mod:`verigrad.expr.functions` holds one :class:`~verigrad.expr.functions.ElemFn` record per
function; the float, mpmath, Arb ball and Arb power-series implementations that need more than
one line live here, so that the table stays readable.

Conventions (scipy.special / numpy):

* ``gammaln(x) = log|Γ(x)|`` for every real ``x`` except the poles ``0, -1, -2, ...``
  (scipy's ``gammaln``); ``digamma = gammaln'`` (scipy's ``psi``) with the same poles;
  ``trigamma = digamma'`` (internal: the derivative rule of ``digamma``).
* ``sinc(x) = sin(πx)/(πx)``, 1 at 0 (numpy's normalised sinc); ``dsinc = sinc'`` is
  ``(cos(πx) - sinc(x))/x``, 0 at 0 (internal: the derivative rule of ``sinc``); both removable
  singularities are handled exactly in every arithmetic.
* ``log_sigmoid(x) = -log(1 + exp(-x))`` (scipy's ``log_expit``).

Power series (Taylor mode) of ``gammaln``/``digamma``/``trigamma`` and ``sinc``/``dsinc`` are built
from the Taylor coefficients of ``lgamma`` (resp. ``sinc``) at the constant term ``c`` of the argument
series (Arb's ``lgamma`` series of ``c + t``; reflection ``log|Γ(x)| = log π - log|sin πx| - log Γ(1-x)``
for ``c < 0``), composed with the argument minus ``c`` by Horner's rule.

python-flint is imported lazily: only the ball and series rules need it, and they only run
inside the Arb backends.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np

__all__ = ["Undecided", "np_gammaln", "np_digamma", "np_trigamma", "np_sinc", "np_dsinc", "np_log_sigmoid",
           "mp_gammaln", "mp_trigamma", "mp_dsinc", "mp_log_sigmoid", "not_a_pole",
           "ball_gammaln", "ball_digamma", "ball_trigamma", "ball_dsinc", "ball_log_sigmoid",
           "series_gammaln", "series_digamma", "series_trigamma", "series_sinc", "series_dsinc",
           "series_log_sigmoid", "np_d2sinc", "mp_d2sinc", "ball_d2sinc", "series_d2sinc", "np_tetragamma",
           "mp_tetragamma", "ball_tetragamma", "series_tetragamma"]


class Undecided(ArithmeticError):
    """A ball straddles a decision boundary (kink, domain edge, tie, pole) at this precision.

    Re-exported by :mod:`verigrad.expr.functions`, whose ball rules raise it."""


def _scipy_special():
    import scipy.special  # lazily: scipy is heavy, and only the float evaluation of these functions needs it

    return scipy.special


def _real_dtype_call(f, x: np.ndarray) -> np.ndarray:
    """``f`` (a float64 scipy ufunc) on a real array, rounded once to the array's dtype."""
    x = np.asarray(x)
    return np.asarray(f(x.astype(np.float64)), dtype=np.float64).astype(x.dtype)


# -- float (numpy dtype kept) --------------------------------------------------------------------


def _no_complex_step() -> Exception:
    """A UsageError (exit 2, a scheme row's error in ``verigrad run``), not a TypeError's traceback."""
    from verigrad.errors import UsageError

    return UsageError("complex-step is refused: gammaln has no complex step at arguments with real part <= 0 "
                      "(log|Γ| is not the real part of an analytic branch there)",
                      hint="use a real scheme such as central or central4")


def np_gammaln(x: np.ndarray) -> np.ndarray:
    """scipy's ``gammaln`` (log|Γ|, +inf at the poles), rounded to the dtype; complex: ``loggamma``
    where the real part is positive (the principal branch is log Γ there)."""
    sp = _scipy_special()
    if np.iscomplexobj(x):
        if np.any(np.asarray(x).real <= 0):
            raise _no_complex_step()
        return np.asarray(sp.loggamma(np.asarray(x, dtype=np.complex128))).astype(np.asarray(x).dtype)
    return _real_dtype_call(sp.gammaln, x)


def np_digamma(x: np.ndarray) -> np.ndarray:
    """scipy's ``psi`` in float64, rounded to the dtype (complex too)."""
    sp = _scipy_special()
    x = np.asarray(x)
    wide = np.complex128 if np.iscomplexobj(x) else np.float64
    return np.asarray(sp.psi(x.astype(wide))).astype(x.dtype)


def np_trigamma(x: np.ndarray) -> np.ndarray:
    """scipy's ``polygamma(1, x)`` in float64, rounded to the dtype."""
    sp = _scipy_special()
    if np.iscomplexobj(x):
        raise TypeError("trigamma has no complex float implementation here")
    return _real_dtype_call(lambda v: sp.polygamma(1, v), x)


def np_sinc(x: np.ndarray) -> np.ndarray:
    return np.sinc(x)


#: Taylor coefficients of sinc'(x) = Σ_k c_k x^(2k-1), c_k = (-1)^k 2k π^(2k) / (2k+1)!, k = 1..10
_DSINC_TAYLOR = tuple(float(mpmath.mpf(-1) ** k * 2 * k * mpmath.pi ** (2 * k) / mpmath.factorial(2 * k + 1))
                      for k in range(1, 11))


def np_dsinc(x: np.ndarray) -> np.ndarray:
    """``(cos(πx) - sinc(x))/x`` for ``|x| >= 1/4``, and its Taylor polynomial of degree 19 below
    (the quotient cancels near 0; the polynomial's truncation error there is below 2**-70 relative)."""
    x = np.asarray(x)
    t = x.dtype.type
    pi = t(np.pi)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = (np.cos(pi * x) - np.sinc(x)) / x
    x2 = x * x
    poly = np.zeros_like(x)
    for c in reversed(_DSINC_TAYLOR):
        poly = poly * x2 + t(c)
    poly = poly * x
    small = np.abs(x) < 0.25
    return np.where(small, poly, q).astype(x.dtype, copy=False)


#: Taylor coefficients of sinc''(x) = Σ_k d_k x^(2k-2), d_k = (-1)^k 2k (2k-1) π^(2k) / (2k+1)!, k = 1..10
_D2SINC_TAYLOR = tuple(float(mpmath.mpf(-1) ** k * 2 * k * (2 * k - 1) * mpmath.pi ** (2 * k)
                             / mpmath.factorial(2 * k + 1)) for k in range(1, 11))


def np_d2sinc(x: np.ndarray) -> np.ndarray:
    """``((2 - π²x²) sin(πx) - 2πx cos(πx)) / (πx³)`` for ``|x| >= 1/4``, its Taylor polynomial below
    (-π²/3 at 0)."""
    x = np.asarray(x)
    t = x.dtype.type
    pi = t(np.pi)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = ((t(2) - (pi * x) ** 2) * np.sin(pi * x) - t(2) * pi * x * np.cos(pi * x)) / (pi * x ** 3)
    x2 = x * x
    poly = np.zeros_like(x)
    for c in reversed(_D2SINC_TAYLOR):
        poly = poly * x2 + t(c)
    return np.where(np.abs(x) < 0.25, poly, q).astype(x.dtype, copy=False)


def np_tetragamma(x: np.ndarray) -> np.ndarray:
    """scipy's ``polygamma(2, x)`` in float64, rounded to the dtype."""
    sp = _scipy_special()
    if np.iscomplexobj(x):
        raise TypeError("tetragamma has no complex float implementation here")
    return _real_dtype_call(lambda v: sp.polygamma(2, v), x)


def np_log_sigmoid(x: np.ndarray) -> np.ndarray:
    """``-logaddexp(0, -x)``: stable for every x (scipy's ``log_expit``)."""
    if np.iscomplexobj(x):
        return -np.log1p(np.exp(-x))
    return -np.logaddexp(np.asarray(x).dtype.type(0), -x)


# -- mpmath ---------------------------------------------------------------------------------------


def not_a_pole(x) -> bool:
    """Whether a real x is not one of the poles 0, -1, -2, ... of Γ (and of ψ, ψ')."""
    return not (x <= 0 and x == mpmath.floor(x))


def mp_gammaln(x):
    if isinstance(x, mpmath.mpc):
        if x.real <= 0:  # the same refusal as the float rule: log|Γ| is no analytic branch's real part there
            raise _no_complex_step()
        return mpmath.loggamma(x)
    if x > 0:
        return mpmath.loggamma(x)
    return mpmath.loggamma(x).real  # Re log Γ(x) = log|Γ(x)| on the principal branch


def mp_trigamma(x):
    return mpmath.psi(1, x)


def mp_dsinc(x):
    if isinstance(x, mpmath.mpc):
        return (mpmath.cospi(x) - mpmath.sincpi(x)) / x if x else mpmath.mpc(0)
    if not x:
        return mpmath.mpf(0)
    # cos(πx) - sinc(x) = O(x²) cancels: about 2 log2(1/|x|) extra bits keep the precision
    extra = max(0, -2 * int(mpmath.mag(x))) + 10
    with mpmath.extraprec(extra):
        v = (mpmath.cospi(x) - mpmath.sincpi(x)) / x
    return +v


def mp_d2sinc(x):
    if not x:
        return -mpmath.pi ** 2 / 3 + (0 * x)
    # the numerator is O(x³): about 3 log2(1/|x|) extra bits keep the precision
    extra = max(0, -3 * int(mpmath.mag(x))) + 10
    with mpmath.extraprec(extra):
        px = mpmath.pi * x
        v = ((2 - px ** 2) * mpmath.sinpi(x) - 2 * px * mpmath.cospi(x)) / (mpmath.pi * x ** 3)
    return +v


def mp_tetragamma(x):
    return mpmath.psi(2, x)


def mp_log_sigmoid(x):
    return -mpmath.log1p(mpmath.exp(-x))


# -- Arb balls ------------------------------------------------------------------------------------


def _log_abs_gamma_neg(x):
    """log|Γ(x)| for a ball x < 0: reflection, log π - log|sin πx| - lgamma(1 - x)."""
    s = x.sin_pi()
    return type(x).pi().log() - abs(s).log() - (1 - x).lgamma()


def ball_gammaln(x):
    if x > 0:
        return x.lgamma()
    if x < 0:
        return _log_abs_gamma_neg(x)
    raise Undecided


def ball_digamma(x):
    if x > 0 or x < 0:
        return x.digamma()
    raise Undecided


def ball_trigamma(x):
    return 2 * _lgamma_coeffs(x, 3)[2]


def ball_dsinc(x):
    """sinc'(x); where the ball contains 0, the enclosure ``|sinc'(y)| <= π²|y|/3``
    (``sinc'(y) = -∫₀¹ πt sin(πty) dt``)."""
    if x > 0 or x < 0:
        return (x.cos_pi() - x.sinc_pi()) / x
    A = type(x)
    bound = (abs(x.mid()) + x.rad()) * A.pi() ** 2 / 3
    return bound * A(0, 1)  # [0 ± bound]


def ball_d2sinc(x):
    """sinc''(x); where the ball contains 0, ``sinc''(y) in -π²/3 + [0, π⁴y²/10]``
    (``sinc''(y) = -∫₀¹ π²t² cos(πty) dt`` and ``1 - cos u <= u²/2``)."""
    A = type(x)
    if x > 0 or x < 0:
        return _compose(_shifted(_sinc_coeffs(x, 3), 2), x)
    R = abs(x.mid()) + x.rad()
    return -A.pi() ** 2 / 3 + A.pi() ** 4 * R * R / 10 * A(0.5, 0.5)


def ball_tetragamma(x):
    return 6 * _lgamma_coeffs(x, 4)[3]


def ball_log_sigmoid(x):
    return -((-x).exp().log1p())


# -- Arb power series -----------------------------------------------------------------------------


def _series_len(s) -> int:
    return max(1, int(s.prec))


def _const(s):
    from flint import arb_series

    if isinstance(s, arb_series):
        cs = s.coeffs()
        return cs[0] if cs else s[0]
    return s


def _compose(coeffs, s):
    """Σ coeffs[k] (s - c)^k, truncated to the length of ``s`` (Horner; ``coeffs`` at ``c = s[0]``)."""
    from flint import arb_series

    if not isinstance(s, arb_series):
        return coeffs[0]
    n = _series_len(s)
    u = s - _const(s)
    out = arb_series([coeffs[min(n, len(coeffs)) - 1]], prec=n)
    for k in range(min(n, len(coeffs)) - 2, -1, -1):
        out = out * u + coeffs[k]
    return out


class _cap_at_least:
    """flint's series length cap raised to ``n`` in a scope (the derivatives need more terms than the caller)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self):
        from flint import ctx

        self.old = ctx.cap
        ctx.cap = max(self.old, self.n)

    def __exit__(self, *exc):
        from flint import ctx

        ctx.cap = self.old


def _lgamma_coeffs(c, n: int):
    """Taylor coefficients of log|Γ| at the ball ``c`` (``n`` of them)."""
    with _cap_at_least(n):
        return _lgamma_coeffs_capped(c, n)


def _lgamma_coeffs_capped(c, n: int):
    from flint import arb, arb_series

    t = arb_series([c, arb(1)], prec=n)
    if c > 0:
        L = t.lgamma()
    elif c < 0:
        sign = -1 if c.sin_pi() < 0 else 1
        if not (c.sin_pi() < 0 or c.sin_pi() > 0):
            raise Undecided
        L = arb.pi().log() - (sign * t.sin_pi()).log() - (1 - t).lgamma()
    else:
        raise Undecided
    cs = list(L.coeffs()) + [arb(0)] * n
    return cs[:n]


def _shifted(coeffs, m: int):
    """Taylor coefficients of the m-th derivative from those of the function."""
    out = []
    for k in range(len(coeffs) - m):
        out.append(coeffs[k + m] * (math.factorial(k + m) // math.factorial(k)))
    return out


def _polygamma_series(s, m: int):
    c = _const(s)
    n = _series_len(s) if not isinstance(s, type(c)) else 1
    return _compose(_shifted(_lgamma_coeffs(c, n + m), m), s)


def series_gammaln(s):
    return _polygamma_series(s, 0)


def series_digamma(s):
    return _polygamma_series(s, 1)


def series_trigamma(s):
    return _polygamma_series(s, 2)


def _sinc_coeffs(c, n: int):
    """Taylor coefficients of sinc at the ball ``c``: at an exact 0 the series Σ (-π²t²)^k/(2k+1)!,
    elsewhere sin(π(c+t))/(π(c+t))."""
    with _cap_at_least(n):
        return _sinc_coeffs_capped(c, n)


def _sinc_coeffs_capped(c, n: int):
    from flint import arb, arb_series

    if c > 0 or c < 0:
        t = arb_series([c, arb(1)], prec=n)
        cs = list((t.sin_pi() / (arb.pi() * t)).coeffs())
    elif c.is_exact() and c == 0:
        cs = [arb(0)] * n
        p2 = arb.pi() ** 2
        for k in range(0, (n + 1) // 2):
            cs[2 * k] = (-p2) ** k / arb(math.factorial(2 * k + 1))
    else:
        raise Undecided
    return (cs + [arb(0)] * n)[:n]


def series_sinc(s):
    c = _const(s)
    if not hasattr(s, "coeffs"):
        return c.sinc_pi()
    return _compose(_sinc_coeffs(c, _series_len(s)), s)


def series_dsinc(s):
    c = _const(s)
    if not hasattr(s, "coeffs"):
        return ball_dsinc(c)
    return _compose(_shifted(_sinc_coeffs(c, _series_len(s) + 1), 1), s)


def series_d2sinc(s):
    c = _const(s)
    if not hasattr(s, "coeffs"):
        return ball_d2sinc(c)
    return _compose(_shifted(_sinc_coeffs(c, _series_len(s) + 2), 2), s)


def series_tetragamma(s):
    return _polygamma_series(s, 3)


def series_log_sigmoid(s):
    e = (-s).exp()
    out = -((1 + e).log())
    if hasattr(out, "coeffs"):
        cs = out.coeffs()
        if cs:
            cs[0] = ball_log_sigmoid(_const(s))
            return type(out)(cs)
    return out
