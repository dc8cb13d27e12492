"""Finite-difference schemes as immutable values with exact coefficients.

A *linear* scheme for the q-th derivative (q = 1 unless said otherwise) is a set of
offsets ``c_k`` and weights ``w_k`` (exact :class:`fractions.Fraction`), and estimates

.. math:: D(h) = \\frac{1}{h^q} \\sum_k w_k f(x + c_k h) .

Its order and leading truncation coefficient come from the moments
``m_j = sum_k w_k c_k**j`` (see :mod:`verigrad.schemes.weights`): ``m_j = 0`` for
``j < q``, ``m_q = q!``, and ``D(h) - f^(q)(x) = sum_{j > q} f^(j)(x) m_j / j! h^(j - q)``.

The *complex step* ``Im f(x + i h) / h`` is not linear in real function values;
it is represented with ``kind=SchemeKind.COMPLEX_STEP``, no offsets, and the
formal moments ``m_j = Im(i**j)`` which make the same truncation formula hold:
``D(h) - f'(x) = sum_{m >= 1} (-1)**m f^(2m+1)(x) h^(2m) / (2m+1)!``.

Here: the :class:`Scheme` value, the builders :func:`scheme_from_offsets`,
:func:`scheme_from_weights` and :func:`richardson_scheme`, and the float
reference :func:`apply_scheme`. The named built-in schemes are in
:mod:`verigrad.schemes.registry`; steps in :mod:`verigrad.schemes.steps`.

This module depends on the standard library and numpy only.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from verigrad.schemes.weights import (
    TruncationTerm,
    _as_fraction,
    _fmt,
    _formal_complex_moment,
    _leading_term,
    _linear_moment,
    _validate_offsets,
    fornberg_weights,
)

__all__ = [
    "Scheme",
    "SchemeKind",
    "apply_scheme",
    "richardson_scheme",
    "scaled_scheme",
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


# --------------------------------------------------------------------------
# The Scheme value
# --------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Scheme:
    """A finite-difference scheme for the first (or the q-th) derivative, as an immutable value.

    Build schemes with :func:`~verigrad.schemes.registry.get_scheme`, :func:`scheme_from_offsets`,
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
        Order of accuracy ``p``: ``T(h) ~ C f^(p+q)(x) h^p``.
    leading_coefficient : Fraction
        ``C`` in ``T(h) = C f^(p+q)(x) h^p + O(h^(p+1))``.
    leading_derivative : int
        ``p + q`` (3 for the complex step).
    requires_analytic : bool
        True only for the complex step.
    description : str
        One line for humans.
    derivative : int, default 1
        Order ``q`` of the derivative estimated: ``D(h) = sum_k w_k f(x + c_k h) / h**q``.
    error_reference : Scheme or None, default None
        A scheme of lower order on a subset of this scheme's nodes whose difference from
        this one is the method's *error estimate* ``|D(h) - D_ref(h)|`` (multi-level Richardson:
        the previous level on the finest steps, as in a Richardson tableau). None: no estimate.

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
    derivative: int = 1
    error_reference: "Scheme | None" = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Scheme name must be a non-empty string, got name={self.name!r}")
        if not isinstance(self.kind, SchemeKind):
            raise TypeError(f"Scheme kind must be a SchemeKind, got kind={self.kind!r}")
        for field in ("offsets", "weights"):
            value = getattr(self, field)
            if not isinstance(value, tuple) or not all(isinstance(q, Fraction) for q in value):
                raise TypeError(f"Scheme {field} must be a tuple of Fraction, got {field}={value!r}")
        q = self.derivative
        if isinstance(q, bool) or not isinstance(q, int) or q < 1:
            raise ValueError(f"Scheme derivative must be an int >= 1, got derivative={q!r}")
        if self.kind is SchemeKind.COMPLEX_STEP:
            if q != 1:
                raise ValueError(f"the complex step estimates the first derivative only, got derivative={q}")
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
            if len(self.offsets) < q + 1:
                raise ValueError(f"a linear scheme for derivative {q} needs at least {q + 1} nodes, "
                                 f"got {len(self.offsets)}")
            if list(self.offsets) != sorted(set(self.offsets)):
                raise ValueError(f"offsets must be distinct and ascending, got {self._fmt_list(self.offsets)}")
            if any(w == 0 for w in self.weights):
                raise ValueError(f"zero weights must be dropped, got weights={self._fmt_list(self.weights)}")
            if self.requires_analytic:
                raise ValueError("a linear scheme has requires_analytic=False")
            _check_consistent(self.offsets, self.weights, q, what="weights")
            max_j = len(self.offsets) + q + 1
        p, c, j = _leading_term(self.moment, max_j, q)
        if (self.order, self.leading_coefficient, self.leading_derivative) != (p, c, j):
            raise ValueError(
                f"scheme {self.name!r}: the moments give order={p}, leading_coefficient={_fmt(c)}, "
                f"leading_derivative={j}; got order={self.order}, "
                f"leading_coefficient={self.leading_coefficient}, "
                f"leading_derivative={self.leading_derivative}"
            )
        ref = self.error_reference
        if ref is not None:
            if not isinstance(ref, Scheme) or ref.kind is not SchemeKind.LINEAR or ref.derivative != q:
                raise ValueError(f"error_reference must be a linear scheme for derivative {q}, got {ref!r}")
            if not set(ref.offsets) <= set(self.offsets):
                raise ValueError("error_reference must use a subset of the scheme's nodes, got offsets "
                                 f"{self._fmt_list(ref.offsets)} not all in {self._fmt_list(self.offsets)}")

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
            Highest derivative order ``j`` to include (``>= q + 1``; 2 for first derivatives).

        Returns
        -------
        list of TruncationTerm
            ``(j, m_j / j!)`` for each ``q < j <= max_order`` with ``m_j != 0``,
            ascending in ``j``; the term is ``m_j/j! * f^(j)(x) * h^(j-q)``.

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
        q = self.derivative
        if max_order < q + 1:
            raise ValueError(f"max_order must be >= {q + 1} (the first possible error term), got max_order={max_order}")
        terms = []
        for j in range(q + 1, int(max_order) + 1):
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
        q = self.derivative
        lhs = "f" + "'" * q + "(x)" if q <= 3 else f"f^({q})(x)"
        hq = "h" if q == 1 else f"h^{q}"
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
        return f"{lhs} ~ [" + "".join(parts) + f"] / {hq}"

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


