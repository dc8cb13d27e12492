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

import functools
import math
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Mapping

import mpmath
import numpy as np

from verigrad.errors import CertificationError, DomainError, LimitError
from verigrad.engine.budget import ball_bytes, check, check_memory, time_limit
from verigrad.engine.fardecimal import EXACT_DECIMAL_BITS, far_decimal
from verigrad.engine.model import Model
from verigrad.spec import Dtype, is_float_dtype

__all__ = ["Truth", "certify", "DEFAULT_DIGITS", "format_mp"]

_MEMORY_HINT = ("make the case smaller (fewer or smaller symbols; [limits] max_intermediate_elements bounds each "
                "array of the graph), lower [limits] max_precision_bits, or ask for fewer digits")
#: float64 has 15.95 significant digits; 24 digits grade it to ~1e-8 of an ulp.
DEFAULT_DIGITS = 24
_GUARD_BITS = 64
_ABS_EXTRA_DIGITS = 8


@dataclass(frozen=True, eq=False, init=False)
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
        Object arrays of ``mpf`` in each variable's shape.  For the ``"fast"`` backend they are
        built on first access (exactly ``gradient_hi + gradient_lo``), so a large gradient
        costs no Python object per entry unless it is asked for.
    gradient_hi, gradient_lo : dict of str to ndarray of float64
        The gradient as a double-double ``hi + lo`` per entry (``hi`` is the float64 nearest to
        the reported value), in each variable's shape.
    gradient_rad : dict of str to ndarray of float64
        For ``"fast"`` and ``"arb"``: a proved bound of ``|exact gradient - (hi + lo)|``.  For
        ``"mpmath"``: a bound of ``|reported mpf value - (hi + lo)|`` plus the difference between
        the two precisions of the certificate (its evidence, not a proof).
    digits : int
        Requested (and achieved, for every entry) significant digits.
    absolute : dict of str to ndarray of bool
        Entries certified only absolutely: |g| < 10^-(digits+8) * scale.
    exact_zero : dict of str to ndarray of bool
        Entries that are exactly zero (both evaluations gave an exact 0).
    precision : int
        Working precision in bits of the reported values.  For ``"fast"`` (double-double
        midpoints certified to ``digits``) it is the precision the Arb certificate would
        start at, so that later exact computations with the truth use the same precision.
    scale : mpmath.mpf
        max |g| over all entries (0 if the gradient vanishes).
    seconds : float
    backend : str
        ``"fast"`` (vectorised double-double balls, digits proved by the radii), ``"arb"``
        (digits proved by Arb ball radii) or ``"mpmath"`` (two precisions agree).
    """

    case: str
    dtype: Dtype
    point: dict[str, np.ndarray]
    loss: object
    digits: int
    absolute: dict[str, np.ndarray]
    exact_zero: dict[str, np.ndarray]
    precision: int
    scale: object
    seconds: float
    backend: str

    def __init__(self, case: str, dtype: Dtype, point: dict[str, np.ndarray], loss: object,
                 gradient: dict[str, np.ndarray] | None = None, digits: int = 24,
                 absolute: dict[str, np.ndarray] | None = None, exact_zero: dict[str, np.ndarray] | None = None,
                 precision: int = 0, scale: object = None, seconds: float = 0.0, backend: str = "mpmath", *,
                 gradient_hi: dict[str, np.ndarray] | None = None, gradient_lo: dict[str, np.ndarray] | None = None,
                 gradient_rad: dict[str, np.ndarray] | None = None, dd_parts=None) -> None:
        put = object.__setattr__
        for k, v in (("case", case), ("dtype", dtype), ("point", point), ("loss", loss), ("digits", digits),
                     ("absolute", absolute if absolute is not None else {}),
                     ("exact_zero", exact_zero if exact_zero is not None else {}),
                     ("precision", precision), ("scale", scale), ("seconds", seconds), ("backend", backend)):
            put(self, k, v)
        if gradient is None and gradient_hi is None:
            raise TypeError("Truth needs gradient or gradient_hi/gradient_lo/gradient_rad")
        if gradient is not None:
            put(self, "gradient", gradient)  # the cached_property's slot in __dict__
        if gradient_hi is not None:  # the double-double parts given: the cached_properties' slots
            put(self, "gradient_hi", gradient_hi)
            put(self, "gradient_lo", gradient_lo)
            put(self, "gradient_rad", gradient_rad)
        else:  # computed from the mpf gradient on first access (an exact conversion per entry)
            put(self, "_dd_parts", dd_parts if dd_parts is not None else (lambda: _dd_of_mpf(gradient)))

    @functools.cached_property
    def _dd(self) -> tuple[dict, dict, dict]:
        return self.__dict__["_dd_parts"]()

    def __getstate__(self) -> dict:
        # a pickled truth (sent back from a --jobs worker) carries the float64 parts, not the closure
        state = dict(self.__dict__)
        if "_dd_parts" in state:
            state.update(gradient_hi=self.gradient_hi, gradient_lo=self.gradient_lo, gradient_rad=self.gradient_rad)
            state.pop("_dd_parts")
            state.pop("_dd", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    @functools.cached_property
    def gradient_hi(self) -> dict[str, np.ndarray]:
        """float64 leading words of the certified midpoints (see the class Attributes)."""
        return self._dd[0]

    @functools.cached_property
    def gradient_lo(self) -> dict[str, np.ndarray]:
        """float64 trailing words: ``gradient_hi + gradient_lo`` is the midpoint to about 2^-106."""
        return self._dd[1]

    @functools.cached_property
    def gradient_rad(self) -> dict[str, np.ndarray]:
        """float64 radii (rounded up) containing the exact value around ``gradient_hi + gradient_lo``."""
        return self._dd[2]

    @functools.cached_property
    def gradient(self) -> dict[str, np.ndarray]:
        """Object arrays of ``mpf``: exactly ``gradient_hi + gradient_lo`` (built on first access)."""
        return {k: _mpf_of_dd(self.gradient_hi[k], self.gradient_lo[k]) for k in self.gradient_hi}

    def entry(self, name: str, index: tuple):
        """One gradient entry as an exact mpf, without building the whole :attr:`gradient`."""
        if "gradient" in self.__dict__:
            return self.__dict__["gradient"][name][index]
        return _mpf_exact(float(self.gradient_hi[name][index]), float(self.gradient_lo[name][index]))

    def as_float64(self) -> dict[str, np.ndarray]:
        """The truth rounded to float64 (for plots and summaries, never for grading)."""
        return {k: np.array(h, dtype=np.float64, copy=True) for k, h in self.gradient_hi.items()}

    def decimal(self, value) -> str:
        return format_mp(value, self.digits)

    def decimals(self, name: str) -> np.ndarray:
        """Every entry of variable ``name`` as :meth:`decimal` prints it (object array of str).

        Without building mpmath objects when the gradient is held as double-double
        (:func:`format_dd`, exact and about 20x faster); otherwise through :func:`format_mp`.
        """
        if "gradient" not in self.__dict__:
            return format_dd(self.gradient_hi[name], self.gradient_lo[name], self.digits)
        g = self.__dict__["gradient"][name]
        out = np.empty(g.shape, dtype=object)
        flat = out.reshape(-1)
        for i, v in enumerate(g.ravel()):
            flat[i] = format_mp(v, self.digits)
        return out


def _mpf_exact(h: float, l: float):
    """``h + l`` as an exact mpf."""
    return mpmath.fadd(mpmath.mpf(h), mpmath.mpf(l), exact=True)


def _mpf_of_dd(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    out = np.empty(hi.shape, dtype=object)
    flat = out.reshape(-1)
    for i, (h, l) in enumerate(zip(hi.ravel().tolist(), lo.ravel().tolist())):
        flat[i] = _mpf_exact(h, l)
    return out


def _float_up(q: Fraction) -> float:
    """The smallest float64 >= q (inf beyond the float range)."""
    try:
        f = float(q)
    except OverflowError:
        return math.inf
    if Fraction(f) < q:
        f = float(np.nextafter(f, np.inf))
    return f


def _man_exp_fraction(man, exp) -> Fraction:
    man, exp = int(man), int(exp)
    return Fraction(man) * (Fraction(2) ** exp) if exp >= 0 else Fraction(man, 2 ** (-exp))


def _float_up_man_exp(man, exp) -> float:
    """The smallest float64 >= ``man * 2^exp`` (``man >= 0``), without forming a huge rational."""
    man, exp = int(man), int(exp)
    if not man:
        return 0.0
    e = exp + man.bit_length()
    if e > _FAR_BITS:
        return math.inf
    if e < -_FAR_BITS:
        return 5e-324
    return _float_up(_man_exp_fraction(man, exp))


def _abs_diff_up(x, y) -> float:
    """The smallest float64 >= ``|x - y|`` for finite mpf ``x``, ``y``."""
    if all(not v or abs(_binary_magnitude(v)) <= _FAR_BITS for v in (x, y)):
        return _float_up(abs(_mpf_fraction(x) - _mpf_fraction(y)))
    hi = max(_binary_magnitude(v) for v in (x, y) if v)
    if hi > _FAR_BITS:
        return math.inf
    # both far below float64's range (or one zero): |x - y| <= 2 max(|x|, |y|) < 2^(hi+1)
    return _float_up_man_exp(1, hi + 1)


def _mpf_fraction(v) -> Fraction:
    """The exact rational value of an mpf (its sign too: mpmath's ``man_exp`` drops the sign)."""
    if not v:
        return Fraction(0)
    # v._mpf_ itself: mpmath.mpf(v) would round v to the working precision (53 bits by default)
    sign, man, exp, _ = (v if isinstance(v, mpmath.mpf) else mpmath.mpf(v))._mpf_
    q = _man_exp_fraction(int(man), int(exp))
    return -q if sign else q


def _binary_magnitude(v) -> int:
    """``e`` with ``2^(e-1) <= |v| < 2^e`` for a finite nonzero mpf (from its bits, no arithmetic)."""
    _, man, exp, bc = v._mpf_
    return int(exp) + int(bc)


#: beyond this binary magnitude (either way) a value is far outside float64 (2^1024, 2^-1074):
#: its float parts are taken without the exact rational, which would have 2^|e| bits
_FAR_BITS = 1200


def _dd_parts_of_mpf(v) -> tuple[float, float, float]:
    """(hi, lo, |v - hi - lo| rounded up) of an mpf (exact rational arithmetic)."""
    if not v:
        return 0.0, 0.0, 0.0
    if isinstance(v, mpmath.mpf) and mpmath.isfinite(v) and abs(_binary_magnitude(v)) > _FAR_BITS:
        if _binary_magnitude(v) > 0:  # beyond float64: what the overflow branch below gives
            return (math.inf if v > 0 else -math.inf), 0.0, math.inf
        return 0.0, 0.0, 5e-324  # below every subnormal: the error |v| rounded up
    q = _mpf_fraction(v)
    try:
        hi = float(q)
        lo = float(q - Fraction(hi))
    except OverflowError:
        return (math.inf if q > 0 else -math.inf), 0.0, math.inf
    rest = abs(q - Fraction(hi) - Fraction(lo))
    return hi, lo, (_float_up(rest) if rest else 0.0)


def _dd_of_mpf(gradient: dict[str, np.ndarray], extra: dict[str, np.ndarray] | None = None):
    """Double-double parts of object arrays of mpf (``extra``: float radii to add, rounded up)."""
    his, los, rads = {}, {}, {}
    for k, g in gradient.items():
        g = np.asarray(g, dtype=object)
        h = np.empty(g.shape)
        l = np.empty(g.shape)
        r = np.empty(g.shape)
        for i, v in enumerate(g.ravel()):
            h.reshape(-1)[i], l.reshape(-1)[i], r.reshape(-1)[i] = _dd_parts_of_mpf(v)
        if extra is not None and k in extra:
            r = (r + extra[k]) * (1 + 2.0 ** -50)
        his[k], los[k], rads[k] = h, l, r
    return his, los, rads


def format_mp(value, digits: int) -> str:
    """A decimal string with ``digits`` significant digits, correctly rounded; exact zeros print as ``"0"``.

    The exact binary value is converted exactly and rounded once, half to even
    (:func:`_decimal_text`; ``mpmath.nstr`` rounds twice, through ``digits + 10`` digits,
    so it could misround a value within 1e-(digits+10) of a tie). A complex or non-finite
    value falls back to ``mpmath.nstr``.
    """
    if not value:
        return "0"
    if isinstance(value, mpmath.mpf) and mpmath.isfinite(value):
        sign, man, exp, _ = value._mpf_
        if int(man).bit_length() + 3 * abs(int(exp)) > EXACT_DECIMAL_BITS:
            return _decimal_text(bool(sign), *far_decimal(int(man), int(exp), digits), digits)
        n, k = _binary_to_decimal(int(man), int(exp))
        return _decimal_text(bool(sign), n, k, digits)
    with mpmath.workdps(digits + 10):
        return mpmath.nstr(value, digits, min_fixed=-5, max_fixed=digits + 1, strip_zeros=False)


def _decimal_text(negative: bool, n: int, k: int, digits: int) -> str:
    """``(-1)^negative * n * 10^k`` (``n`` a positive integer) rounded once to ``digits`` significant digits.

    Correct rounding, half to even, from the exact integer; laid out as ``mpmath.nstr`` lays
    numbers out with ``min_fixed=-5, max_fixed=digits + 1``: fixed notation for decimal
    exponents -4 to ``digits`` (a trailing point when no fraction digit is left), otherwise
    ``d.ddde±x``.
    """
    text = str(n)
    e10 = len(text) - 1 + k  # decimal exponent of the leading digit
    if len(text) > digits:
        head, rest = int(text[:digits]), text[digits:]
        first, tail = rest[0], rest[1:].strip("0")
        if first > "5" or (first == "5" and (tail or head % 2)):
            head += 1
            if len(str(head)) > digits:  # 9.99 -> 10.0
                head //= 10
                e10 += 1
        text = str(head)
    else:
        text = text + "0" * (digits - len(text))
    sign = "-" if negative else ""
    if -5 < e10 < digits + 1:
        if e10 >= 0:
            whole = (text + "0" * (e10 + 1))[:e10 + 1]
            return f"{sign}{whole}.{text[e10 + 1:]}"
        return f"{sign}0.{'0' * (-e10 - 1)}{text}"
    return f"{sign}{text[0]}.{text[1:]}e{'+' if e10 > 0 else '-'}{abs(e10)}"


def _binary_to_decimal(q_num: int, q_exp: int) -> tuple[int, int]:
    """``q_num * 2^q_exp`` as ``(n, k)`` with value ``n * 10^k`` exactly (``q_num > 0``)."""
    if q_exp >= 0:
        return q_num << q_exp, 0
    return q_num * 5 ** (-q_exp), q_exp


def format_dd(hi: np.ndarray, lo: np.ndarray, digits: int) -> np.ndarray:
    """``hi + lo`` (exactly) as decimal strings, as :func:`format_mp` prints them.

    Parameters
    ----------
    hi, lo : ndarray of float64, same shape
    digits : int
        Significant digits.

    Returns
    -------
    ndarray of object (str), the shape of ``hi``

    Notes
    -----
    ``hi + lo`` is formed exactly as an integer times a power of two (each float is one),
    converted exactly to an integer times a power of ten, and rounded once, half to even
    (:func:`_decimal_text`). No mpmath object is built: about 5 us an entry.
    """
    out = np.empty(np.shape(hi), dtype=object)
    flat = out.reshape(-1)
    his, los = np.asarray(hi, dtype=np.float64).ravel().tolist(), np.asarray(lo, dtype=np.float64).ravel().tolist()
    for i, (h, l) in enumerate(zip(his, los)):
        if h == 0.0 and l == 0.0:
            flat[i] = "0"
            continue
        m1, e1 = math.frexp(h)
        m2, e2 = math.frexp(l)
        a, b = int(m1 * 2**53), int(m2 * 2**53)  # exact: |m| in [0.5, 1) has 53 bits
        e1, e2 = e1 - 53, e2 - 53
        if not b:
            num, exp = a, e1
        elif not a:
            num, exp = b, e2
        else:
            exp = min(e1, e2)
            num = (a << (e1 - exp)) + (b << (e2 - exp))
        negative = num < 0
        n, k = _binary_to_decimal(abs(num), exp)
        flat[i] = _decimal_text(negative, n, k, digits) if n else "0"
    return out


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
                bad.append(f"{name}{[int(j) for j in np.unravel_index(i, arr.shape)] if arr.shape else ''}")
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
    ``backend="auto"`` tries, in order: the vectorised double-double ball engine
    (:mod:`verigrad.engine.fastball`; for graphs of at least :data:`FAST_MIN_ENTRIES`
    entries and at most 28 digits), Arb balls at doubling precision, then two mpmath
    precisions. Each stops at the first that certifies every entry; none returns an
    uncertified truth. Ball acceptance per entry: radius ``r <= 10^-digits (|m| - r)``,
    an exact zero, or ``r <= 10^-(digits+8)`` times a lower bound of the gradient's scale.
    mpmath acceptance, with a, b the values at w and 2w + 64 bits:
    ``|a - b| <= 10^-digits |b|`` or ``|a - b| <= 10^-(digits+8) * scale``.
    """
    if backend not in ("auto", "fast", "arb", "mpmath"):
        raise ValueError(f"backend={backend!r}; use 'auto', 'fast', 'arb' or 'mpmath'")
    # stopped at [limits] certify_seconds while it runs (a 3000 x 3000 graph, a precision that keeps doubling)
    with time_limit(getattr(model.case.limits, "certify_seconds", 0.0), limit="certify_seconds",
                    what=f"certification ({dtype.value}, {digits} digits)",
                    where=f"{model.case.path}::{model.case.name}"):
        return _certify(model, point, dtype, digits=digits, max_bits=max_bits, backend=backend)


def _certify(model: Model, point: Mapping[str, np.ndarray], dtype: Dtype, *, digits: int, max_bits: int | None,
             backend: str) -> Truth:
    from verigrad.engine import arb as arbbackend

    if backend == "fast" or (backend == "auto" and graph_entries(model) >= FAST_MIN_ENTRIES):
        if not arbbackend.available():
            if backend == "fast":
                raise CertificationError("backend='fast' needs python-flint", hint="pip install python-flint")
        else:
            reason: list[str] = []
            truth = _certify_fast(model, point, dtype, digits=digits, max_bits=max_bits, reason=reason)
            if truth is not None:
                return truth
            if backend == "fast":
                where = f"{model.case.path}::{model.case.name}"
                raise CertificationError(f"{where}: the fast engine cannot certify {digits} digits here "
                                         f"({reason[0] if reason else 'no reason given'})",
                                         hint="use backend='auto' to fall back to Arb")
    if backend == "arb" or (backend == "auto" and arbbackend.available()):
        if not arbbackend.available():
            raise CertificationError("backend='arb' needs python-flint", hint="pip install python-flint")
        truth = _certify_arb(model, point, dtype, digits=digits, max_bits=max_bits)
        if truth is not None:
            return truth
        # a kink/tie/domain edge that balls cannot decide at the cap: the mpmath certificate decides it
    return _certify_mpmath(model, point, dtype, digits=digits, max_bits=max_bits)


#: ``backend="auto"`` tries the fast engine from this many array entries in the graph (summed over its
#: nodes): below it, a few dozen numpy calls per node cost more than one Arb ball per entry (the 47-parameter
#: 3-layer net: 22 ms fast against 4 ms in Arb; softmax with 9,600 entries: 14 ms against 43 ms)
FAST_MIN_ENTRIES = 2_000


def graph_entries(model: Model) -> int:
    """Entries of every node of the loss and gradient graphs, summed (cached on the model)."""
    key = ("graph_entries",)
    n = model._mp_cache.get(key)
    if n is None:
        from verigrad.expr.graph import topological

        n = model._mp_cache[key] = int(sum(node.size for node in topological([model.loss, *model.gradient.values()])))
    return n


#: the fast engine's midpoints carry about 106 bits; beyond this many digits it is not tried
_FAST_MAX_DIGITS = 28


@functools.lru_cache(maxsize=64)  # called with 10^-digits on every certificate: a few Fraction operations
def _lower_float(q: Fraction) -> float:
    """The largest float64 <= q (q > 0, in the normal range)."""
    f = float(q)
    if Fraction(f) > q:
        f = float(np.nextafter(f, 0.0))
    return f


def _certify_fast(model: Model, point: Mapping[str, np.ndarray], dtype: Dtype, *, digits: int,
                  max_bits: int | None, reason: list[str]) -> Truth | None:
    """Certificate from the vectorised double-double ball engine; None when it cannot give one.

    The acceptance rule is the one of :func:`_certify_arb`, evaluated on float64 arrays with
    every comparison rounded against acceptance: an entry ``[m ± r]`` (``m = hi + lo``) is

    * an exact zero when ``hi = 0`` and ``r = 0``;
    * certified when ``r <= T (|m| - r)`` with ``T <= 10^-digits``: the right side is bounded
      below by ``fl(T L) (1 - 2^-50)`` with ``L = lower_pos(|hi|, r) <= |hi|(1 - u) - r <= |m| - r``
      (and required to be at least ``2^-1000`` so that no underflow is involved), or ``r = 0``
      with ``L > 0``;
    * certified absolutely (gradient entries) when ``r <= fl(S T') (1 - 2^-50)`` with
      ``S = max_i max(L_i, 0) <= max |g|`` and ``T' <= 10^-(digits+8)``.

    Any entry that is none of these, a :class:`~verigrad.engine.fastball.FastPathUnavailable`,
    an :class:`~verigrad.engine.arb.Undecided` or a :class:`~verigrad.errors.LimitError` returns
    None (the caller falls back to Arb, unchanged).  A :class:`~verigrad.errors.DomainError`
    (the point is certainly outside the domain) is raised as the Arb path raises it.
    """
    from verigrad.engine import arb as ab
    from verigrad.engine import dd
    from verigrad.engine.fastball import FastPathUnavailable

    t0 = time.perf_counter()
    cap = max_bits or model.case.limits.max_precision_bits
    prec = int(math.ceil(digits * math.log2(10))) + _GUARD_BITS
    if prec > cap or digits > _FAST_MAX_DIGITS:
        reason.append(f"{digits} digits are beyond double-double" if digits > _FAST_MAX_DIGITS
                      else "the precision cap is below the required precision")
        return None
    if any(not is_float_dtype(np.asarray(point[n]).dtype) for n in model.leaves):
        reason.append("a non-real point")
        return None
    names = list(model.gradient)
    nodes = [model.loss] + [model.gradient[n] for n in names]
    where = f"{model.case.path}::{model.case.name}"
    try:
        vals = model.fast_eval(nodes, point)
    except (FastPathUnavailable, ab.Undecided, LimitError) as exc:
        reason.append(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        return None
    except DomainError as exc:
        raise DomainError(f"{where}: {exc.message}", **exc.fields) from None

    tol = _lower_float(Fraction(1, 10 ** digits))
    tol_abs = _lower_float(Fraction(1, 10 ** (digits + _ABS_EXTRA_DIGITS)))
    shrink = 1.0 - 2.0 ** -50
    full = [(np.broadcast_to(v.hi, v.shape), np.broadcast_to(v.lo, v.shape), np.broadcast_to(v.rad, v.shape))
            for v in vals]
    lows = [dd.lower_pos(np.abs(h), r) for h, _, r in full]
    scale_lo = max((float(np.max(L, initial=0.0)) for L in lows[1:]), default=0.0)
    abs_bound = scale_lo * tol_abs * shrink
    if abs_bound < 2.0 ** -1000:
        abs_bound = 0.0
    absolute: dict[str, np.ndarray] = {}
    exact_zero: dict[str, np.ndarray] = {}
    for j, ((h, _, r), L) in enumerate(zip(full, lows)):
        rhs = (tol * L) * shrink
        if h.size and np.min(L) > 0 and np.min(rhs) >= 2.0 ** -1000 and not (r > rhs).any():
            # every entry certified relatively (L > 0 also rules out exact zeros): skip the masks
            if j:
                absolute[names[j - 1]] = np.zeros(h.shape, dtype=bool)
                exact_zero[names[j - 1]] = np.zeros(h.shape, dtype=bool)
            continue
        zero = (h == 0) & (r == 0)
        ok = (L > 0) & ((r == 0) | ((r <= rhs) & (rhs >= 2.0 ** -1000)))
        absok = ~ok & ~zero & (r <= abs_bound) if j else np.zeros(h.shape, dtype=bool)
        bad = ~(zero | ok | absok)
        if bad.any():
            name = "<loss>" if j == 0 else names[j - 1]
            idx = np.unravel_index(int(np.flatnonzero(bad.ravel())[0]), h.shape) if h.shape else ()
            reason.append(f"{int(bad.sum())} entries of {name} (first {list(map(int, idx))}) not proved to "
                          f"{digits} digits")
            return None
        if j:
            absolute[names[j - 1]] = np.array(absok, dtype=bool)
            exact_zero[names[j - 1]] = np.array(zero, dtype=bool)
    his = {n: np.array(full[j + 1][0], dtype=np.float64) for j, n in enumerate(names)}
    los = {n: np.array(full[j + 1][1], dtype=np.float64) for j, n in enumerate(names)}
    rads = {n: np.array(full[j + 1][2], dtype=np.float64) for j, n in enumerate(names)}
    loss = np.empty((), dtype=object)  # a 0-d object array, as the other backends give
    loss[()] = _mpf_exact(float(full[0][0]), float(full[0][1]))
    scale = mpmath.mpf(0)
    for n in names:
        h, l = his[n], los[n]
        if h.size:
            a = np.abs(h)
            top = a.max()
            if top > 0:
                for i in np.flatnonzero(a.ravel() == top):
                    v = abs(_mpf_exact(float(h.ravel()[i]), float(l.ravel()[i])))
                    if v > scale:
                        scale = v
    return Truth(case=model.case.name, dtype=dtype, point=dict(point), loss=loss, digits=digits,
                 absolute=absolute, exact_zero=exact_zero, precision=prec, scale=scale,
                 seconds=time.perf_counter() - t0, backend="fast",
                 gradient_hi=his, gradient_lo=los, gradient_rad=rads)


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
        check()  # one precision step of a graph can be long: the time limit is looked at before each
        # every node's balls stay alive during the evaluation: refuse what cannot fit, before it starts
        check_memory(graph_entries(model), ball_bytes(prec), what=f"ball arithmetic at {prec} bits", where=where,
                     hint=_MEMORY_HINT)
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
    grad = dict(zip(names, mp_vals[1:]))
    balls = dict(zip(names, vals[1:]))

    def dd_parts():  # on first use of the float64 form: one exact conversion per entry
        radii = {n: np.array([_float_up_man_exp(*b.rad().man_exp()) for b in v.ravel()],
                             dtype=np.float64).reshape(v.shape) for n, v in balls.items()}
        return _dd_of_mpf(grad, radii)

    return Truth(case=model.case.name, dtype=dtype, point=dict(point), loss=mp_vals[0],
                 gradient=grad, digits=digits, absolute=absolute, exact_zero=exact_zero,
                 precision=prec, scale=scale, seconds=time.perf_counter() - t0, backend="arb",
                 dd_parts=dd_parts)


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
        check()
        hi_prec = 2 * prec + _GUARD_BITS
        check_memory(graph_entries(model), ball_bytes(prec) + ball_bytes(hi_prec),
                     what=f"evaluation at {prec} and {hi_prec} bits", where=where, hint=_MEMORY_HINT)
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
    grad = dict(zip(names, hi[1:]))
    pairs = list(zip(names, lo[1:], hi[1:]))

    def dd_parts():  # on first use of the float64 form (exact rationals: no working precision involved)
        diffs = {n: np.array([_abs_diff_up(x, y) if x != y else 0.0
                              for x, y in zip(a.ravel(), b.ravel())], dtype=np.float64).reshape(b.shape)
                 for n, a, b in pairs}
        return _dd_of_mpf(grad, diffs)

    return Truth(case=model.case.name, dtype=dtype, point=dict(point), loss=hi[0],
                 gradient=grad, digits=digits, absolute=absolute, exact_zero=exact_zero,
                 precision=hi_prec, scale=scale, seconds=time.perf_counter() - t0, backend="mpmath",
                 dd_parts=dd_parts)
