"""Finite-difference schemes as immutable values with exact coefficients.

A *linear* scheme for the first derivative is a set of offsets ``c_k`` and
weights ``w_k`` (exact :class:`fractions.Fraction`), and estimates

.. math:: D(h) = \\frac{1}{h} \\sum_k w_k f(x + c_k h) .

Expanding each ``f(x + c_k h)`` in a Taylor series gives the exact truncation
series in terms of the *moments* ``m_j = sum_k w_k c_k**j``::

    D(h) - f'(x) = sum_{j >= 2} f^(j)(x) / j! * m_j * h^(j-1)

(a consistent first-derivative scheme has ``m_0 = 0`` and ``m_1 = 1``). The
first ``j >= 2`` with ``m_j != 0`` gives the order ``p = j - 1`` and the leading
coefficient ``C = m_j / j!``, so that ``T(h) = C f^(p+1)(x) h^p + O(h^(p+1))``.
Orders and leading coefficients are always computed from the moments, never
typed in.

The *complex step* ``Im f(x + i h) / h`` is not linear in real function values;
it is represented with ``kind=SchemeKind.COMPLEX_STEP``, no offsets, and the
formal moments ``m_j = Im(i**j)`` which make the same truncation formula hold:
``D(h) - f'(x) = sum_{m >= 1} (-1)**m f^(2m+1)(x) h^(2m) / (2m+1)!``.

The module also provides the step helpers used by studies and candidates:
:func:`nominal_steps`, :func:`representable_step`, :func:`default_step` and
:func:`default_step_grid`.

This module depends on the standard library and numpy only.
"""

from __future__ import annotations

import difflib
import enum
import functools
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

__all__ = [
    "SCHEME_NAMES",
    "Scheme",
    "SchemeKind",
    "StepMode",
    "TruncationTerm",
    "apply_scheme",
    "default_step",
    "default_step_grid",
    "fornberg_weights",
    "get_scheme",
    "nominal_steps",
    "representable_step",
    "richardson_scheme",
    "scheme_from_offsets",
    "scheme_from_weights",
]


class SchemeKind(enum.Enum):
    """How a scheme combines function values.

    ``LINEAR`` schemes are ``sum_k w_k f(x + c_k h) / h`` with real nodes;
    ``COMPLEX_STEP`` is ``Im f(x + i h) / h`` and needs ``f`` analytic.
    """

    LINEAR = "linear"
    COMPLEX_STEP = "complex-step"


class StepMode(enum.Enum):
    """How a nominal step ``h`` becomes a per-coordinate step ``h_i``.

    ``ABSOLUTE``: ``h_i = h``. ``RELATIVE``: ``h_i = h * max(1, |x_i|)``.
    """

    ABSOLUTE = "absolute"
    RELATIVE = "relative"


class TruncationTerm(NamedTuple):
    """One term ``coefficient * f^(derivative)(x) * h^(derivative - 1)``.

    Attributes
    ----------
    derivative : int
        Order ``j`` of the derivative of ``f`` in the term.
    coefficient : Fraction
        Exact coefficient ``m_j / j!`` of ``f^(j)(x) h^(j-1)``.
    """

    derivative: int
    coefficient: Fraction


# --------------------------------------------------------------------------
# Exact arithmetic helpers
# --------------------------------------------------------------------------