def _derivative_name(q: int) -> str:
    return {1: "first", 2: "second", 3: "third"}.get(q, f"{q}-th")


def _check_consistent(offs, wts, q: int, *, what: str, name: str | None = None) -> None:
    """Raise unless ``m_j = 0`` for ``j < q`` and ``m_q = q!`` (a consistent scheme for ``f^(q)``)."""
    moments = [_linear_moment(offs, wts, j) for j in range(q + 1)]
    if all(m == 0 for m in moments[:q]) and moments[q] == math.factorial(q):
        return
    head = f"scheme {name!r}: the {what} do not estimate" if name is not None else f"{what} are not"
    if q == 1:
        if name is not None:
            raise ValueError(f"{head} a first derivative: need sum(w) = 0 and sum(w*c) = 1, got "
                             f"sum(w) = {_fmt(moments[0])} and sum(w*c) = {_fmt(moments[1])}")
        raise ValueError("weights are not a first-derivative scheme: need sum(w) = 0 and "
                         f"sum(w*c) = 1, got {_fmt(moments[0])} and {_fmt(moments[1])}")
    got = ", ".join(f"sum(w*c^{j}) = {_fmt(m)}" for j, m in enumerate(moments))
    raise ValueError(f"{head} a {_derivative_name(q)} derivative: need sum(w*c^j) = 0 for j < {q} and "
                     f"sum(w*c^{q}) = {q}! = {math.factorial(q)}, got {got}")


