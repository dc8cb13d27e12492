"""Certified ground truth: the exact loss and gradient at a dtype's point.

For dtype p the point is x_p = fl_p(x) (and D_p = fl_p(D) for constants); binary
floats convert exactly to mpmath numbers, so the truth is the exact gradient at
the point the candidate actually sees.

Certification (DESIGN.md, "The truth"): the gradient graph is evaluated with
mpmath at two working precisions w and 2w + 64 bits (far apart, so that a
cancellation that wipes out every bit at w, e.g. 1 - cos(1e-30) at 128 bits, is
resolved at the second precision and shows up as a disagreement).  An entry is *certified to d
digits* when the two agree to a relative difference of 10^-d, or, for entries
that cancel to (almost) nothing, when they agree to 10^-(d + 8) of the
gradient's scale (reported as an absolute certificate).  If any entry falls
short, w is doubled and everything is re-evaluated, up to
``[limits] max_precision_bits``; beyond that a :class:`CertificationError`
names the entries.  An uncertified truth is never returned.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Mapping

import mpmath
import numpy as np

from verigrad.errors import CertificationError, DomainError, LimitError
from verigrad.engine.model import Model
from verigrad.spec import Dtype

__all__ = ["Truth", "certify", "DEFAULT_DIGITS", "format_mp"]

#: float64 has 15.95 significant digits; 24 digits grade it to ~1e-8 of an ulp.
DEFAULT_DIGITS = 24
_GUARD_BITS = 64
_ABS_EXTRA_DIGITS = 8


@dataclass(frozen=True, eq=False)
class Truth:
    """The certified loss and gradient at one dtype's point.

    Attributes
    ----------
    case : str
    dtype : Dtype
    point : dict of str to ndarray
        The point as represented in ``dtype`` (arrays of that dtype).
    loss : mpmath.mpf
    gradient : dict of str to ndarray
        Object arrays of ``mpf`` in each variable's shape.
    digits : int
        Requested (and achieved, for every entry) significant digits.
    absolute : dict of str to ndarray of bool
        Entries certified only absolutely: |g| < 10^-(digits+8) * scale.
    exact_zero : dict of str to ndarray of bool
        Entries that are exactly zero (both evaluations gave an exact 0).
    precision : int
        Working precision in bits of the reported values.
    scale : mpmath.mpf
        max |g| over all entries (0 if the gradient vanishes).
    seconds : float
    backend : str
        ``"arb"`` (digits proved by ball radii) or ``"mpmath"`` (two precisions agree).
    """

    case: str
    dtype: Dtype
    point: dict[str, np.ndarray]
    loss: object
    gradient: dict[str, np.ndarray]
    digits: int
    absolute: dict[str, np.ndarray]
    exact_zero: dict[str, np.ndarray]
    precision: int
    scale: object
    seconds: float
    backend: str = "mpmath"

    def as_float64(self) -> dict[str, np.ndarray]:
        """The truth rounded to float64 (for plots and summaries, never for grading)."""
        return {k: np.array([float(v) for v in g.ravel()], dtype=np.float64).reshape(g.shape)
                for k, g in self.gradient.items()}

    def decimal(self, value) -> str:
        return format_mp(value, self.digits)


def format_mp(value, digits: int) -> str:
    """A decimal string with ``digits`` significant digits; exact zeros print as ``"0"``."""
    if not value:
        return "0"
    with mpmath.workdps(digits + 10):
        return mpmath.nstr(value, digits, min_fixed=-5, max_fixed=digits + 1, strip_zeros=False)


def _scale(grads: list[np.ndarray]):
    m = mpmath.mpf(0)
    for g in grads:
        for v in g.ravel():
            a = abs(v)
            if a > m:
                m = a
    return m


def _classify(names: list[str], arrays: list[np.ndarray], verdict) -> tuple[list[str], dict, dict]:
    """Sort every entry into exact zero / certified / absolute-only / not certified.

    ``verdict(name, value_index_pair)`` returns "zero", "ok", "abs" or "bad"; the loss is ``"<loss>"``.
    Returns the failing entries and the absolute-only and exact-zero masks per variable.
    """
    bad: list[str] = []
    absolute: dict[str, np.ndarray] = {}
    exact_zero: dict[str, np.ndarray] = {}
    for name, arr in zip(names, arrays):
        abs_mask = np.zeros(arr.shape, dtype=bool)
        zero_mask = np.zeros(arr.shape, dtype=bool)
        for i in range(arr.size):
            kind = verdict(name, i)
            if kind == "zero":
                zero_mask.reshape(-1)[i] = True
            elif kind == "abs":
                abs_mask.reshape(-1)[i] = True
            elif kind == "bad":
                bad.append(f"{name}{list(np.unravel_index(i, arr.shape)) if arr.shape else ''}")
        if name != "<loss>":
            absolute[name], exact_zero[name] = abs_mask, zero_mask
    return bad, absolute, exact_zero


def certify(model: Model, point: Mapping[str, np.ndarray], dtype: Dtype, *,
            digits: int = DEFAULT_DIGITS, max_bits: int | None = None, backend: str = "auto") -> Truth:
    """Certified loss and gradient of ``model`` at ``point`` (already in ``dtype``).

    Parameters
    ----------
    model : Model
    point : mapping of str to ndarray
        Every symbol's value in ``dtype`` (x_p = fl_p(x)).
    dtype : Dtype
    digits : int
        Significant digits to certify for every entry (default 24).
    max_bits : int, optional
        Precision cap; default ``case.limits.max_precision_bits``.

    Returns
    -------
    Truth

    Raises
    ------
    DomainError
        The loss or its gradient is undefined at the point (names the sub-expression).
    CertificationError
        Fewer than ``digits`` digits agree at the precision cap.

    Notes
    -----
    Acceptance per entry, with a, b the values at w and 2w + 64 bits:
    ``|a - b| <= 10^-digits |b|`` or ``|a - b| <= 10^-(digits+8) * scale``.
    """
    if backend not in ("auto", "arb", "mpmath"):
        raise ValueError(f"backend={backend!r}; use 'auto', 'arb' or 'mpmath'")
    from verigrad.engine import arb as arbbackend

    if backend == "arb" or (backend == "auto" and arbbackend.available()):
        if not arbbackend.available():
            raise CertificationError("backend='arb' needs python-flint", hint="pip install python-flint")
        truth = _certify_arb(model, point, dtype, digits=digits, max_bits=max_bits)
        if truth is not None:
            return truth
        # a kink/tie/domain edge that balls cannot decide at the cap: the mpmath certificate decides it
    return _certify_mpmath(model, point, dtype, digits=digits, max_bits=max_bits)


def _certify_arb(model: Model, point: Mapping[str, np.ndarray], dtype: Dtype, *, digits: int,
                 max_bits: int | None) -> Truth | None:
    """Ball-arithmetic certificate; None when a decision stays undecided up to the precision cap.

    An entry is certified when its ball [m ± r] has r <= 10^-digits (|m| - r), is exactly 0, or
    (gradient entries) has r <= 10^-(digits+8) times a lower bound of the gradient's scale.
    """
    from verigrad.engine import arb as ab

    t0 = time.perf_counter()
    cap = max_bits or model.case.limits.max_precision_bits
    names = list(model.gradient)
    nodes = [model.loss] + [model.gradient[n] for n in names]
    where = f"{model.case.path}::{model.case.name}"
    prec = int(math.ceil(digits * math.log2(10))) + _GUARD_BITS
    if prec > cap:
        raise CertificationError(f"{where}: {digits} digits need at least {prec} bits, over the precision cap of "
                                 f"{cap} bits", hint="raise [limits] max_precision_bits, or request fewer digits")
    while True:
        try:
            vals = model.arb_eval(nodes, point, prec=prec)
        except ab.Undecided:
            if prec * 2 > cap:
                return None
            prec *= 2
            continue
        except DomainError as exc:
            raise DomainError(f"{where}: {exc.message}", **exc.fields) from None
        except LimitError as exc:
            raise LimitError(exc.reason, where=where, hint=exc.hint) from None
        with ab.arb_precision(prec + 64):
            tol = ab.arb(10) ** (-digits)
            scale_lo = ab.arb(0)
            for g in vals[1:]:
                for b in g.ravel():
                    lo = abs(b.mid()) - b.rad()
                    if lo > scale_lo:
                        scale_lo = lo
            abs_tol = scale_lo * ab.arb(10) ** (-(digits + _ABS_EXTRA_DIGITS))
            flat = [v.ravel() for v in vals]

            def verdict(name, i, _k={n: j for j, n in enumerate(["<loss>"] + names)}):
                b = flat[_k[name]][i]
                r = b.rad()
                if b.is_exact() and b == 0:
                    return "zero"
                if not b.is_finite():
                    return "bad"
                if r <= tol * (abs(b.mid()) - r):
                    return "ok"
                return "abs" if name != "<loss>" and r <= abs_tol else "bad"

            bad, absolute, exact_zero = _classify(["<loss>"] + names, vals, verdict)
        if not bad:
            break
        if prec * 2 > cap:
            raise CertificationError(
                f"{where}: fewer than {digits} digits of {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''} "
                f"are proved at {prec} bits (ball arithmetic; precision cap {cap} bits)",
                hint="raise [limits] max_precision_bits, or request fewer digits with --digits")
        prec *= 2
    conv = np.frompyfunc(ab.to_mpf, 1, 1)
    mp_vals = [np.asarray(conv(v), dtype=object) if v.ndim else np.array(ab.to_mpf(v[()]), dtype=object)
               for v in vals]
    with mpmath.workprec(prec + _GUARD_BITS):
        scale = _scale(mp_vals[1:])
    return Truth(case=model.case.name, dtype=dtype, point=dict(point), loss=mp_vals[0],
                 gradient=dict(zip(names, mp_vals[1:])), digits=digits, absolute=absolute, exact_zero=exact_zero,
                 precision=prec, scale=scale, seconds=time.perf_counter() - t0, backend="arb")


def _certify_mpmath(model: Model, point: Mapping[str, np.ndarray], dtype: Dtype, *, digits: int,
                    max_bits: int | None) -> Truth:
    """Two-precision certificate with mpmath (see the module docstring)."""
    t0 = time.perf_counter()
    cap = max_bits or model.case.limits.max_precision_bits
    names = list(model.gradient)
    nodes = [model.loss] + [model.gradient[n] for n in names]
    prec = int(math.ceil(digits * math.log2(10))) + _GUARD_BITS
    where = f"{model.case.path}::{model.case.name}"
    if 2 * prec + _GUARD_BITS > cap:
        raise CertificationError(
            f"{where}: {digits} digits need at least {2 * prec + _GUARD_BITS} bits, over the precision cap of "
            f"{cap} bits", hint="raise [limits] max_precision_bits, or request fewer digits with --digits")
    while True:
        hi_prec = 2 * prec + _GUARD_BITS
        try:
            lo = model.mp_eval(nodes, point, prec=prec)
            hi = model.mp_eval(nodes, point, prec=hi_prec)
        except DomainError as exc:
            raise DomainError(f"{where}: {exc.message}", **exc.fields) from None
        except LimitError as exc:
            raise LimitError(exc.reason, where=where, hint=exc.hint) from None
        with mpmath.workprec(hi_prec):
            scale = _scale(hi[1:])
            rel = mpmath.mpf(10) ** (-digits)
            abs_tol = scale * mpmath.mpf(10) ** (-(digits + _ABS_EXTRA_DIGITS))
            lo_flat, hi_flat = [v.ravel() for v in lo], [v.ravel() for v in hi]

            def verdict(name, i, _k={n: j for j, n in enumerate(["<loss>"] + names)}):
                x, y = lo_flat[_k[name]][i], hi_flat[_k[name]][i]
                if not x and not y:
                    return "zero"
                d = abs(x - y)
                if d <= rel * abs(y):
                    return "ok"
                return "abs" if name != "<loss>" and d <= abs_tol else "bad"

            bad, absolute, exact_zero = _classify(["<loss>"] + names, hi, verdict)
        if not bad:
            break
        if 2 * (2 * prec) + _GUARD_BITS > cap:
            raise CertificationError(
                f"{where}: fewer than {digits} digits of {', '.join(bad[:5])}"
                f"{' ...' if len(bad) > 5 else ''} agree between {prec} and {hi_prec} bits "
                f"(precision cap {cap} bits)",
                hint="raise [limits] max_precision_bits, or request fewer digits with --digits")
        prec *= 2
    return Truth(case=model.case.name, dtype=dtype, point=dict(point), loss=hi[0],
                 gradient=dict(zip(names, hi[1:])), digits=digits, absolute=absolute, exact_zero=exact_zero,
                 precision=hi_prec, scale=scale, seconds=time.perf_counter() - t0, backend="mpmath")