def _as_fraction(value: object, *, what: str) -> Fraction:
    """Convert ``value`` to a Fraction exactly, naming ``what`` on failure."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be a rational number, got bool {value!r}")
    if isinstance(value, Fraction):
        return value
    if isinstance(value, numbers.Rational):
        return Fraction(int(value.numerator), int(value.denominator))
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(float(value)):
            raise ValueError(f"{what} must be finite, got {value!r}")
        # Binary floats convert exactly; 0.5 -> 1/2, 0.1 -> 3602879701896397/2**55.
        return Fraction(float(value))
    if isinstance(value, (int, np.integer)):
        return Fraction(int(value))
    if isinstance(value, str):
        try:
            return Fraction(value)
        except ValueError:
            raise ValueError(
                f"{what} must be a rational number such as '1/2' or '-3', got {value!r}"
            ) from None
    raise TypeError(
        f"{what} must be an int, Fraction, float or string such as '1/2', "
        f"got {type(value).__name__} {value!r}"
    )


def _fmt(q: Fraction) -> str:
    """Format a Fraction compactly: ``-2``, ``1/12``."""
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"


def _formal_complex_moment(j: int) -> Fraction:
    """``Im(i**j)``: the formal moments of the complex step."""
    return Fraction((0, 1, 0, -1)[j % 4])


def _linear_moment(offsets: tuple[Fraction, ...], weights: tuple[Fraction, ...], j: int) -> Fraction:
    return sum((w * c**j for c, w in zip(offsets, weights)), Fraction(0))


def _leading_term(moment: Callable[[int], Fraction], max_j: int) -> tuple[int, Fraction, int]:
    """First ``j >= 2`` with ``moment(j) != 0``: return ``(p, C, j)``."""
    for j in range(2, max_j + 1):
        m = moment(j)
        if m != 0:
            return j - 1, m / math.factorial(j), j
    # Unreachable for a finite stencil with distinct offsets and nonzero weights:
    # moments 2..n+1 vanishing would force every weight at a nonzero offset to 0.
    raise ValueError(f"all moments 2..{max_j} vanish; the stencil is degenerate")


# --------------------------------------------------------------------------
# Fornberg's algorithm
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _fornberg_cached(offsets: tuple[Fraction, ...], derivative: int) -> tuple[Fraction, ...]:
    # Fornberg (1988), in the compact form of Fornberg (1998), SIAM Rev. 40, 685-691.
    # c[j][k]: weight of node j in the formula for the k-th derivative at 0,
    # using the nodes 0..i seen so far.
    n = len(offsets)
    m = derivative
    z = Fraction(0)
    c = [[Fraction(0)] * (m + 1) for _ in range(n)]
    c[0][0] = Fraction(1)
    c1 = Fraction(1)
    c4 = offsets[0] - z
    for i in range(1, n):
        mn = min(i, m)
        c2 = Fraction(1)
        c5 = c4
        c4 = offsets[i] - z
        for j in range(i):
            c3 = offsets[i] - offsets[j]
            c2 *= c3
            if j == i - 1:
                for k in range(mn, 0, -1):
                    c[i][k] = c1 * (k * c[i - 1][k - 1] - c5 * c[i - 1][k]) / c2
                c[i][0] = -c1 * c5 * c[i - 1][0] / c2
            for k in range(mn, 0, -1):
                c[j][k] = (c4 * c[j][k] - k * c[j][k - 1]) / c3
            c[j][0] = c4 * c[j][0] / c3
        c1 = c2
    return tuple(row[m] for row in c)


def _validate_offsets(offsets: Iterable[object], *, minimum: int) -> tuple[Fraction, ...]:
    if isinstance(offsets, (str, bytes)):
        raise TypeError(f"offsets must be a sequence of rationals, got the string {offsets!r}")
    try:
        items = list(offsets)
    except TypeError:
        raise TypeError(
            f"offsets must be a sequence of rationals, got {type(offsets).__name__} {offsets!r}"
        ) from None
    fr = tuple(_as_fraction(v, what=f"offsets[{i}]") for i, v in enumerate(items))
    if len(set(fr)) != len(fr):
        dupes = sorted({_fmt(q) for q in fr if fr.count(q) > 1})
        raise ValueError(f"offsets must be distinct, got repeated offset(s) {', '.join(dupes)}")
    if len(fr) < minimum:
        raise ValueError(
            f"need at least {minimum} distinct offsets for this derivative, got {len(fr)}: "
            f"[{', '.join(_fmt(q) for q in fr)}]"
        )
    return fr


def fornberg_weights(offsets: Iterable[object], derivative: int = 1) -> tuple[Fraction, ...]:
    """Exact finite-difference weights for a derivative at 0 on arbitrary offsets.

    Parameters
    ----------
    offsets : sequence of int, Fraction, float or str
        Distinct node offsets ``c_k`` (in units of ``h``); converted to
        :class:`~fractions.Fraction` exactly (floats by their binary value).
    derivative : int, default 1
        Order ``q`` of the derivative; needs ``len(offsets) > q``.

    Returns
    -------
    tuple of Fraction
        Weights ``w_k`` in the order of ``offsets`` such that
        ``f^(q)(x) ~ sum_k w_k f(x + c_k h) / h**q`` exactly for polynomials of
        degree ``< len(offsets)``. Zero weights are kept here (so the result
        aligns with ``offsets``); :class:`Scheme` constructors drop them.

    Raises
    ------
    ValueError
        If offsets repeat, ``derivative < 0``, or there are too few offsets.

    Notes
    -----
    The weights satisfy the moment conditions ``sum_k w_k c_k**j = q! [j == q]``
    for ``j = 0 .. n-1``; the scheme's error is then
    ``sum_{j >= n} f^(j)(x)/j! * m_j * h^(j-q)``. The recursion is Fornberg's
    algorithm, run here in exact rational arithmetic and cached by
    ``(offsets, derivative)``.

    References
    ----------
    B. Fornberg, "Generation of finite difference formulas on arbitrarily
    spaced grids", Math. Comp. 51 (1988), 699-706.

    Examples
    --------
    >>> [str(w) for w in fornberg_weights([-2, -1, 0, 1, 2])]
    ['1/12', '-2/3', '0', '2/3', '-1/12']
    """
    if isinstance(derivative, bool) or not isinstance(derivative, (int, np.integer)):
        raise TypeError(f"derivative must be an int, got {type(derivative).__name__} {derivative!r}")
    derivative = int(derivative)
    if derivative < 0:
        raise ValueError(f"derivative must be >= 0, got derivative={derivative}")
    fr = _validate_offsets(offsets, minimum=derivative + 1)
    return _fornberg_cached(fr, derivative)


fornberg_weights.cache_info = _fornberg_cached.cache_info  # type: ignore[attr-defined]


# --------------------------------------------------------------------------
# The Scheme value
# --------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Scheme:
    """A finite-difference scheme for the first derivative, as an immutable value.

    Build schemes with :func:`get_scheme`, :func:`scheme_from_offsets`,
    :func:`scheme_from_weights` or :func:`richardson_scheme`; the direct
    constructor validates that ``order``, ``leading_coefficient`` and
    ``leading_derivative`` agree with the moments.

    Attributes
    ----------
    name : str
        Name (the CLI name for built-in schemes).
    kind : SchemeKind
        ``LINEAR`` or ``COMPLEX_STEP``.
    offsets : tuple of Fraction
        Node offsets ``c_k``, ascending, no zero-weight nodes (empty for the
        complex step).
    weights : tuple of Fraction
        Exact weights ``w_k`` aligned with ``offsets`` (empty for the complex step).
    order : int
        Order of accuracy ``p``: ``T(h) ~ C f^(p+1)(x) h^p``.
    leading_coefficient : Fraction
        ``C`` in ``T(h) = C f^(p+1)(x) h^p + O(h^(p+1))``.
    leading_derivative : int
        ``p + 1`` (3 for the complex step).
    requires_analytic : bool
        True only for the complex step.
    description : str
        One line for humans.

    Notes
    -----
    For a linear scheme ``D(h) = sum_k w_k f(x + c_k h) / h`` and

    ``D(h) - f'(x) = sum_{j >= 2} f^(j)(x)/j! * m_j * h^(j-1)``, ``m_j = sum_k w_k c_k**j``.

    Round-off is amplified by ``sum_k |w_k| / h`` (see :meth:`sum_abs_weights`).

    Examples
    --------
    >>> s = get_scheme("central4")
    >>> s
    Scheme('central4', order=4, offsets=[-2,-1,1,2], weights=[1/12,-2/3,2/3,-1/12])
    >>> s.leading_coefficient
    Fraction(-1, 30)
    """

    name: str
    kind: SchemeKind
    offsets: tuple[Fraction, ...]
    weights: tuple[Fraction, ...]
    order: int
    leading_coefficient: Fraction
    leading_derivative: int
    requires_analytic: bool
    description: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Scheme name must be a non-empty string, got name={self.name!r}")
        if not isinstance(self.kind, SchemeKind):
            raise TypeError(f"Scheme kind must be a SchemeKind, got kind={self.kind!r}")
        for field in ("offsets", "weights"):
            value = getattr(self, field)
            if not isinstance(value, tuple) or not all(isinstance(q, Fraction) for q in value):
                raise TypeError(f"Scheme {field} must be a tuple of Fraction, got {field}={value!r}")
        if self.kind is SchemeKind.COMPLEX_STEP:
            if self.offsets or self.weights:
                raise ValueError("a complex-step scheme has no offsets or weights")
            if not self.requires_analytic:
                raise ValueError("a complex-step scheme must have requires_analytic=True")
            max_j = 3
        else:
            if len(self.offsets) != len(self.weights):
                raise ValueError(
                    f"offsets and weights differ in length: {len(self.offsets)} != {len(self.weights)}"
                )
            if len(self.offsets) < 2:
                raise ValueError(f"a linear scheme needs at least 2 nodes, got {len(self.offsets)}")
            if list(self.offsets) != sorted(set(self.offsets)):
                raise ValueError(f"offsets must be distinct and ascending, got {self._fmt_list(self.offsets)}")
            if any(w == 0 for w in self.weights):
                raise ValueError(f"zero weights must be dropped, got weights={self._fmt_list(self.weights)}")
            if self.requires_analytic:
                raise ValueError("a linear scheme has requires_analytic=False")
            m0, m1 = self.moment(0), self.moment(1)
            if m0 != 0 or m1 != 1:
                raise ValueError(
                    "weights are not a first-derivative scheme: need sum(w) = 0 and "
                    f"sum(w*c) = 1, got {_fmt(m0)} and {_fmt(m1)}"
                )
            max_j = len(self.offsets) + 2
        p, c, j = _leading_term(self.moment, max_j)
        if (self.order, self.leading_coefficient, self.leading_derivative) != (p, c, j):
            raise ValueError(
                f"scheme {self.name!r}: the moments give order={p}, leading_coefficient={_fmt(c)}, "
                f"leading_derivative={j}; got order={self.order}, "
                f"leading_coefficient={self.leading_coefficient}, "
                f"leading_derivative={self.leading_derivative}"
            )

    # -- exact properties ---------------------------------------------------

    def moment(self, j: int) -> Fraction:
        """Moment ``m_j = sum_k w_k c_k**j`` (``Im(i**j)`` for the complex step).

        Parameters
        ----------
        j : int
            Non-negative power.

        Returns
        -------
        Fraction

        Notes
        -----
        ``D(h) - f'(x) = sum_{j >= 2} f^(j)(x)/j! * m_j * h^(j-1)``.

        Examples
        --------
        >>> get_scheme("central").moment(3)
        Fraction(1, 1)
        """
        if isinstance(j, bool) or not isinstance(j, (int, np.integer)) or j < 0:
            raise ValueError(f"moment index must be an int >= 0, got j={j!r}")
        if self.kind is SchemeKind.COMPLEX_STEP:
            return _formal_complex_moment(int(j))
        return _linear_moment(self.offsets, self.weights, int(j))

    def truncation_series(self, max_order: int) -> list[TruncationTerm]:
        """Nonzero terms of the truncation error up to ``f^(max_order)``.

        Parameters
        ----------
        max_order : int
            Highest derivative order ``j`` to include (``>= 2``).

        Returns
        -------
        list of TruncationTerm
            ``(j, m_j / j!)`` for each ``2 <= j <= max_order`` with ``m_j != 0``,
            ascending in ``j``; the term is ``m_j/j! * f^(j)(x) * h^(j-1)``.

        Notes
        -----
        For the complex step this is the odd-derivative series of
        ``Im f(x+ih)/h``: ``sum_{m>=1} (-1)**m f^(2m+1)(x) h^(2m) / (2m+1)!``.

        Examples
        --------
        >>> [(t.derivative, str(t.coefficient)) for t in get_scheme("forward").truncation_series(4)]
        [(2, '1/2'), (3, '1/6'), (4, '1/24')]
        """
        if isinstance(max_order, bool) or not isinstance(max_order, (int, np.integer)):
            raise TypeError(f"max_order must be an int, got {type(max_order).__name__} {max_order!r}")
        if max_order < 2:
            raise ValueError(f"max_order must be >= 2 (the first possible error term), got max_order={max_order}")
        terms = []
        for j in range(2, int(max_order) + 1):
            m = self.moment(j)
            if m != 0:
                terms.append(TruncationTerm(j, m / math.factorial(j)))
        return terms

    def sum_abs_weights(self) -> Fraction:
        """``sum_k |w_k|``, the round-off amplification factor.

        Returns
        -------
        Fraction
            ``1`` for the complex step (no cancellation: a single imaginary part).

        Notes
        -----
        If each value ``f(x + c_k h)`` carries an error of about ``noise``,
        the round-off part of ``D(h)`` is about ``noise * sum_k |w_k| / h``.

        Examples
        --------
        >>> get_scheme("central4").sum_abs_weights()
        Fraction(3, 2)
        """
        if self.kind is SchemeKind.COMPLEX_STEP:
            return Fraction(1)
        return sum((abs(w) for w in self.weights), Fraction(0))

    # -- display --------------------------------------------------------------

    @staticmethod
    def _fmt_list(values: tuple[Fraction, ...]) -> str:
        return "[" + ",".join(_fmt(q) for q in values) + "]"

    def __repr__(self) -> str:
        if self.kind is SchemeKind.COMPLEX_STEP:
            return f"Scheme({self.name!r}, order={self.order}, kind={self.kind.value!r})"
        return (
            f"Scheme({self.name!r}, order={self.order}, "
            f"offsets={self._fmt_list(self.offsets)}, weights={self._fmt_list(self.weights)})"
        )

    def formula(self) -> str:
        """The estimate as a human-readable formula.

        Examples
        --------
        >>> get_scheme("central").formula()
        "f'(x) ~ [-1/2 f(x-h) + 1/2 f(x+h)] / h"
        """
        if self.kind is SchemeKind.COMPLEX_STEP:
            return "f'(x) ~ Im f(x+ih) / h"
        parts = []
        for i, (c, w) in enumerate(zip(self.offsets, self.weights)):
            if c == 0:
                node = "x"
            else:
                mag = abs(c)
                step = "h" if mag == 1 else f"{_fmt(mag)}h" if mag.denominator == 1 else f"({_fmt(mag)})h"
                node = f"x{'+' if c > 0 else '-'}{step}"
            coef = _fmt(abs(w))
            coef = "" if coef == "1" else coef + " "
            if i == 0:
                sign = "-" if w < 0 else ""
            else:
                sign = " - " if w < 0 else " + "
            parts.append(f"{sign}{coef}f({node})")
        return "f'(x) ~ [" + "".join(parts) + "] / h"

    def __str__(self) -> str:
        c = self.leading_coefficient
        j = self.leading_derivative
        hp = "h" if self.order == 1 else f"h^{self.order}"
        return (
            f"{self.name}: {self.formula()}; order {self.order}, "
            f"error {_fmt(c)} f^({j})(x) {hp} + ..."
        )


# --------------------------------------------------------------------------
# Constructors
# --------------------------------------------------------------------------


def _build_linear(
    offsets: tuple[Fraction, ...], weights: tuple[Fraction, ...], *, name: str, description: str
) -> Scheme:
    """Merge equal offsets, drop zero weights, sort, compute order from moments."""
    merged: dict[Fraction, Fraction] = {}
    for c, w in zip(offsets, weights):
        merged[c] = merged.get(c, Fraction(0)) + w
    nodes = sorted((c, w) for c, w in merged.items() if w != 0)
    offs = tuple(c for c, _ in nodes)
    wts = tuple(w for _, w in nodes)
    m0 = _linear_moment(offs, wts, 0)
    m1 = _linear_moment(offs, wts, 1)
    if m0 != 0 or m1 != 1:
        raise ValueError(
            f"scheme {name!r}: the weights do not estimate a first derivative: need "
            f"sum(w) = 0 and sum(w*c) = 1, got sum(w) = {_fmt(m0)} and sum(w*c) = {_fmt(m1)}"
        )
    p, c_lead, j = _leading_term(lambda k: _linear_moment(offs, wts, k), len(offs) + 2)
    return Scheme(
        name=name,
        kind=SchemeKind.LINEAR,
        offsets=offs,
        weights=wts,
        order=p,
        leading_coefficient=c_lead,
        leading_derivative=j,
        requires_analytic=False,
        description=description,
    )


def _default_name(offsets: tuple[Fraction, ...]) -> str:
    return "stencil[" + ",".join(_fmt(c) for c in sorted(offsets)) + "]"


def scheme_from_offsets(
    offsets: Iterable[object], *, name: str | None = None, description: str | None = None
) -> Scheme:
    """First-derivative scheme of maximal order on the given stencil.

    Parameters
    ----------
    offsets : sequence of int, Fraction, float or str
        At least two distinct offsets ``c_k`` (in units of ``h``).
    name : str, optional
        Defaults to ``'stencil[c_0,c_1,...]'``.
    description : str, optional

    Returns
    -------
    Scheme
        Weights from :func:`fornberg_weights`; nodes with zero weight dropped.

    Notes
    -----
    With ``n`` nodes the order is at least ``n - 1`` (one more for symmetric
    stencils); the error is ``sum_{j >= 2} f^(j)(x)/j! * m_j * h^(j-1)``.

    Examples
    --------
    >>> scheme_from_offsets([-1, 0, 2])
    Scheme('stencil[-1,0,2]', order=2, offsets=[-1,0,2], weights=[-2/3,1/2,1/6])
    """
    fr = _validate_offsets(offsets, minimum=2)
    weights = fornberg_weights(fr, 1)
    name = _default_name(fr) if name is None else name
    if description is None:
        description = f"maximal-order first derivative on offsets {_default_name(fr)[7:]}"
    return _build_linear(fr, weights, name=name, description=description)


def scheme_from_weights(
    offsets: Iterable[object], weights: Iterable[object], *, name: str, description: str = ""
) -> Scheme:
    """Scheme from explicit offsets and weights; order computed from the moments.

    Parameters
    ----------
    offsets, weights : sequences of int, Fraction, float or str
        Same length; equal offsets are merged and zero weights dropped.
    name : str
    description : str, default ""

    Returns
    -------
    Scheme

    Raises
    ------
    ValueError
        If ``sum(w) != 0`` or ``sum(w*c) != 1`` (not a first-derivative scheme).

    Notes
    -----
    ``D(h) = sum_k w_k f(x + c_k h) / h``; error
    ``sum_{j >= 2} f^(j)(x)/j! * m_j * h^(j-1)``.

    Examples
    --------
    >>> scheme_from_weights([0, "1/2", 1], [-3, 4, -1], name="richardson-forward").order
    2
    """
    offs = [_as_fraction(v, what=f"offsets[{i}]") for i, v in enumerate(offsets)]
    wts = [_as_fraction(v, what=f"weights[{i}]") for i, v in enumerate(weights)]
    if len(offs) != len(wts):
        raise ValueError(f"offsets and weights differ in length: {len(offs)} != {len(wts)}")
    return _build_linear(tuple(offs), tuple(wts), name=name, description=description)


def richardson_scheme(
    base: Scheme, *, ratio: int | Fraction = 2, name: str | None = None, description: str | None = None
) -> Scheme:
    """One step of Richardson extrapolation of a linear scheme, as a linear scheme.

    Parameters
    ----------
    base : Scheme
        A linear scheme of order ``p``.
    ratio : int or Fraction, default 2
        Step ratio ``r > 1``: combines ``D(h)`` and ``D(h/r)``.
    name, description : str, optional

    Returns
    -------
    Scheme
        ``D_R(h) = (r**p D(h/r) - D(h)) / (r**p - 1)`` with merged offsets
        ``{c_k / r} U {c_k}`` and weights ``r**(p+1) w_k / (r**p - 1)`` and
        ``-w_k / (r**p - 1)``.

    Notes
    -----
    The ``h**p`` term cancels; the order of the result (computed from its
    moments) is at least ``p + 1``, and ``p + 2`` for symmetric ``base``.

    Examples
    --------
    >>> richardson_scheme(get_scheme("central"))
    Scheme('richardson-central', order=4, offsets=[-1,-1/2,1/2,1], weights=[1/6,-4/3,4/3,-1/6])
    """
    if not isinstance(base, Scheme) or base.kind is not SchemeKind.LINEAR:
        raise ValueError(f"Richardson extrapolation needs a linear scheme, got base={base!r}")
    r = _as_fraction(ratio, what="ratio")
    if r <= 1:
        raise ValueError(f"ratio must be > 1, got ratio={_fmt(r)}")
    p = base.order
    denom = r**p - 1
    offs = tuple(c / r for c in base.offsets) + base.offsets
    wts = tuple(r ** (p + 1) * w / denom for w in base.weights) + tuple(-w / denom for w in base.weights)
    name = f"richardson-{base.name}" if name is None else name
    if description is None:
        description = (
            f"Richardson extrapolation (ratio {_fmt(r)}) of {base.name}: "
            f"({_fmt(r**p)} D(h/{_fmt(r)}) - D(h))/{_fmt(denom)}"
        )
    return _build_linear(offs, wts, name=name, description=description)


def _complex_step() -> Scheme:
    p, c, j = _leading_term(_formal_complex_moment, 3)
    return Scheme(
        name="complex-step",
        kind=SchemeKind.COMPLEX_STEP,
        offsets=(),
        weights=(),
        order=p,
        leading_coefficient=c,
        leading_derivative=j,
        requires_analytic=True,
        description="complex step Im f(x+ih)/h (Squire & Trapp 1998); needs f analytic",
    )


def _build_registry() -> Mapping[str, Scheme]:
    half = Fraction(1, 2)
    forward = scheme_from_offsets([0, 1], name="forward", description="forward difference (f(x+h)-f(x))/h")
    central = scheme_from_offsets([-1, 1], name="central", description="central difference (f(x+h)-f(x-h))/(2h)")
    schemes = [
        forward,
        scheme_from_offsets([-1, 0], name="backward", description="backward difference (f(x)-f(x-h))/h"),
        central,
        scheme_from_offsets(
            [-half, half], name="central-half", description="central difference (f(x+h/2)-f(x-h/2))/h"
        ),
        scheme_from_offsets([0, 1, 2], name="forward2", description="second-order one-sided forward difference"),
        scheme_from_offsets(range(-2, 3), name="central4", description="fourth-order central difference"),
        scheme_from_offsets(range(-3, 4), name="central6", description="sixth-order central difference"),
        scheme_from_offsets(range(-4, 5), name="central8", description="eighth-order central difference"),
        richardson_scheme(
            forward,
            name="richardson-forward",
            description="Richardson extrapolation of forward differences: 2 D_f(h/2) - D_f(h)",
        ),
        richardson_scheme(
            central,
            name="richardson-central",
            description="Richardson extrapolation of central differences: (4 D_c(h/2) - D_c(h))/3",
        ),
        _complex_step(),
    ]
    return MappingProxyType({s.name: s for s in schemes})


_SCHEMES: Mapping[str, Scheme] = _build_registry()

#: Names of the built-in schemes, in the order they are listed to users.
SCHEME_NAMES: tuple[str, ...] = tuple(_SCHEMES)


def get_scheme(name: str) -> Scheme:
    """Built-in scheme by its CLI name.

    Parameters
    ----------
    name : str
        One of :data:`SCHEME_NAMES`.

    Returns
    -------
    Scheme

    Raises
    ------
    ValueError
        For an unknown name; the message lists the valid names and suggests
        the closest one.

    Examples
    --------
    >>> get_scheme("central").weights
    (Fraction(-1, 2), Fraction(1, 2))
    """
    if not isinstance(name, str):
        raise TypeError(f"scheme name must be a string, got {type(name).__name__} {name!r}")
    try:
        return _SCHEMES[name]
    except KeyError:
        pass
    close = difflib.get_close_matches(name, SCHEME_NAMES, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown scheme {name!r}{hint}; valid schemes: {', '.join(SCHEME_NAMES)}")


def apply_scheme(scheme: Scheme, f: Callable[[float], float], x: float, h: float) -> float:
    """Evaluate a scheme on a scalar Python function in float arithmetic.

    A reference helper for docs and tests; the suite's own evaluation lives
    elsewhere.

    Parameters
    ----------
    scheme : Scheme
    f : callable float -> float
        For the complex step, ``f`` must accept a complex argument.
    x, h : float
        Point and step.

    Returns
    -------
    float
        ``fl(sum_k fl(w_k) f(fl(x + c_k h)) / h)`` accumulated in node order,
        or ``Im f(x + ih) / h`` for the complex step.

    Notes
    -----
    Total error ``E = T + S + R``: truncation ``T ~ C f^(p+1)(x) h^p``,
    round-off ``R ~ eps |f| sum|w_k| / h``.

    Examples
    --------
    >>> import math
    >>> abs(apply_scheme(get_scheme("central4"), math.sin, 1.0, 1e-2) - math.cos(1.0)) < 1e-9
    True
    """
    x = float(x)
    h = float(h)
    if scheme.kind is SchemeKind.COMPLEX_STEP:
        return complex(f(complex(x, h))).imag / h
    total = 0.0
    for c, w in zip(scheme.offsets, scheme.weights):
        total += float(w) * f(x + float(c) * h)
    return total / h


# --------------------------------------------------------------------------
# Step handling
# --------------------------------------------------------------------------


def _coerce_mode(mode: StepMode | str) -> StepMode:
    if isinstance(mode, StepMode):
        return mode
    try:
        return StepMode(mode)
    except ValueError:
        valid = ", ".join(m.value for m in StepMode)
        raise ValueError(f"unknown step mode {mode!r}; valid step modes: {valid}") from None


def _check_step(h: object) -> float:
    if isinstance(h, bool) or not isinstance(h, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"step h must be a real number, got {type(h).__name__} {h!r}")
    hf = float(h)
    if not (math.isfinite(hf) and hf > 0):
        raise ValueError(f"step h must be finite and > 0, got h={h!r}")
    return hf


def _real_float_array(x: object, *, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind != "f":
        raise TypeError(f"{what} must be a real floating-point array (float32 or float64), got dtype {arr.dtype}")
    return arr


def _real_float_dtype(dtype: object, *, allow_complex: bool) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a numpy floating dtype such as float32 or float64, got {dtype!r}") from None
    kinds = "fc" if allow_complex else "f"
    if dt.kind not in kinds:
        allowed = "float32, float64 (or complex64, complex128)" if allow_complex else "float32 or float64"
        raise TypeError(f"dtype must be {allowed}, got {dt}")
    return dt


def nominal_steps(h: float, x: np.ndarray, mode: StepMode | str = StepMode.ABSOLUTE) -> np.ndarray:
    """Per-coordinate nominal step from a scalar step ``h``.

    Parameters
    ----------
    h : float
        Nominal step, finite and ``> 0``.
    x : ndarray of float32 or float64, any shape
        The point (only ``|x_i|`` is used, and only in ``RELATIVE`` mode).
    mode : StepMode or {'absolute', 'relative'}, default StepMode.ABSOLUTE

    Returns
    -------
    ndarray of float64, shape ``x.shape``
        ``h`` (absolute) or ``h * max(1, |x_i|)`` (relative). The widening of a
        float32 ``x`` to float64 is exact; rounding to the evaluation dtype is
        :func:`representable_step`'s job.

    Notes
    -----
    The relative mode keeps the truncation error ``C f^(p+1) h_i^p`` and the
    representation error of ``x_i + h_i`` balanced when ``|x_i| >> 1``.

    Examples
    --------
    >>> nominal_steps(1e-3, np.array([0.5, -4.0]), StepMode.RELATIVE)
    array([0.001, 0.004])
    """
    hf = _check_step(h)
    arr = _real_float_array(x, what="x")
    mode = _coerce_mode(mode)
    if mode is StepMode.ABSOLUTE:
        return np.full(arr.shape, hf, dtype=np.float64)
    return hf * np.maximum(np.float64(1.0), np.abs(arr.astype(np.float64)))


def representable_step(x: np.ndarray, h: np.ndarray, dtype: object) -> np.ndarray:
    """The step actually taken in ``dtype``: ``(x + h) - x`` computed in ``dtype``.

    Parameters
    ----------
    x : array_like of float, any shape
        Point; rounded to ``dtype`` (the suite evaluates at ``x_p = fl_p(x)``).
    h : array_like of float, broadcastable to ``x``
        Nominal step(s); rounded to ``dtype``.
    dtype : float32 or float64 (real floating dtype)

    Returns
    -------
    ndarray of ``dtype``, shape ``broadcast(x, h).shape``
        ``fl(fl(x + h) - x)``. Since ``x + h`` and ``x`` are both in ``dtype``,
        the subtraction is exact (Sterbenz), so ``x + result`` is exactly
        representable and equals ``fl(x + h)``. An entry is 0 when ``h`` is
        below half an ulp of ``x``; the caller decides what to do with it.

    Notes
    -----
    Using the representable step removes the step part ``S`` of the error for
    the node ``x + h`` (SciPy's ``_numdiff`` trick). Nodes ``x + c_k h`` with
    ``|c_k| != 1`` may still be rounded.

    Examples
    --------
    >>> representable_step(np.float32(1.0), np.float32(1e-7), np.float32)
    array(1.1920929e-07, dtype=float32)
    """
    dt = _real_float_dtype(dtype, allow_complex=False)
    xa = np.asarray(x)
    ha = np.asarray(h)
    for what, arr in (("x", xa), ("h", ha)):
        if arr.dtype.kind not in "fiu" or arr.dtype.kind == "b":
            raise TypeError(f"{what} must be a real array, got dtype {arr.dtype}")
    xp = xa.astype(dt)
    hp = ha.astype(dt)
    if not np.all(np.isfinite(hp)):
        raise ValueError(f"h must be finite in {dt}, got h={ha!r}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = (xp + hp) - xp
    return np.asarray(out, dtype=dt)


def default_step(scheme: Scheme, dtype: object) -> float:
    """Rule-of-thumb step for a well-scaled function.

    Parameters
    ----------
    scheme : Scheme
    dtype : float32 or float64 (complex64/complex128 accepted: their real eps)

    Returns
    -------
    float
        ``eps**(1/(p+1))`` for a linear scheme of order ``p``; ``eps`` for the
        complex step. Use it as a nominal (ideally relative) step.

    Notes
    -----
    For a linear scheme the total error is about ``|C| |f^(p+1)| h^p +
    eps |f| sum|w_k| / h``, minimised at ``h* ~ eps**(1/(p+1))`` when ``f`` and
    its derivatives are of order 1 (forward: ``sqrt(eps)``, central:
    ``eps**(1/3)``, as in SciPy).

    The complex step has no subtractive cancellation, so there is no
    round-off arm and any ``h`` with ``h**2 |f'''| / 6 << eps |f'|`` is
    optimal. We take ``h = eps``: its truncation ``eps**2 / 6`` is far below
    ``eps``, while ``Im f(x+ih) ~ h f'(x)`` stays far above the underflow
    threshold (``tiny / eps`` is 1e-292 for float64, 1e-31 for float32). The
    popular ``1e-20`` is fine in float64 but pushes ``h f'`` toward
    underflow in complex64 for small gradients.

    Examples
    --------
    >>> default_step(get_scheme("forward"), np.float64)  # sqrt(eps)
    1.4901161193847656e-08
    """
    dt = _real_float_dtype(dtype, allow_complex=True)
    eps = float(np.finfo(dt).eps)
    if scheme.kind is SchemeKind.COMPLEX_STEP:
        return eps
    return eps ** (1.0 / (scheme.order + 1))


def default_step_grid(scheme: Scheme, dtype: object, count: int = 30) -> np.ndarray:
    """Log-spaced steps that show both arms of the V-shaped error curve.

    Parameters
    ----------
    scheme : Scheme
    dtype : float32 or float64 (complex64/complex128 accepted)
    count : int, default 30
        Number of steps (``>= 2``).

    Returns
    -------
    ndarray of float64, shape ``(count,)``
        Ascending, from ``100 * eps`` to ``1`` for linear schemes; from
        ``eps**2`` to ``1`` for the complex step.

    Notes
    -----
    Linear schemes: at ``h = 100 eps`` the round-off ``eps sum|w| / h`` is
    about 1e-2 relative, deep in the round-off arm (slope -1); at ``h = 1``
    the truncation ``C f^(p+1) h^p`` dominates (slope ``p``) even for
    ``central8`` in float32, whose optimum ``eps**(1/9)`` is about 0.17.
    The grid includes :func:`default_step` in its span.

    Complex step: the error is flat at about ``eps`` below ``sqrt(eps)`` and
    grows as ``h**2/6`` above; ``eps**2`` is deep in the flat region yet far
    above underflow.

    Examples
    --------
    >>> g = default_step_grid(get_scheme("central"), np.float64, count=5)
    >>> float(g[0]), float(g[-1])
    (2.220446049250313e-14, 1.0)
    """
    dt = _real_float_dtype(dtype, allow_complex=True)
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 2:
        raise ValueError(f"count must be an int >= 2, got count={count!r}")
    eps = float(np.finfo(dt).eps)
    lo = eps**2 if scheme.kind is SchemeKind.COMPLEX_STEP else 100.0 * eps
    grid = np.logspace(math.log10(lo), 0.0, int(count), dtype=np.float64)
    grid[0], grid[-1] = lo, 1.0
    return grid