def _build_linear(
    offsets: tuple[Fraction, ...], weights: tuple[Fraction, ...], *, name: str, description: str,
    derivative: int = 1, error_reference: Scheme | None = None,
) -> Scheme:
    """Merge equal offsets, drop zero weights, sort, compute order from moments."""
    merged: dict[Fraction, Fraction] = {}
    for c, w in zip(offsets, weights):
        merged[c] = merged.get(c, Fraction(0)) + w
    nodes = sorted((c, w) for c, w in merged.items() if w != 0)
    offs = tuple(c for c, _ in nodes)
    wts = tuple(w for _, w in nodes)
    _check_consistent(offs, wts, derivative, what="weights", name=name)
    p, c_lead, j = _leading_term(lambda k: _linear_moment(offs, wts, k), len(offs) + derivative + 1, derivative)
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
        derivative=derivative,
        error_reference=error_reference,
    )


def _default_name(offsets: tuple[Fraction, ...]) -> str:
    return "stencil[" + ",".join(_fmt(c) for c in sorted(offsets)) + "]"


def scheme_from_offsets(
    offsets: Iterable[object], *, name: str | None = None, description: str | None = None, derivative: int = 1
) -> Scheme:
    """Scheme of maximal order for the first (or the q-th) derivative on the given stencil.

    Parameters
    ----------
    offsets : sequence of int, Fraction, float or str
        At least ``q + 1`` distinct offsets ``c_k`` (in units of ``h``).
    name : str, optional
        Defaults to ``'stencil[c_0,c_1,...]'`` (``'stencil[...]''`` with a prime per
        derivative above the first, e.g. ``stencil[-1,0,1]''``).
    description : str, optional
    derivative : int, default 1
        Order ``q`` of the derivative.

    Returns
    -------
    Scheme
        Weights from :func:`~verigrad.schemes.weights.fornberg_weights`; nodes with zero weight dropped.

    Notes
    -----
    With ``n`` nodes the order is at least ``n - q`` (one more for symmetric
    stencils); the error is ``sum_{j > q} f^(j)(x)/j! * m_j * h^(j-q)``.

    Examples
    --------
    >>> scheme_from_offsets([-1, 0, 2])
    Scheme('stencil[-1,0,2]', order=2, offsets=[-1,0,2], weights=[-2/3,1/2,1/6])
    >>> scheme_from_offsets([-1, 0, 1], derivative=2).weights
    (Fraction(1, 1), Fraction(-2, 1), Fraction(1, 1))
    """
    if isinstance(derivative, bool) or not isinstance(derivative, (int, np.integer)) or derivative < 1:
        raise ValueError(f"derivative must be an int >= 1, got derivative={derivative!r}")
    derivative = int(derivative)
    fr = _validate_offsets(offsets, minimum=derivative + 1)
    weights = fornberg_weights(fr, derivative)
    default = _default_name(fr) + ("" if derivative == 1 else f"^({derivative})")
    name = default if name is None else name
    if description is None:
        what = "first derivative" if derivative == 1 else f"{_derivative_name(derivative)} derivative"
        description = f"maximal-order {what} on offsets {_default_name(fr)[7:]}"
    return _build_linear(fr, weights, name=name, description=description, derivative=derivative)


def scaled_scheme(scheme: Scheme, factor: object, *, name: str | None = None) -> Scheme:
    """The scheme at step ``factor * h`` written as a scheme in ``h``.

    ``D(factor h) = sum_k w_k f(x + c_k factor h) / (factor h)^q``: offsets ``factor c_k``,
    weights ``w_k / factor^q``; same order, leading coefficient times ``factor^p``.

    Examples
    --------
    >>> scaled_scheme(get_scheme("central"), "1/2").offsets
    (Fraction(-1, 2), Fraction(1, 2))
    """
    if not isinstance(scheme, Scheme) or scheme.kind is not SchemeKind.LINEAR:
        raise ValueError(f"only a linear scheme can be rescaled, got scheme={scheme!r}")
    r = _as_fraction(factor, what="factor")
    if r <= 0:
        raise ValueError(f"factor must be > 0, got factor={_fmt(r)}")
    q = scheme.derivative
    return _build_linear(tuple(c * r for c in scheme.offsets), tuple(w / r**q for w in scheme.weights),
                         name=name or f"{scheme.name}(h*{_fmt(r)})", description=scheme.description, derivative=q)


def scheme_from_weights(
    offsets: Iterable[object], weights: Iterable[object], *, name: str, description: str = "", derivative: int = 1
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
    return _build_linear(tuple(offs), tuple(wts), name=name, description=description, derivative=int(derivative))


def richardson_scheme(
    base: Scheme, *, ratio: int | Fraction = 2, name: str | None = None, description: str | None = None,
    terms: int = 2, error_estimate: bool = False,
) -> Scheme:
    """Richardson extrapolation of a linear scheme over ``terms`` steps, as a linear scheme.

    Parameters
    ----------
    base : Scheme
        A linear scheme of order ``p`` (for any derivative ``q``).
    ratio : int, Fraction or str, default 2
        Step ratio ``r > 1``: combines ``D(h), D(h/r), ..., D(h/r^(terms-1))``.
    name, description : str, optional
    terms : int, default 2
        Number of steps combined (``terms - 1`` error terms eliminated): 2 is one
        extrapolation, 3 eliminates two terms of the base's truncation series.
    error_estimate : bool, default False
        Attach the Richardson tableau's error estimate (:attr:`Scheme.error_reference`): the
        previous level on the ``terms - 1`` finest steps, ``R_{n-1}(h/r)``; the estimate is
        ``|R_n(h) - R_{n-1}(h/r)|``, the size of the last correction.

    Returns
    -------
    Scheme
        With ``terms = 2``, ``D_R(h) = (r**p D(h/r) - D(h)) / (r**p - 1)``: merged offsets
        ``{c_k / r} U {c_k}`` and weights ``r**(p+q) w_k / (r**p - 1)`` and ``-w_k / (r**p - 1)``.
        More terms repeat this on the result (the Richardson tableau: each level eliminates the
        current leading power, read from the exact moments), so every weight is exact.

    Notes
    -----
    Each level cancels the current ``h**p`` term; the order of the result (computed from its
    moments) is at least ``p + terms - 1``, and ``p + 2 (terms - 1)`` for symmetric ``base``.

    References
    ----------
    L. F. Richardson, "The deferred approach to the limit", Phil. Trans. R. Soc. A 226 (1927);
    the tableau as in Numerical Recipes, 3rd ed., section 5.7.

    Examples
    --------
    >>> richardson_scheme(get_scheme("central"))
    Scheme('richardson-central', order=4, offsets=[-1,-1/2,1/2,1], weights=[1/6,-4/3,4/3,-1/6])
    >>> richardson_scheme(get_scheme("central"), terms=3).order
    6
    """
    if not isinstance(base, Scheme) or base.kind is not SchemeKind.LINEAR:
        raise ValueError(f"Richardson extrapolation needs a linear scheme, got base={base!r}")
    r = _as_fraction(ratio, what="ratio")
    if r <= 1:
        raise ValueError(f"ratio must be > 1, got ratio={_fmt(r)}")
    if isinstance(terms, bool) or not isinstance(terms, (int, np.integer)) or not 2 <= terms <= 8:
        raise ValueError(f"terms must be an int from 2 to 8, got terms={terms!r}")
    q = base.derivative
    level, previous = base, base
    steps = []
    for _ in range(int(terms) - 1):
        p = level.order
        denom = r**p - 1
        offs = tuple(c / r for c in level.offsets) + level.offsets
        wts = tuple(r ** (p + q) * w / denom for w in level.weights) + tuple(-w / denom for w in level.weights)
        steps.append(f"({_fmt(r**p)} D(h/{_fmt(r)}) - D(h))/{_fmt(denom)}")
        previous = level
        level = _build_linear(offs, wts, name=f"{base.name}-level", description="", derivative=q)
    name = f"richardson-{base.name}" if name is None else name
    if description is None:
        description = f"Richardson extrapolation (ratio {_fmt(r)}) of {base.name}: " + "; then ".join(steps)
    reference = None
    if error_estimate:
        reference = scaled_scheme(previous, 1 / r, name=f"{name} (previous level at h/{_fmt(r)})")
    return _build_linear(level.offsets, level.weights, name=name, description=description, derivative=q,
                         error_reference=reference)


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
    return total / h**scheme.derivative
