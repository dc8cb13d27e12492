"""Kinks, domains and subgradients: no false alarms at ReLU, abs and max.

The most common false failure of a gradient checker is a finite-difference
stencil that straddles a non-differentiable point (``relu`` at 0, ``abs``,
``maximum``/``max`` with ties, Huber written with ``minimum``) or leaves the
loss's domain (``log``, ``sqrt`` near 0).  verigrad knows the expression, so it
knows these places exactly.  This module

* finds every *site* of the loss graph (:func:`find_sites`): a kink (the
  derivative jumps where a condition value is 0) or a domain boundary (the loss
  or its derivative is undefined beyond it), each as an entry-wise condition on
  an argument node, e.g. ``relu(Z1) at Z1 = 0``;
* evaluates the condition values exactly (:func:`site_values`), their distance
  along a direction (:func:`distance_along`), and whether the nodes of a
  stencil lie on another side than the point (:func:`stencil_crossings`,
  :func:`fd_crossings`, :func:`safe_steps`);
* at a point exactly on a kink (:func:`at_kink`), computes the certified
  one-sided partial derivatives (:func:`one_sided_gradient`) and the set of
  valid gradients a candidate may return (:func:`subgradient_set`), and
  grades a candidate against the element of that set nearest to it
  (:func:`kink_acceptance`), stating the convention it used
  (``relu'(0) = 0 (the left derivative of relu) at Z1[2, 0]``).

Notes
-----
*Which answers are valid at a kink.*  Where the loss is not differentiable,
an implementation of the chain rule picks, at every kink entry, one element of
the elementary function's subdifferential: ``relu'(0) = s`` with ``s`` in
``[0, 1]``, ``abs'(0) = u`` in ``[-1, 1]``, a split ``(s, 1 - s)`` of a
``maximum`` tie, a split (weights >= 0 summing to 1) of a ``max`` tie among
the tied entries.  The set of gradients obtained this way, with *one choice
per kink entry shared by every path through it*, is the set
:func:`subgradient_set` describes (a conservative gradient in the sense of
Bolte and Pauwels).  For one kink per path it is the Clarke subdifferential.
It is a joint set: in a 2x2 max-pool with a tie, each tied entry alone may take
any value in ``[0, C]``, but together they must sum to ``C``; a per-entry test
cannot see the common bug that gives ``C`` to every tied entry.

The gradient is multilinear in the choices.  When no two kink entries lie on
one path (no nested kinks) it is affine, and the set is exactly
``G0 + sum_j conv{G(vertex_jv) - G0}``; nested kinks are reported as
*interacting* and the set is then its linearisation around the point-value
convention.  The nearest element to a candidate ``v`` is found by a linear
program (weighted L1 distance, HiGHS) and then re-evaluated exactly with the
chosen convention, so the effective truth is an exact element of the set.

*One-sided derivatives.*  ``d+_i = lim_{t->0+} (f(x + t e_i) - f(x)) / t`` and
``d-_i`` (``t -> 0-``).  A piecewise-smooth ``f`` is smooth on ``[0, tau]`` for
small ``tau``, so ``D(t) = (f(x + t e) - f(x)) / t = d + c t + O(t^2)`` there;
:func:`one_sided_gradient` evaluates ``D`` exactly (mpmath) at ``t = ±2^-k``,
``±2^-(k+1)``, ``±2^-(k+2)`` and accepts the Richardson values
``R = 2 D(t/2) - D(t)`` when two of them agree, otherwise it halves ``t``
further.  The interval ``[min(d-, d+), max(d-, d+)]`` is the Clarke
subdifferential of the restriction ``t -> f(x + t e_i)``.  For a single kink
on the line it is the projection of the set above on coordinate ``i``; when
several kinks interact it can be narrower than that projection (``|x + |y|| -
|y|`` at 0 has ``d+_y = d-_y = 0`` but gradients with ``y``-component 2), and
as a per-entry box it ignores the coupling between entries, so it is reported
for information and used by :func:`accept_at_kinks`, while the joint set
decides the grade.

*Finite differences on a kink.*  Along ``e``, ``f(x + c h e) = f(x) + c h
d_sign(c) + O(h^2)``, so a linear scheme tends to ``alpha d+ + beta d-`` with
``alpha = sum_{c_k > 0} w_k c_k`` and ``beta = sum_{c_k < 0} w_k c_k``:
forward -> ``d+``, backward -> ``d-``, every symmetric scheme (central,
central4, ...) -> ``(d+ + d-) / 2`` (:func:`kink_limit`).  Its error is then
``O(h)`` in general, whatever the order of the scheme.

References
----------
F. H. Clarke, *Optimization and Nonsmooth Analysis*, Wiley, 1983, ch. 2.
J. Bolte and E. Pauwels, "Conservative set valued fields, automatic
differentiation, stochastic gradient methods and deep learning", Math.
Program. 188 (2021) 19-51.
A. Griewank and A. Walther, *Evaluating Derivatives*, 2nd ed., SIAM, 2008,
ch. 14 (piecewise differentiable functions).

Examples
--------
>>> import verigrad as vg
>>> from verigrad.kinks import at_kink, find_sites
>>> case = vg.load_case_text('''
... name = "relu-at-zero"
... loss = "a * relu(w * x + b)"
... [symbols]
... x = { constant = true, value = 2.0 }
... a = { value = 3.0 }
... w = { value = 0.5 }
... b = { value = -1.0 }
... ''')
>>> model = vg.compile_case(case)
>>> [s.text for s in find_sites(model)]
['relu(w * x + b) at w * x + b = 0']
>>> [(k.site.name, k.entries) for k in at_kink(model, model.point)]
[('relu', ((),))]
"""

from __future__ import annotations

import enum
import math
import weakref
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Sequence

import mpmath
import numpy as np

from verigrad.engine.backends import FloatBackend, MPBackend
from verigrad.casefile.loader import point_in_dtype
from verigrad.errors import CertificationError, DomainError, VerigradError
from verigrad.expr.graph import Node, Op, _align, eval_node, const_value, decode_index, evaluate, topological
from verigrad.engine.model import Model
from verigrad.schemes import Scheme, SchemeKind, StepMode, get_scheme
from verigrad.spec import Dtype
from verigrad.studies import Direction, batched_leaves, coordinate_direction, entry_steps, recommended_step

__all__ = [
    "recommend_steps", "RecommendedSteps",
    "SiteKind", "SiteRule", "Boundary", "Site", "find_sites", "site_values",
    "SiteDistance", "distance_along", "Crossing", "stencil_crossings", "AtKink", "at_kink",
    "OneSided", "one_sided_gradient", "PerEntryAcceptance", "accept_at_kinks",
    "SafeStep", "safe_steps", "FDCrossings", "fd_crossings", "kink_limit",
    "Choice", "SubgradientSet", "subgradient_set", "KinkAcceptance", "KinkAnalysis", "kink_analysis",
    "kink_acceptance", "FDAdjustment", "fd_kink_adjustment", "StudyKinks", "study_kinks",
    "directional_one_sided",
]

#: Working precision (bits) of condition values unless a caller asks for more.
DEFAULT_PREC = 192


# ---------------------------------------------------------------------------
# sites
# ---------------------------------------------------------------------------


class SiteKind(enum.Enum):
    """What happens at a site: the derivative jumps (KINK) or the loss stops being defined (DOMAIN)."""

    KINK = "kink"
    DOMAIN = "domain"


class SiteRule(enum.Enum):
    """The operation that makes a site."""

    RELU = "relu"
    ABS = "abs"
    MAXIMUM = "maximum"
    MAX = "max"
    FUNCTION_DOMAIN = "function-domain"
    DIVISION = "division"
    POWER = "power"
    PRODUCT = "product"


class Boundary(enum.Enum):
    """How the condition value of a site is read.

    ``KINK``: defined on both sides, not differentiable where the value is 0.
    ``POSITIVE``: the loss and its derivative exist only where the value is > 0.
    ``NONZERO``: they exist only where the value is != 0 (a pole).
    """

    KINK = "kink"
    POSITIVE = "positive"
    NONZERO = "nonzero"


@dataclass(frozen=True, eq=False)
class Site:
    """One non-smooth place of the loss graph, as an entry-wise condition on argument nodes.

    Attributes
    ----------
    kind : SiteKind
    rule : SiteRule
    node : Node
        The loss-graph node whose derivative is affected (``relu(Z1)``, ``maximum(a, b)``,
        ``log(1 - A2)``, a division, ...).
    arguments : tuple of Node
        The argument nodes whose values define the condition: ``(Z1,)`` for
        ``relu(Z1)``, ``(a, b)`` for ``maximum(a, b)`` (condition ``a - b``), the
        reduced array for ``max``, the denominator of a division, the base of a power.
    label : str
        ``node.label`` (where the site comes from in the case file), e.g.
        ``[define] A1: relu(Z1)``.
    name : str
        ``relu``, ``abs``, ``maximum``, ``minimum``, ``max``, ``log``, ``division``, ...
    condition : str
        The entry-wise condition in words: ``Z1 = 0``, ``a - delta = 0``,
        ``ties among the maxima of x``, ``1 - A2 = 0``.
    boundary : Boundary
    shape : tuple of int
        Shape of the condition value (the broadcast shape for ``maximum``; the
        input's shape for ``max``, whose value at entry ``i`` is ``x_i - max_{j != i} x_j``
        within its reduction group, 0 exactly at a tie).
    domain_text : str
        For DOMAIN sites, where the loss is defined: ``1 - A2 > 0``.
    argument_text : tuple of str
        Short names of the arguments (define names where there are some).
    axes : tuple of int or None
        Reduced axes of a ``max`` site.
    """

    kind: SiteKind
    rule: SiteRule
    node: Node
    arguments: tuple[Node, ...]
    label: str
    name: str
    condition: str
    boundary: Boundary
    shape: tuple[int, ...]
    domain_text: str = ""
    argument_text: tuple[str, ...] = ()
    axes: tuple[int, ...] | None = None
    extra_text: str = ""
    sources: tuple[tuple[str, tuple[Node, ...]] | None, ...] = ()

    @property
    def text(self) -> str:
        """``relu(Z1) at Z1 = 0``."""
        return f"{self._short()} at {self.condition}"

    def _short(self) -> str:
        a = self.argument_text
        if self.rule in (SiteRule.RELU, SiteRule.ABS, SiteRule.FUNCTION_DOMAIN):
            return f"{self.name}({a[0]})"
        if self.rule is SiteRule.MAXIMUM:
            return f"{self.name}({a[0]}, {a[1]})"
        if self.rule is SiteRule.MAX:
            return f"max({a[0]})"
        if self.rule is SiteRule.PRODUCT:
            return f"prod({a[0]})"
        if self.rule is SiteRule.POWER:
            return f"{_paren(a[0])}**{self.extra_text}"
        return f"division by {a[0]}"

    def _arg_at(self, k: int, entry: tuple[int, ...]) -> str:
        """Argument k at an entry, named through slices of a symbol where possible (``x[0, 2]``)."""
        src = self.sources[k] if k < len(self.sources) else None
        if src is not None:
            root, chain = src
            return _at(root, _through(chain, entry))
        text = self.argument_text[k]
        return _at(text if len(text) <= 40 else text[:37] + "...", entry)

    def describe(self, entry: Sequence[int] = ()) -> str:
        """The site at one entry of its condition, e.g. ``relu(Z1[2, 0])``.

        Parameters
        ----------
        entry : tuple of int
            An index into :attr:`shape` (``()`` for scalars).
        """
        entry = tuple(int(i) for i in entry)
        a = self.argument_text
        if self.rule in (SiteRule.RELU, SiteRule.ABS, SiteRule.FUNCTION_DOMAIN):
            return f"{self.name}({self._arg_at(0, entry)})"
        if self.rule is SiteRule.MAXIMUM:
            ea = _sub_entry(entry, self.arguments[0].shape, self.shape)
            eb = _sub_entry(entry, self.arguments[1].shape, self.shape)
            return f"{self.name}({self._arg_at(0, ea)}, {self._arg_at(1, eb)})"
        if self.rule is SiteRule.MAX:
            return f"max({a[0]}) at {self._arg_at(0, entry)}"
        if self.rule is SiteRule.PRODUCT:
            return f"prod({a[0]}) at {self._arg_at(0, entry)}"
        e0 = _sub_entry(entry, self.arguments[0].shape, self.shape)
        if self.rule is SiteRule.POWER:
            return f"{_paren(self._arg_at(0, e0))}**{self.extra_text}"
        return f"division by {self._arg_at(0, e0)}"

    def location(self, entry: Sequence[int] = ()) -> str:
        """Where the condition holds at one entry: ``Z1[2, 0]`` or ``a[3] = delta``."""
        entry = tuple(int(i) for i in entry)
        if self.rule is SiteRule.MAXIMUM:
            ea = _sub_entry(entry, self.arguments[0].shape, self.shape)
            eb = _sub_entry(entry, self.arguments[1].shape, self.shape)
            return f"{self._arg_at(0, ea)} = {self._arg_at(1, eb)}"
        return self._arg_at(0, _sub_entry(entry, self.arguments[0].shape, self.shape)
                            if self.rule in (SiteRule.DIVISION, SiteRule.POWER) else entry)

    def __repr__(self) -> str:
        return f"Site({self.kind.value}: {self.text!r}, label={self.label!r})"


_IDENT_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _is_simple(text: str) -> bool:
    return bool(text) and all(ch in _IDENT_CHARS or ch == "." for ch in text)


def _atomic(text: str) -> bool:
    """An identifier, a number, or a name followed by one bracket group spanning the rest (``f(.)``, ``x[.]``)."""
    if _is_simple(text) or text.replace(".", "", 1).lstrip("-").isdigit():
        return True
    head = 0
    while head < len(text) and (text[head] in _IDENT_CHARS or text[head] == "."):
        head += 1
    if head == 0 or head >= len(text) or text[head] not in "([" or text[-1] not in ")]":
        return False
    depth = 0
    for k in range(head, len(text)):
        depth += text[k] in "(["
        depth -= text[k] in ")]"
        if depth == 0 and k != len(text) - 1:
            return False
    return depth == 0


def _paren(text: str) -> str:
    return text if _atomic(text) else f"({text})"


def _idx(entry: Sequence[int]) -> str:
    return "" if not entry else "[" + ", ".join(str(int(i)) for i in entry) + "]"


def _at(text: str, entry: Sequence[int]) -> str:
    if not entry:
        return text
    return f"{text if _is_simple(text) else '(' + text + ')'}{_idx(entry)}"


def _sub_entry(entry: tuple[int, ...], arg_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The entry of a broadcast operand that produced ``entry`` of the broadcast result."""
    if not entry:
        return ()
    lead = len(out_shape) - len(arg_shape)
    tail = entry[lead:]
    return tuple(0 if n == 1 else int(i) for i, n in zip(tail, arg_shape))


def _through(chain: Sequence[Node], entry: tuple[int, ...]) -> tuple[int, ...]:
    """Map an entry of a sliced node back to the entry of the sliced array (GETITEM chain, outermost first)."""
    for node in chain:
        src = node.args[0]
        ids = np.arange(src.size, dtype=np.int64).reshape(src.shape)[decode_index(node.params)]
        flat = int(ids[entry]) if entry else int(ids)
        entry = tuple(int(i) for i in np.unravel_index(flat, src.shape)) if src.shape else ()
    return entry


def _source(node: Node, names: Mapping[int, str], *, negated: bool = False) -> tuple[str, tuple[Node, ...]] | None:
    """(symbol or define name, GETITEM chain) when ``node`` is a slice of a named node."""
    if negated:
        if node.op is not Op.NEG:
            return None
        node = node.args[0]
    chain = []
    while node.op is Op.GETITEM and node.id not in names:
        chain.append(node)
        node = node.args[0]
    if not chain or node.id not in names:
        return None
    return names[node.id], tuple(chain)


def _names(model: Model) -> dict[int, str]:
    names: dict[int, str] = {}
    for name, node in model.leaves.items():
        names.setdefault(node.id, name)
    for name, node in model.defines.items():
        names.setdefault(node.id, name)
    return names


def _text(node: Node, names: Mapping[int, str]) -> str:
    """A short readable name of a node: its define/symbol name, a constant, or its expression."""
    if node.id in names:
        return names[node.id]
    if node.op is Op.CONST:
        return node.label
    if node.op is Op.NEG:
        inner = _text(node.args[0], names)
        return f"-{inner}" if _is_simple(inner) else f"-({inner})"
    label = node.label
    for prefix in ("loss: ", "[define] "):
        if label.startswith(prefix):
            return label.split(": ", 1)[1] if ": " in label else label
    return label


def _negated_text(node: Node, names: Mapping[int, str]) -> str:
    """Text of -node for a node that is a negation (minimum is built as -maximum(-a, -b))."""
    if node.op is Op.NEG:
        return _text(node.args[0], names)
    if node.op is Op.CONST and node.params[0] == "rational":
        v = -Fraction(node.params[1], node.params[2])
        return str(v.numerator) if v.denominator == 1 else f"{v.numerator}/{v.denominator}"
    t = _text(node, names)
    return f"-{t}" if _is_simple(t) else f"-({t})"


def find_sites(model: Model) -> list[Site]:
    """Every kink and domain boundary of the loss graph that the variables can move.

    Parameters
    ----------
    model : Model

    Returns
    -------
    list of Site
        In topological order of the loss graph.  Sites whose arguments depend
        on no variable are left out (no direction can move them).

    Notes
    -----
    Kinks: ``relu``/``abs`` (``fn.smooth`` False) at argument 0; ``maximum(a, b)``
    at ``a - b = 0`` (``minimum`` is ``-maximum(-a, -b)``); ``max`` reductions at
    ties.  Domain boundaries: ``log``/``sqrt`` (argument > 0), ``log1p``
    (argument > -1), ``arcsin``/``arccos`` (``1 - x^2 > 0``), ``tan``
    (``cos x != 0``), denominators (``!= 0``), powers with a non-integer or
    variable exponent (base > 0) or a negative integer exponent (base != 0), and
    ``prod`` reductions (entries != 0, as the derivative divides by them).
    """
    names = _names(model)
    out: list[Site] = []
    for n in topological([model.loss]):
        if n.op is Op.UNARY:
            x = n.args[0]
            if not x.variables:
                continue
            fn = n.fn
            xt = _text(x, names)
            if not fn.smooth:
                rule = SiteRule.RELU if fn.name == "relu" else SiteRule.ABS
                out.append(Site(SiteKind.KINK, rule, n, (x,), n.label, fn.name, f"{xt} = 0", Boundary.KINK,
                                x.shape, argument_text=(xt,), sources=(_source(x, names),)))
            elif fn.domain is not None:
                out.append(_function_domain_site(n, x, xt, _source(x, names)))
        elif n.op is Op.MAXIMUM:
            a, b = n.args
            if not n.variables:
                continue
            short = n.label.split(": ", 1)[-1]
            is_min = short.startswith("minimum(") and all(
                arg.op is Op.NEG or (arg.op is Op.CONST and arg.params[0] == "rational") for arg in (a, b))
            if is_min:
                at, bt, name = _negated_text(a, names), _negated_text(b, names), "minimum"
            else:
                at, bt, name = _text(a, names), _text(b, names), "maximum"
            out.append(Site(SiteKind.KINK, SiteRule.MAXIMUM, n, (a, b), n.label, name,
                            f"{_paren(at)} - {_paren(bt)} = 0", Boundary.KINK, n.shape, argument_text=(at, bt),
                            sources=(_source(a, names, negated=is_min), _source(b, names, negated=is_min))))
        elif n.op is Op.MAX:
            x = n.args[0]
            axes = n.params[0]
            group = x.size if axes is None else int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
            if not x.variables or group < 2:
                continue
            xt = _text(x, names)
            out.append(Site(SiteKind.KINK, SiteRule.MAX, n, (x,), n.label, "max", f"ties among the maxima of {xt}",
                            Boundary.KINK, x.shape, argument_text=(xt,), axes=axes,
                            sources=(_source(x, names),)))
        elif n.op is Op.DIV:
            den = n.args[1]
            if not den.variables:
                continue
            dt = _text(den, names)
            out.append(Site(SiteKind.DOMAIN, SiteRule.DIVISION, n, (den,), n.label, "division", f"{dt} = 0",
                            Boundary.NONZERO, n.shape, domain_text=f"{dt} != 0", argument_text=(dt,),
                            sources=(_source(den, names),)))
        elif n.op is Op.POW:
            base, ex = n.args
            if not base.variables:
                continue
            bt = _text(base, names)
            et = _text(ex, names)
            boundary = Boundary.POSITIVE
            if ex.op is Op.CONST and not ex.variables:
                v = const_value(ex)
                if isinstance(v, Fraction) and v.denominator == 1:
                    if v >= 0:
                        continue
                    boundary = Boundary.NONZERO
            dom = f"{bt} > 0" if boundary is Boundary.POSITIVE else f"{bt} != 0"
            out.append(Site(SiteKind.DOMAIN, SiteRule.POWER, n, (base,), n.label, "power", f"{bt} = 0", boundary,
                            n.shape, domain_text=dom, argument_text=(bt,), extra_text=_paren(et),
                            sources=(_source(base, names),)))
        elif n.op is Op.PROD:
            x = n.args[0]
            if not x.variables:
                continue
            xt = _text(x, names)
            out.append(Site(SiteKind.DOMAIN, SiteRule.PRODUCT, n, (x,), n.label, "prod", f"{xt} = 0",
                            Boundary.NONZERO, x.shape, domain_text=f"{xt} != 0 (the derivative divides by it)",
                            argument_text=(xt,), sources=(_source(x, names),)))
    return out


def _function_domain_site(n: Node, x: Node, xt: str, source) -> Site:
    fn = n.fn
    name = fn.name
    boundary = Boundary.POSITIVE
    if name == "log1p":
        cond, dom = f"1 + {_paren(xt)} = 0", f"{_paren(xt)} > -1"
    elif name in ("arcsin", "arccos"):
        cond, dom = f"|{xt}| = 1", f"|{xt}| < 1"
    elif name == "tan":
        cond, dom, boundary = f"cos({xt}) = 0", f"cos({xt}) != 0", Boundary.NONZERO
    else:
        cond, dom = f"{xt} = 0", f"{xt} > 0"
    return Site(SiteKind.DOMAIN, SiteRule.FUNCTION_DOMAIN, n, (x,), n.label, name, cond, boundary, x.shape,
                domain_text=dom, argument_text=(xt,), sources=(source,))


# ---------------------------------------------------------------------------
# condition values
# ---------------------------------------------------------------------------


def _is_object(a: np.ndarray) -> bool:
    return a.dtype == object


def _cos(x: np.ndarray) -> np.ndarray:
    if _is_object(x):
        return np.frompyfunc(mpmath.cos, 1, 1)(x).astype(object)
    return np.cos(x)


def _gap(x: np.ndarray, axes: tuple[int, ...] | None) -> np.ndarray:
    """``x_i - max_{j != i} x_j`` within each reduction group (batched ``x``); 0 exactly at ties."""
    nd = x.ndim - 1
    red = tuple(range(1, nd + 1)) if axes is None else tuple(a + 1 for a in axes)
    kept = tuple(a for a in range(1, nd + 1) if a not in red)
    perm = (0,) + kept + red
    xt = np.transpose(x, perm)
    shp = xt.shape
    m = int(np.prod([x.shape[a] for a in red], dtype=np.int64))
    flat = np.ascontiguousarray(xt).reshape(shp[:1 + len(kept)] + (m,))
    s = np.sort(flat, axis=-1)
    top1, top2 = s[..., -1:], s[..., -2:-1]
    is_top = np.asarray(flat == top1, dtype=bool)
    gap = flat - np.where(is_top, top2, top1)
    return np.transpose(gap.reshape(shp), np.argsort(perm))


def _condition(site: Site, args: Sequence[np.ndarray]) -> np.ndarray:
    """Condition values ``(B, *site.shape)`` from the batched argument values (mp objects or floats)."""
    nd = len(site.shape)
    r = site.rule
    if r in (SiteRule.RELU, SiteRule.ABS, SiteRule.PRODUCT):
        v = args[0]
    elif r is SiteRule.MAXIMUM:
        # minimum(a, b) is -maximum(-a, -b): its arguments are -a, -b and a - b = (-b) - (-a)
        v = _align(args[0], nd) - _align(args[1], nd) if site.name == "maximum" else \
            _align(args[1], nd) - _align(args[0], nd)
    elif r is SiteRule.MAX:
        v = _gap(args[0], site.axes)
    elif r is SiteRule.FUNCTION_DOMAIN:
        x = args[0]
        name = site.name
        if name == "log1p":
            v = x + 1
        elif name in ("arcsin", "arccos"):
            v = 1 - x * x
        elif name == "tan":
            v = _cos(x)
        else:
            v = x
    else:  # DIVISION, POWER: the one argument, broadcast to the node's shape
        v = _align(args[0], nd)
    return np.broadcast_to(v, (v.shape[0],) + site.shape)


def _arg_nodes(sites: Sequence[Site]) -> list[Node]:
    seen: dict[int, Node] = {}
    for s in sites:
        for a in s.arguments:
            seen.setdefault(a.id, a)
    return list(seen.values())


def _eval_safe(nodes: Sequence[Node], leaves: Mapping[str, np.ndarray], backend, B: int
               ) -> tuple[list[np.ndarray], dict[int, str]]:
    """Evaluate a batch; rows that leave the domain of some sub-expression are reported, not raised."""
    try:
        vals = evaluate(nodes, leaves, backend)
        return [np.broadcast_to(v, (B,) + n.shape) for v, n in zip(vals, nodes)], {}
    except DomainError:
        pass
    outs = [np.empty((B,) + n.shape, dtype=object) for n in nodes]
    failed: dict[int, str] = {}
    for b in range(B):
        one = {k: (v[b:b + 1] if v.shape[0] > 1 else v) for k, v in leaves.items()}
        try:
            vals = evaluate(nodes, one, backend)
        except DomainError as exc:
            failed[b] = str(exc)
            continue
        for o, v in zip(outs, vals):
            o[b] = v[0]
    return outs, failed


def _conditions(sites: Sequence[Site], leaves: Mapping[str, np.ndarray], backend, B: int
                ) -> tuple[list[np.ndarray], dict[int, str]]:
    nodes = _arg_nodes(sites)
    if not nodes:
        return [], {}
    vals, failed = _eval_safe(nodes, leaves, backend, B)
    by_id = {n.id: v for n, v in zip(nodes, vals)}
    if not failed:
        return [_condition(s, [by_id[a.id] for a in s.arguments]) for s in sites], {}
    out = []
    good = [b for b in range(B) if b not in failed]
    for s in sites:
        c = np.empty((B,) + s.shape, dtype=object)
        if good:
            sub = _condition(s, [by_id[a.id][good] for a in s.arguments])
            c[good] = sub
        out.append(c)
    return out, failed


def _mp_base(model: Model, point: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Exact mpmath leaves with a batch axis of 1 (conversions cached by the model: exact at any precision)."""
    return {name: model.mp_values(name, np.asarray(point[name]))[None, ...] for name in model.leaves}


def _float_base(model: Model, point: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: np.asarray(point[name], dtype=np.float64)[None, ...] for name in model.leaves}


def site_values(model: Model, point: Mapping[str, np.ndarray], sites: Sequence[Site],
                prec: int = DEFAULT_PREC) -> list[np.ndarray]:
    """Exact condition values of each site at the point.

    Parameters
    ----------
    model : Model
    point : mapping of str to ndarray
        Every symbol's value (float arrays; converted exactly).
    sites : sequence of Site
    prec : int
        Working precision in bits (scoped).

    Returns
    -------
    list of ndarray
        One object array of ``mpf`` per site, shape ``(1, *site.shape)`` (batch axis first).
        All argument nodes are evaluated in one :func:`~verigrad.expr.graph.evaluate` call.

    Raises
    ------
    DomainError
        If the point itself is outside the loss's domain.
    """
    with mpmath.workprec(prec):
        base = _mp_base(model, point)
        nodes = _arg_nodes(sites)
        vals = evaluate(nodes, base, MPBackend())
        by_id = {n.id: v for n, v in zip(nodes, vals)}
        return [np.asarray(_condition(s, [by_id[a.id] for a in s.arguments]), dtype=object) for s in sites]


def _sgn(v) -> int:
    if v is None:
        return 2  # unknown (the evaluation left a domain): never equal to a real sign
    if v > 0:
        return 1
    if v < 0:
        return -1
    return 0


_SGN = np.frompyfunc(_sgn, 1, 1)


def _signs(a: np.ndarray) -> np.ndarray:
    if _is_object(a):
        return np.asarray(_SGN(a), dtype=np.int64)
    with np.errstate(invalid="ignore"):
        s = np.sign(a).astype(np.int64)
    s[~np.isfinite(a)] = 2
    return s


def _violates(site: Site, base_sign: np.ndarray, node_sign: np.ndarray) -> np.ndarray:
    """Entries where a node is on another side of the site than the point (or outside the domain)."""
    if site.boundary is Boundary.POSITIVE:
        return node_sign != 1
    return node_sign != base_sign


# ---------------------------------------------------------------------------
# distances along a direction
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SiteDistance:
    """How far along a direction each entry of a site's condition is from changing sign.

    Attributes
    ----------
    site : Site
    value : ndarray of mpf
        Exact condition values at the point, ``site.shape``.
    slope : ndarray of float64
        d value / dt along the direction (exact directional derivative, rounded).
    crossing : ndarray of float64
        Signed t of the linearised sign change ``-value / slope``; ``inf`` where the
        condition does not depend on the direction; 0 where the value is exactly 0.
    distance : ndarray of float64
        ``|crossing|``.
    verified : ndarray of bool
        The sign change was confirmed by exact evaluation at ``t (1 -+ 2^-12)``.
    """

    site: Site
    value: np.ndarray
    slope: np.ndarray
    crossing: np.ndarray
    distance: np.ndarray
    verified: np.ndarray

    def nearest(self) -> tuple[tuple[int, ...], float]:
        """The entry nearest to a sign change and its distance (``((), inf)`` if none)."""
        if self.distance.size == 0 or not np.any(np.isfinite(self.distance)):
            return (), math.inf
        flat = int(np.nanargmin(self.distance.reshape(-1)))
        idx = tuple(int(i) for i in np.unravel_index(flat, self.distance.shape)) if self.distance.shape else ()
        return idx, float(self.distance.reshape(-1)[flat])


def _direction_rows(base: Mapping[str, np.ndarray], entries: Sequence[tuple[str, int, Fraction]],
                    ts: Sequence[Any]) -> list[dict]:
    rows = []
    for t in ts:
        row = {}
        for name, i, e in entries:
            x = base[name].reshape(-1)[i]
            row[(name, i)] = x + t * (mpmath.mpf(e.numerator) / e.denominator)
        rows.append(row)
    return rows


def distance_along(model: Model, point: Mapping[str, np.ndarray], direction: Direction,
                   sites: Sequence[Site] | None = None, *, prec: int = 256, verify: bool = True
                   ) -> list[SiteDistance]:
    """Distance along ``direction`` at which each site entry's condition changes sign.

    Parameters
    ----------
    model : Model
    point : mapping of str to ndarray
        The point x_p (float arrays, converted exactly).
    direction : Direction
        A coordinate or random direction e (:mod:`verigrad.studies`).
    sites : sequence of Site, optional
        Default :func:`find_sites`.
    prec : int
        Working precision in bits.
    verify : bool
        Confirm each linearised crossing by exact evaluation just before and after it.

    Returns
    -------
    list of SiteDistance
        One per site, in the order of ``sites``.

    Notes
    -----
    With v(t) the condition at x_p + t e, the slope is the central difference
    ``(v(tau) - v(-tau)) / (2 tau)`` at ``tau = 2^-(prec/4)`` (exact to
    O(tau^2) relative, far below what a distance needs) and the crossing is
    ``t* = -v(0) / v'(0)``; a condition that does not depend on the direction
    has slope exactly 0 and distance ``inf``.  The crossing is *verified* when
    ``v(t*(1 - 2^-12))`` has the sign of ``v(0)`` and ``v(t*(1 + 2^-12))`` does not.
    """
    sites = find_sites(model) if sites is None else list(sites)
    entries = direction.entries()
    out: list[SiteDistance] = []
    if not sites:
        return out
    with mpmath.workprec(prec):
        base = _mp_base(model, point)
        scale = max([1.0] + [abs(float(point[n].reshape(-1)[i])) for n, i, _ in entries])
        tau = mpmath.ldexp(1, -(prec // 4) + int(math.ceil(math.log2(scale))))
        rows = _direction_rows(base, entries, [mpmath.mpf(0), tau, -tau])
        conds, failed = _conditions(sites, batched_leaves(base, rows), MPBackend(), 3)
        if failed:
            raise DomainError(f"cannot evaluate the sites next to the point: {next(iter(failed.values()))}")
        results = []
        for site, c in zip(sites, conds):
            v0, vp, vm = c[0, ...], c[1, ...], c[2, ...]
            slope = np.asarray((vp - vm) / (2 * tau), dtype=object)
            crossing = np.full(site.shape, math.inf)
            sl = np.zeros(site.shape)
            for idx in np.ndindex(*site.shape):
                d = slope[idx]
                sl[idx] = float(d)
                if not d:
                    continue
                crossing[idx] = 0.0 if not v0[idx] else float(-v0[idx] / d)
            results.append((site, np.asarray(v0, dtype=object), sl, crossing))
        verified = [np.asarray(cr == 0.0, dtype=bool) for _, _, _, cr in results]
        if verify:
            items = [(k, idx) for k, (_, _, _, cr) in enumerate(results) for idx in np.ndindex(*cr.shape)
                     if math.isfinite(cr[idx]) and cr[idx] != 0.0]
            if items:
                delta = mpmath.ldexp(1, -12)
                ts = []
                for k, idx in items:
                    t = mpmath.mpf(results[k][3][idx])
                    ts.extend([t * (1 - delta), t * (1 + delta)])
                rows = _direction_rows(base, entries, ts)
                vals, failed = _conditions(sites, batched_leaves(base, rows), MPBackend(), len(rows))
                for j, (k, idx) in enumerate(items):
                    site = results[k][0]
                    s0 = _sgn(results[k][1][idx])
                    before = None if 2 * j in failed else vals[k][(2 * j,) + idx]
                    after = None if 2 * j + 1 in failed else vals[k][(2 * j + 1,) + idx]
                    ok_before = before is not None and _sgn(before) == s0
                    ok_after = (2 * j + 1 in failed) or (after is not None and _sgn(after) != s0)
                    verified[k][idx] = bool(ok_before and ok_after)
        for (site, v0, sl, cr), ver in zip(results, verified):
            out.append(SiteDistance(site, v0, sl, cr, np.abs(cr), np.asarray(ver, dtype=bool)))
    return out


# ---------------------------------------------------------------------------
# stencil crossings
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Crossing:
    """A stencil node on another side of a site than the point (or outside the domain).

    Attributes
    ----------
    site : Site or None
        None when evaluating the site's argument itself left a domain (the message says where).
    entry : tuple of int
        Entry of the site's condition.
    where : str
        What was perturbed: a stencil label (``central h=1e-3``) or a coordinate (``b1[2, 0]``).
    nodes : tuple of float
        Offsets t of the stencil nodes on the other side.
    distance : float
        |t| of the sign change nearest to the point along the direction (0 on a kink),
        located exactly between the point and the nearest crossing node.
    on_kink : bool
        The point itself is on the kink (condition exactly 0): every stencil straddles it.
    leaves_domain : bool
        A node is outside the loss's domain.
    message : str
    """

    site: Site | None
    entry: tuple[int, ...]
    where: str
    nodes: tuple[float, ...]
    distance: float
    on_kink: bool
    leaves_domain: bool
    message: str


def _sci(x: float) -> str:
    """``4.0e-4``: two significant digits, compact exponent."""
    if not math.isfinite(x):
        return str(x)
    mant, exp = f"{x:.1e}".split("e")
    return f"{mant}e{int(exp)}"


def _crossing_message(prefix: str, site: Site | None, entry, distance: float, on_kink: bool,
                      leaves_domain: bool, failure: str = "") -> str:
    if site is None:
        return f"{prefix} leaves the domain of the loss: {failure}"
    where = site.describe(entry)
    if on_kink:
        return (f"{prefix} straddles {where}: the point is on the kink ({site.location(entry)} "
                f"{'= 0 ' if site.rule is not SiteRule.MAXIMUM else ''}exactly)").replace("  ", " ")
    if leaves_domain:
        return f"{prefix} leaves the domain of {where} ({site.domain_text}) at distance {_sci(distance)}"
    return f"{prefix} crosses {where} at distance {_sci(distance)}"


def _round_fraction(q: Fraction, dtype: np.dtype) -> Fraction:
    """The nearest value of ``dtype`` to an exact rational, as a Fraction."""
    if np.dtype(dtype) == np.float64:
        return Fraction(float(q))
    with mpmath.workprec(24):
        v = mpmath.mpf(q.numerator) / q.denominator
    return Fraction(float(np.float32(float(v))))


def _locate(sites: Sequence[Site], base: Mapping[str, np.ndarray], entries,
            items: list[tuple[int, tuple, Any, Any, Any]], *, iterations: int = 48,
            rtol: float = 2.0**-30) -> list[float]:
    """Exact sign-change location of each item (site k, entry, v0, t_hi, v_hi) on [0, t_hi].

    Illinois (modified regula falsi) on the exact condition along the line;
    call inside a precision scope.  Returns |t| of the located change.
    """
    n = len(items)
    a = [mpmath.mpf(0)] * n
    fa = [it[2] for it in items]
    b = [mpmath.mpf(it[3]) for it in items]
    fb = [it[4] for it in items]
    side = [0] * n
    root: list[Any] = [None] * n
    for j in range(n):
        if fb[j] is not None and not fb[j]:
            root[j] = b[j]
    for _ in range(iterations):
        active = [j for j in range(n) if root[j] is None and abs(b[j] - a[j]) > rtol * abs(items[j][3])]
        if not active:
            break
        cs = []
        for j in active:
            if fb[j] is None or fb[j] == fa[j]:
                cs.append((a[j] + b[j]) / 2)
            else:
                cs.append((a[j] * fb[j] - b[j] * fa[j]) / (fb[j] - fa[j]))
        rows = _direction_rows(base, entries, cs)
        vals, failed = _conditions(sites, batched_leaves(base, rows), MPBackend(), len(rows))
        for r, (j, c) in enumerate(zip(active, cs)):
            k, idx = items[j][0], items[j][1]
            fc = None if r in failed else vals[k][(r,) + idx]
            if fc is not None and not fc:
                root[j] = c
                continue
            beyond = fc is None or (_violates(sites[k], np.array(_sgn(items[j][2])), np.array(_sgn(fc))).item())
            if beyond:
                b[j], fb[j] = c, fc
                if side[j] == -1 and fa[j] is not None:
                    fa[j] = fa[j] / 2
                side[j] = -1
            else:
                a[j], fa[j] = c, fc
                if side[j] == 1 and fb[j] is not None:
                    fb[j] = fb[j] / 2
                side[j] = 1
    return [float(abs(root[j])) if root[j] is not None else float(abs((a[j] + b[j]) / 2)) for j in range(n)]


def _prec_for(ts: Sequence[Fraction], point_scale: float) -> int:
    smallest = min((abs(t) for t in ts if t), default=Fraction(1))
    gap = max(0.0, math.log2(max(point_scale, 1.0)) - math.log2(float(smallest)))
    return int(DEFAULT_PREC + 64 + gap)


def stencil_crossings(model: Model, point: Mapping[str, np.ndarray], direction: Direction,
                      nodes_t: Sequence[Fraction | float], sites: Sequence[Site] | None = None, *,
                      label: str = "", dtype: Dtype | None = None, prec: int | None = None,
                      locate: bool = True) -> list[Crossing]:
    """Exact check: which sites a stencil's nodes put on another side than the point.

    Parameters
    ----------
    model : Model
    point : mapping of str to ndarray
        x_p.
    direction : Direction
    nodes_t : sequence of Fraction or float
        Offsets t of the nodes x_p + t e, normally ``c_k h_p`` exactly.
    sites : sequence of Site, optional
        Default :func:`find_sites`.
    label : str
        What the stencil is, for messages (``central h=1e-3``).
    dtype : Dtype, optional
        Round each node entry to the dtype once, as the finite difference does
        (``y_k = fl_p(x_p + c_k h_p e)``); default: the exact nodes.
    prec : int, optional
        Working precision; default enough for the smallest offset.
    locate : bool
        Locate each sign change exactly (Illinois iteration on the exact line);
        with False the distance is the secant estimate between the point and the node.

    Returns
    -------
    list of Crossing
        One per (site, entry) with a node on the other side, nearest first.
        Message: ``stencil of central h=1e-3 crosses relu(Z1[2, 0]) at distance 4.0e-4``.

    Notes
    -----
    A node crosses a KINK or NONZERO site when the sign of its condition
    differs from the point's (for a kink the point's sign may be 0: the point
    is on the kink), and a POSITIVE site when its condition is not > 0.  Only
    the nodes are checked: for a condition that is not monotone along the
    line, a double crossing between two nodes is not seen.
    """
    sites = find_sites(model) if sites is None else list(sites)
    if not sites or not nodes_t:
        return []
    ts = [t if isinstance(t, Fraction) else Fraction(float(t)) for t in nodes_t]
    entries = direction.entries()
    pscale = max([1.0] + [abs(float(point[n].reshape(-1)[i])) for n, i, _ in entries])
    prec = prec or _prec_for(ts, pscale)
    prefix = f"stencil of {label}" if label else "stencil"
    out: list[Crossing] = []
    with mpmath.workprec(prec):
        base = _mp_base(model, point)
        v0 = _conditions(sites, base, MPBackend(), 1)[0]
        rows = []
        for t in ts:
            row = {}
            for name, i, e in entries:
                q = Fraction(float(point[name].reshape(-1)[i])) + t * e
                if dtype is not None:
                    q = _round_fraction(q, dtype.numpy)
                row[(name, i)] = mpmath.mpf(q.numerator) / q.denominator
            rows.append(row)
        vals, failed = _conditions(sites, batched_leaves(base, rows), MPBackend(), len(rows))
        pending: list[tuple[int, tuple, Any, Any, Any]] = []
        found: list[tuple[int, tuple, tuple[float, ...], bool, bool]] = []
        for k, site in enumerate(sites):
            s0 = _signs(np.asarray(v0[k][0, ...], dtype=object))
            hit = np.zeros((len(ts),) + site.shape, dtype=bool)
            for r in range(len(ts)):
                if r in failed:
                    continue
                hit[r] = _violates(site, s0, _signs(np.asarray(vals[k][r, ...], dtype=object)))
            for idx in zip(*np.nonzero(np.any(hit, axis=0))) if site.shape else ([()] if np.any(hit) else []):
                idx = tuple(int(i) for i in idx)
                rs = [r for r in range(len(ts)) if hit[(r,) + idx]]
                on_kink = site.kind is SiteKind.KINK and int(s0[idx]) == 0
                leaves = site.kind is SiteKind.DOMAIN
                found.append((k, idx, tuple(float(ts[r]) for r in rs), on_kink, leaves))
                if not on_kink:
                    r = min(rs, key=lambda r: abs(ts[r]))
                    pending.append((len(found) - 1, idx, r, None, None))
        # exact location of each sign change between the point and its nearest crossing node
        loc_items = []
        for fi, idx, r, _, _ in pending:
            k = found[fi][0]
            t = ts[r]
            loc_items.append((k, idx, v0[k][(0,) + idx], mpmath.mpf(t.numerator) / t.denominator,
                              vals[k][(r,) + idx]))
        if locate:
            dist = _locate(sites, base, entries, loc_items) if loc_items else []
        else:
            dist = [float(abs(t) * abs(f0) / abs(f0 - ft)) if ft is not None and f0 != ft else float(abs(t))
                    for _, _, f0, t, ft in loc_items]
        dmap = {p[0]: d for p, d in zip(pending, dist)}
        for fi, (k, idx, nodes, on_kink, leaves) in enumerate(found):
            d = 0.0 if on_kink else dmap[fi]
            out.append(Crossing(sites[k], idx, label, nodes, d, on_kink, leaves,
                                _crossing_message(prefix, sites[k], idx, d, on_kink, leaves)))
        for r, msg in failed.items():
            out.append(Crossing(None, (), label, (float(ts[r]),), math.nan, False, True,
                                _crossing_message(prefix, None, (), math.nan, False, True, msg)))
    out.sort(key=lambda c: (c.distance if math.isfinite(c.distance) else math.inf))
    return out


# ---------------------------------------------------------------------------
# points on a kink
# ---------------------------------------------------------------------------


class AtKink(NamedTuple):
    """A kink site and the entries of its condition that are exactly 0 at the point."""

    site: Site
    entries: tuple[tuple[int, ...], ...]


def _zero_mask(lo: np.ndarray, hi: np.ndarray, prec: int) -> np.ndarray:
    """Exact zeros: 0 at 2*prec bits, or a value that shrinks with the precision (rounding noise of a 0)."""
    out = np.zeros(hi.shape, dtype=bool)
    with mpmath.workprec(2 * prec):
        shrink = mpmath.ldexp(1, -(prec // 2))
        for idx in np.ndindex(*hi.shape):
            a, b = lo[idx], hi[idx]
            if not b:
                out[idx] = True
            elif abs(b) <= abs(a) * shrink and abs(a) <= shrink:
                out[idx] = True
    return out


def at_kink(model: Model, point: Mapping[str, np.ndarray], *, sites: Sequence[Site] | None = None,
            prec: int = DEFAULT_PREC) -> list[AtKink]:
    """Kink sites whose condition is exactly 0 at the point, with those entries.

    Parameters
    ----------
    model : Model
    point : mapping of str to ndarray
    sites : sequence of Site, optional
        Default :func:`find_sites`; domain sites are ignored.
    prec : int
        The conditions are evaluated at ``prec`` and ``2 prec`` bits; an entry is
        exactly 0 when it is 0 at ``2 prec`` bits, or when it is below
        ``2^-(prec/2)`` and shrinks by another ``2^-(prec/2)`` with the doubled
        precision (the rounding residue of an exact 0, as in ``sum(w * x) + b``
        of dyadic data).

    Returns
    -------
    list of AtKink
        ``(site, entries)``: a relu input exactly 0, an abs argument 0 (an L1
        weight at 0), a ``maximum`` with equal arguments (Huber at its switch),
        the tied entries of a ``max``.
    """
    sites = find_sites(model) if sites is None else list(sites)
    kinks = [s for s in sites if s.kind is SiteKind.KINK]
    if not kinks:
        return []
    lo = site_values(model, point, kinks, prec=prec)
    hi = site_values(model, point, kinks, prec=2 * prec)
    out = []
    for s, a, b in zip(kinks, lo, hi):
        zero = _zero_mask(a[0, ...], b[0, ...], prec)
        entries = tuple(tuple(int(i) for i in idx) for idx in np.argwhere(zero))
        if entries:
            out.append(AtKink(s, entries))
    return out


# ---------------------------------------------------------------------------
# the set of valid gradients at a kink
# ---------------------------------------------------------------------------


def _frac_text(q: Fraction) -> str:
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"


def _num_text(q: Fraction) -> str:
    if q.denominator <= 12:
        return _frac_text(q)
    return f"{float(q):.6g}"


@dataclass(frozen=True, eq=False)
class Choice:
    """One kink entry (or one tie group of a ``max``) where the derivative is a choice.

    The choice is a point of a simplex: barycentric ``weights`` over the
    ``vertices``.  ``relu``: vertices ``relu'(0) = 0`` and ``= 1``; ``abs``:
    ``abs'(0) = -1`` and ``= 1``; ``maximum``: all to the first argument, all to
    the second; ``max``: all to one of the tied entries.

    Attributes
    ----------
    site : Site
    entry : tuple of int
        Entry of the site's condition (for ``max``, the first tied entry).
    members : tuple of tuple of int
        The tied input entries of a ``max`` group; ``(entry,)`` otherwise.
    nodes : tuple of Node or None
        The gradient-graph nodes that carry the choice (``step(Z1)``,
        ``sign(w)``, the two tie weights of a ``maximum``, the argmax weights).
    base : tuple of Fraction
        Weights of the point-value convention (``relu'(0) = 0``, ``abs'(0) = 0``,
        ties split equally).
    """

    site: Site
    entry: tuple[int, ...]
    members: tuple[tuple[int, ...], ...]
    nodes: tuple[Node | None, ...]
    base: tuple[Fraction, ...]

    @property
    def size(self) -> int:
        return len(self.base)

    def vertex(self, k: int) -> tuple[Fraction, ...]:
        return tuple(Fraction(int(j == k)) for j in range(self.size))

    def assignments(self, w: Sequence[Fraction]) -> list[tuple[Node, tuple[int, ...], Fraction]]:
        """Values of the carrying nodes at ``entry`` for weights ``w``."""
        r = self.site.rule
        if r is SiteRule.RELU:
            return [(self.nodes[0], self.entry, w[1])]
        if r is SiteRule.ABS:
            return [(self.nodes[0], self.entry, w[1] - w[0])]
        if r is SiteRule.MAXIMUM:
            return [(n, self.entry, wk) for n, wk in zip(self.nodes, w) if n is not None]
        return [(self.nodes[0], m, wk) for m, wk in zip(self.members, w)]

    def where(self) -> str:
        if self.site.rule is SiteRule.MAX:
            return ", ".join(self.site._arg_at(0, m) for m in self.members)
        return self.site.location(self.entry)

    def describe(self, w: Sequence[Fraction]) -> str:
        """The convention ``w`` stands for, without the location: ``relu'(0) = 0 (the left derivative of relu)``."""
        r = self.site.rule
        if r is SiteRule.RELU:
            s = w[1]
            note = {0: " (the left derivative of relu)", 1: " (the right derivative of relu)"}.get(s, "")
            return f"relu'(0) = {_num_text(s)}{note or ' (in [0, 1])'}"
        if r is SiteRule.ABS:
            u = w[1] - w[0]
            note = {0: " (sign(0) = 0)", 1: " (the right derivative of abs)", -1: " (the left derivative of abs)"}
            return f"abs'(0) = {_num_text(u)}{note.get(u, ' (in [-1, 1])')}"
        if r is SiteRule.MAXIMUM:
            a, b = self.site.argument_text
            if w[0] == 1:
                return f"{self.site.name} tie: all to its first argument" + (f" ({a})" if len(a) <= 24 else "")
            if w[1] == 1:
                return f"{self.site.name} tie: all to its second argument" + (f" ({b})" if len(b) <= 24 else "")
            return f"{self.site.name} tie split {_num_text(w[0])} : {_num_text(w[1])}"
        if all(x == w[0] for x in w):
            return f"max tie split 1/{len(w)} each"
        if sum(1 for x in w if x) == 1:
            k = next(i for i, x in enumerate(w) if x)
            return f"max tie: all to {self.site._arg_at(0, self.members[k])}"
        return "max tie split " + " : ".join(_num_text(x) for x in w)


@dataclass(frozen=True, eq=False)
class SubgradientSet:
    """The valid gradients at a point on kinks: one choice per kink entry, through the chain rule.

    Attributes
    ----------
    choices : tuple of Choice
        Kink entries whose choice changes the gradient.
    continuous : tuple of Choice
        Kink entries where every choice gives the same gradient (the derivative
        is continuous there, e.g. Huber at its switch).
    names : tuple of str
        Variables, in the order of the flattened gradient.
    base : ndarray of mpf
        The flattened gradient at the point-value convention, shape ``(N,)``.
    effects : ndarray of float64
        ``(N, V)``: column ``(j, v)`` is ``G(choice j at vertex v) - G(base)``.
    columns : tuple of (int, int)
        ``(choice, vertex)`` of each column of ``effects``.
    affected : ndarray of bool
        ``(N,)``: entries some choice changes.
    interacting : bool
        Some kink entries are nested (the gradient is not affine in the
        choices); the set is then its linearisation around ``base``.
    precision : int
    """

    model: Model
    point: dict[str, np.ndarray]
    choices: tuple[Choice, ...]
    continuous: tuple[Choice, ...]
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    base: np.ndarray
    effects: np.ndarray
    columns: tuple[tuple[int, int], ...]
    affected: np.ndarray
    interacting: bool
    precision: int

    def flat_index(self) -> list[tuple[str, int]]:
        """(variable, flat index) of every entry of the flattened gradient."""
        return [(n, i) for n, s in zip(self.names, self.shapes) for i in range(int(np.prod(s, dtype=np.int64)))]

    def affected_entries(self) -> list[tuple[str, int]]:
        fi = self.flat_index()
        return [fi[k] for k in np.flatnonzero(self.affected)]

    def evaluate(self, weights: Sequence[Sequence[Fraction]], *, dtype: np.dtype | None = None
                 ) -> dict[str, np.ndarray]:
        """The gradient with every choice at ``weights`` (exact mpmath, or naive in ``dtype``).

        Parameters
        ----------
        weights : sequence of sequence of Fraction
            One weight vector per choice of :attr:`choices` (continuous choices stay at their base).
        dtype : numpy dtype, optional
            Evaluate the gradient expression in this float dtype (the float
            baseline of the convention); default mpmath at :attr:`precision`.
        """
        assigns = [a for c, w in zip(self.choices, weights) for a in c.assignments(w)]
        assigns += [a for c in self.continuous for a in c.assignments(c.base)]
        nodes = [self.model.gradient[n] for n in self.names]
        if dtype is None:
            with mpmath.workprec(self.precision):
                leaves = _mp_base(self.model, self.point)
                ov = _overrides([list(assigns)], lambda q: mpmath.mpf(q.numerator) / q.denominator)
                vals = _evaluate_with(nodes, leaves, MPBackend(), ov, 1)
            return {n: np.asarray(v[0, ...], dtype=object) for n, v in zip(self.names, vals)}
        dt = np.dtype(dtype)
        leaves = {n: np.asarray(self.point[n]).astype(dt)[None, ...] for n in self.model.leaves}
        ov = _overrides([list(assigns)], lambda q: dt.type(float(q)))
        with np.errstate(all="ignore"):
            vals = _evaluate_with(nodes, leaves, FloatBackend(dt), ov, 1)
        return {n: np.asarray(v[0, ...], dtype=dt) for n, v in zip(self.names, vals)}


def _overrides(rows: Sequence[Sequence[tuple[Node, tuple, Fraction]]], convert: Callable[[Fraction], Any]
               ) -> dict[int, list[tuple[int, tuple, Any]]]:
    out: dict[int, list[tuple[int, tuple, Any]]] = {}
    for b, row in enumerate(rows):
        for node, idx, val in row:
            out.setdefault(node.id, []).append((b, tuple(idx), convert(val)))
    return out


def _evaluate_with(nodes: Sequence[Node], leaves: Mapping[str, np.ndarray], backend,
                   overrides: Mapping[int, list[tuple[int, tuple, Any]]], B: int) -> list[np.ndarray]:
    """:func:`verigrad.expr.graph.evaluate` with some entries of some nodes replaced, per batch row."""
    values: dict[int, np.ndarray] = {}
    for n in topological(nodes):
        v = eval_node(n, [values[a.id] for a in n.args], leaves, backend)
        if n.id in overrides:
            v = np.array(np.broadcast_to(v, (B,) + n.shape))
            for b, idx, val in overrides[n.id]:
                v[(b,) + idx] = val
        values[n.id] = v
    return [np.broadcast_to(values[o.id], (B,) + o.shape) for o in nodes]


def _carriers(model: Model) -> dict[str, dict]:
    steps: dict[int, Node] = {}
    signs: dict[int, Node] = {}
    ties: dict[tuple[int, int], Node] = {}
    argmax: dict[tuple[int, Any], Node] = {}
    for n in topological(list(model.gradient.values())):
        if n.op is Op.UNARY and n.params[0] == "step":
            steps[n.args[0].id] = n
        elif n.op is Op.UNARY and n.params[0] == "sign":
            signs[n.args[0].id] = n
        elif n.op is Op.TIE_WEIGHT:
            ties[(n.args[0].id, n.args[1].id)] = n
        elif n.op is Op.ARGMAX_WEIGHT:
            argmax[(n.args[0].id, n.params[0])] = n
    return {"step": steps, "sign": signs, "tie": ties, "argmax": argmax}


def _choices(model: Model, kinks: Sequence[AtKink]) -> list[Choice]:
    car = _carriers(model)
    out: list[Choice] = []
    half = Fraction(1, 2)
    for site, entries in kinks:
        r = site.rule
        x = site.arguments[0]
        if r is SiteRule.RELU:
            node = car["step"].get(x.id)
            if node is not None:
                out.extend(Choice(site, e, (e,), (node,), (Fraction(1), Fraction(0))) for e in entries)
        elif r is SiteRule.ABS:
            node = car["sign"].get(x.id)
            if node is not None:
                out.extend(Choice(site, e, (e,), (node,), (half, half)) for e in entries)
        elif r is SiteRule.MAXIMUM:
            a, b = site.arguments
            nodes = (car["tie"].get((a.id, b.id)), car["tie"].get((b.id, a.id)))
            if any(n is not None for n in nodes):
                out.extend(Choice(site, e, (e,), nodes, (half, half)) for e in entries)
        elif r is SiteRule.MAX:
            node = car["argmax"].get((x.id, site.axes))
            if node is None:
                continue
            groups: dict[tuple, list[tuple[int, ...]]] = {}
            for e in entries:
                key = () if site.axes is None else tuple(i for d, i in enumerate(e) if d not in site.axes)
                groups.setdefault(key, []).append(e)
            for members in groups.values():
                if len(members) < 2:
                    continue
                m = len(members)
                out.append(Choice(site, members[0], tuple(sorted(members)), (node,), tuple([Fraction(1, m)] * m)))
    return out


def _flatten(vals: Sequence[np.ndarray], B: int) -> np.ndarray:
    return np.concatenate([np.asarray(v, dtype=object).reshape(B, -1) for v in vals], axis=1)


def subgradient_set(model: Model, point: Mapping[str, np.ndarray], kinks: Sequence[AtKink] | None = None, *,
                    prec: int = DEFAULT_PREC, chunk: int = 256) -> SubgradientSet:
    """The set of valid gradients at a point on kinks (see the module Notes).

    Parameters
    ----------
    model : Model
    point : mapping of str to ndarray
        x_p, in the dtype under test.
    kinks : sequence of AtKink, optional
        Default :func:`at_kink`.
    prec : int
        Working precision of the gradient evaluations.
    chunk : int
        Batch rows per evaluation (memory bound).

    Returns
    -------
    SubgradientSet

    Notes
    -----
    One batched evaluation of the gradient graph, with the nodes that carry the
    conventions (``step``, ``sign``, tie and argmax weights) replaced at the
    kink entries: row 0 at the point-value convention, one row per vertex of
    every choice, and one row with every choice at its last vertex, compared
    with the sum of the single effects to detect interacting (nested) kinks.
    """
    kinks = at_kink(model, point) if kinks is None else list(kinks)
    point = {k: np.asarray(v) for k, v in point.items()}
    choices = _choices(model, kinks)
    names = tuple(model.gradient)
    shapes = tuple(model.shape(n) for n in names)
    nodes = [model.gradient[n] for n in names]
    base_assign = [a for c in choices for a in c.assignments(c.base)]
    rows: list[list] = [base_assign]
    columns: list[tuple[int, int]] = []
    for j, c in enumerate(choices):
        for v in range(c.size):
            rows.append(base_assign + c.assignments(c.vertex(v)))
            columns.append((j, v))
    rows.append(base_assign + [a for c in choices for a in c.assignments(c.vertex(c.size - 1))])
    with mpmath.workprec(prec):
        leaves = _mp_base(model, point)
        conv = lambda q: mpmath.mpf(q.numerator) / q.denominator  # noqa: E731
        G = np.empty((len(rows), sum(int(np.prod(s, dtype=np.int64)) for s in shapes)), dtype=object)
        for start in range(0, len(rows), chunk):
            part = rows[start:start + chunk]
            vals = _evaluate_with(nodes, leaves, MPBackend(), _overrides(part, conv), len(part))
            G[start:start + len(part)] = _flatten(vals, len(part))
        base = G[0].copy()
        scale = max([abs(v) for v in base] + [mpmath.mpf(0)])
        tiny = mpmath.ldexp(max(scale, mpmath.mpf(1)), -(prec - 24))
        diff = G[1:-1] - base[None, :] if columns else np.zeros((0, G.shape[1]), dtype=object)
        nonzero = (np.vectorize(lambda d: abs(d) > tiny, otypes=[bool])(diff) if diff.size
                   else np.zeros(diff.shape, bool))
        keep_choice = [bool(np.any(nonzero[[k for k, (jj, _) in enumerate(columns) if jj == j]]))
                       for j in range(len(choices))]
        interacting = False
        if columns:
            last = [k for k, (j, v) in enumerate(columns) if v == choices[j].size - 1]
            summed = np.sum(diff[last], axis=0) if last else np.zeros(G.shape[1], dtype=object)
            joint = G[-1] - base
            loose = mpmath.ldexp(max(scale, mpmath.mpf(1)), -(prec // 2))
            interacting = any(abs(a - b) > loose for a, b in zip(joint, summed))
        kept = [j for j in range(len(choices)) if keep_choice[j]]
        cols = [k for k, (j, _) in enumerate(columns) if keep_choice[j]]
        remap = {j: n for n, j in enumerate(kept)}
        effects = np.array([[float(d) for d in diff[k]] for k in cols], dtype=np.float64).T
        effects = effects.reshape(G.shape[1], len(cols))
        affected = np.any(nonzero[cols], axis=0) if cols else np.zeros(G.shape[1], dtype=bool)
    return SubgradientSet(model=model, point=dict(point), choices=tuple(choices[j] for j in kept),
                          continuous=tuple(c for j, c in enumerate(choices) if not keep_choice[j]),
                          names=names, shapes=shapes, base=base, effects=effects,
                          columns=tuple((remap[columns[k][0]], columns[k][1]) for k in cols),
                          affected=np.asarray(affected, dtype=bool), interacting=bool(interacting), precision=prec)


# ---------------------------------------------------------------------------
# one-sided derivatives
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class OneSided:
    """Certified one-sided partial derivatives at a point.

    Attributes
    ----------
    minus, plus : dict of str to ndarray of mpf
        d-_i = lim_{t -> 0-} (f(x + t e_i) - f(x)) / t and d+_i (t -> 0+), per variable.
    lower, upper : dict of str to ndarray of mpf
        ``min(d-, d+)`` and ``max(d-, d+)``: the Clarke subdifferential of the
        restriction of f to the coordinate line.
    computed : dict of str to ndarray of bool
        Entries computed by Richardson extrapolation; the others equal the truth.
    precision : int

    Iterating gives ``(lower, upper)``, so ``lo, hi = one_sided_gradient(...)`` works.
    """

    minus: dict[str, np.ndarray]
    plus: dict[str, np.ndarray]
    lower: dict[str, np.ndarray]
    upper: dict[str, np.ndarray]
    computed: dict[str, np.ndarray]
    precision: int

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter((self.lower, self.upper))


Line = Sequence[tuple[str, int, Fraction]]


def _line_min_distance(model: Model, point, sites: Sequence[Site], lines: Sequence[Line], prec: int) -> list[float]:
    """Linearised distance along each line to the nearest site entry that is not exactly 0."""
    if not sites or not lines:
        return [math.inf] * len(lines)
    with mpmath.workprec(prec):
        base = _mp_base(model, point)
        v0 = _conditions(sites, base, MPBackend(), 1)[0]
        out = []
        for start in range(0, len(lines), 64):
            part = lines[start:start + 64]
            rows = []
            taus = []
            for line in part:
                big = max([mpmath.mpf(1)] + [abs(base[n].reshape(-1)[i]) for n, i, _ in line])
                tau = mpmath.ldexp(1, -(prec // 4)) * big
                taus.append(tau)
                rows.extend(_direction_rows(base, line, [tau, -tau]))
            vals, failed = _conditions(sites, batched_leaves(base, rows), MPBackend(), len(rows))
            for r, tau in enumerate(taus):
                d = math.inf
                if 2 * r in failed or 2 * r + 1 in failed:
                    out.append(0.0)
                    continue
                for k, site in enumerate(sites):
                    a, b, c = vals[k][2 * r, ...], vals[k][2 * r + 1, ...], v0[k][0, ...]
                    for idx in np.ndindex(*site.shape):
                        if not c[idx]:
                            continue
                        slope = (a[idx] - b[idx]) / (2 * tau)
                        if slope:
                            d = min(d, float(abs(c[idx] / slope)))
                out.append(d)
        return out


def _richardson(model: Model, point, lines: Sequence[Line], labels: Sequence[str], scale, *,
                max_rounds: int = 6) -> tuple[list[tuple[Any, Any]], int]:
    """Certified (d+, d-) along each line (see :func:`one_sided_gradient`, Notes); returns them and the precision."""
    sites = find_sites(model)
    dmin = _line_min_distance(model, point, sites, lines, DEFAULT_PREC)
    ks: list[int] = []
    pows: list[int] = []
    for line, d in zip(lines, dmin):
        x = max([1.0] + [abs(float(point[n].reshape(-1)[i])) for n, i, _ in line])
        p = int(math.floor(math.log2(x)))
        pows.append(p)
        k = 48
        if d == 0.0:
            k = 96
        elif math.isfinite(d):
            k = max(k, int(math.ceil(p + 3 - math.log2(d))))
        ks.append(k)
    results: list[tuple[Any, Any] | None] = [None] * len(lines)
    pending = list(range(len(lines)))
    prec_used = DEFAULT_PREC
    for _ in range(max_rounds):
        if not pending:
            break
        prec = max(ks[j] for j in pending) + 226
        prec_used = max(prec_used, prec)
        with mpmath.workprec(prec):
            base = _mp_base(model, point)
            f0 = evaluate([model.loss], base, MPBackend())[0][0]
            rows = []
            steps = []
            for j in pending:
                ts = [side * mpmath.ldexp(1, pows[j] - ks[j] - q) for side in (1, -1) for q in range(3)]
                steps.extend(ts)
                rows.extend(_direction_rows(base, lines[j], ts))
            F, failed = _eval_safe([model.loss], batched_leaves(base, rows), MPBackend(), len(rows))
            F = F[0]
            still = []
            tol_abs = mpmath.ldexp(scale, -72)
            for r, j in enumerate(pending):
                res = []
                ok = True
                for side in range(2):
                    ix = [6 * r + 3 * side + q for q in range(3)]
                    if any(b in failed for b in ix):
                        ok = False
                        break
                    D = [(F[b] - f0) / steps[b] for b in ix]
                    r1, r2 = 2 * D[1] - D[0], 2 * D[2] - D[1]
                    if abs(r1 - r2) > max(mpmath.ldexp(abs(r2), -72), tol_abs):
                        ok = False
                        break
                    res.append(r2)
                if not ok:
                    ks[j] += 16
                    still.append(j)
                    continue
                results[j] = (res[0], res[1])
            pending = still
    if pending:
        j = pending[0]
        raise CertificationError(
            f"{model.case.name}: the one-sided derivatives along {labels[j]} did not converge "
            f"(Richardson values disagree down to t = 2^-{ks[j] - 16})",
            hint="the loss may have kinks accumulating at the point; report the case")
    return [r for r in results if r is not None], prec_used


def one_sided_gradient(model: Model, point: Mapping[str, np.ndarray], dtype: Dtype, *,
                       truth=None, selection: SubgradientSet | None = None,
                       entries: Sequence[tuple[str, int]] | None = None, max_rounds: int = 6) -> OneSided:
    """Certified one-sided partial derivatives d-, d+ at a point on kinks.

    Parameters
    ----------
    model : Model
    point : mapping of str to ndarray
        The point (rounded to ``dtype`` here if it is not already).
    dtype : Dtype
    truth : Truth, optional
        The certified point-value gradient (computed with :func:`verigrad.engine.truth.certify` if absent);
        entries that are not computed take its value for both sides.
    selection : SubgradientSet, optional
        Default :func:`subgradient_set`; its affected entries are the ones computed.
    entries : sequence of (str, int), optional
        (variable, flat index) to compute instead of the affected entries.
    max_rounds : int
        Times the step may be divided by 2^16 before giving up.

    Returns
    -------
    OneSided

    Raises
    ------
    CertificationError
        Two Richardson values never agreed (names the entry).

    Notes
    -----
    ``D(t) = (f(x + t e_i) - f(x)) / t`` at ``t = ±2^-k s``, ``±2^-(k+1) s``,
    ``±2^-(k+2) s`` (``s`` the power of two at ``max(1, |x_i|)``, ``k >= 48``
    and ``2^-k s`` below an eighth of the distance to the nearest other site
    entry), evaluated exactly at ``k + 226`` bits.  ``R1 = 2 D(t/2) - D(t)``,
    ``R2 = 2 D(t/4) - D(t/2)``; the result ``R2`` is accepted when
    ``|R1 - R2| <= 2^-72 max(|R2|, scale)``, an error O(t^2) ~ 2^-96 relative.
    """
    from verigrad.engine.truth import certify

    point = point_in_dtype({k: np.asarray(v) for k, v in point.items()}, dtype)
    if truth is None:
        truth = certify(model, point, dtype)
    names = tuple(model.gradient)
    if entries is None:
        if selection is None:
            selection = subgradient_set(model, point)
        entries = selection.affected_entries()
    entries = list(entries)
    minus = {n: np.array(truth.gradient[n], dtype=object, copy=True) for n in names}
    plus = {n: np.array(truth.gradient[n], dtype=object, copy=True) for n in names}
    computed = {n: np.zeros(model.shape(n), dtype=bool) for n in names}
    prec_used = truth.precision
    if entries:
        scale = truth.scale if truth.scale else mpmath.mpf(1)
        lines = [[(name, i, Fraction(1))] for name, i in entries]
        labels = []
        for name, i in entries:
            idx = np.unravel_index(i, model.shape(name)) if model.shape(name) else ()
            labels.append(f"{name}{_idx(idx)}")
        res, prec = _richardson(model, point, lines, labels, scale, max_rounds=max_rounds)
        prec_used = max(prec_used, prec)
        for (name, i), (dp, dm) in zip(entries, res):
            plus[name].reshape(-1)[i] = dp
            minus[name].reshape(-1)[i] = dm
            computed[name].reshape(-1)[i] = True
    lower, upper = {}, {}
    for n in names:
        lo = np.empty(model.shape(n), dtype=object)
        hi = np.empty(model.shape(n), dtype=object)
        for idx in np.ndindex(*model.shape(n)):
            a, b = minus[n][idx], plus[n][idx]
            lo[idx], hi[idx] = (a, b) if a <= b else (b, a)
        lower[n], upper[n] = lo, hi
    return OneSided(minus, plus, lower, upper, computed, prec_used)


# ---------------------------------------------------------------------------
# per-entry acceptance
# ---------------------------------------------------------------------------


class PerEntryAcceptance(NamedTuple):
    """Result of :func:`accept_at_kinks`: the effective truth and the conventions found."""

    truth: dict[str, np.ndarray]
    conventions: list[str]


def accept_at_kinks(truth_gradient: Mapping[str, np.ndarray], value: Mapping[str, np.ndarray],
                    lo: Mapping[str, np.ndarray], hi: Mapping[str, np.ndarray],
                    tolerance: float | Mapping[str, float]) -> PerEntryAcceptance:
    """Per-entry acceptance at kinks: the candidate's value wherever it lies in ``[lo, hi]``.

    Parameters
    ----------
    truth_gradient : mapping of str to ndarray of mpf
        The point-value truth.
    value : mapping of str to ndarray
        The candidate's gradient.
    lo, hi : mapping of str to ndarray of mpf
        One-sided intervals (:func:`one_sided_gradient`).
    tolerance : float or mapping of str to float
        Absolute slack (per variable) for "lies in the interval".

    Returns
    -------
    PerEntryAcceptance
        ``(truth, conventions)``.  Entries with ``lo < hi`` whose value lies in
        ``[lo - tol, hi + tol]`` get the value clipped to ``[lo, hi]`` as their truth
        (so the normal grading passes them), and a convention string such as
        ``W[0, 2] = 0.25, the upper one-sided derivative (interval [-1.25, 0.25])``.
        Other entries keep the point-value truth, clipped to ``[lo, hi]`` (the
        nearest valid element), so they are graded against a valid subgradient.

    Notes
    -----
    This test is per entry; it cannot see a coupling between entries (a max-pool
    tie whose entries each lie in ``[0, C]`` but sum to ``2 C``).  The grading
    hook uses the joint set instead (:func:`kink_acceptance`).

    Examples
    --------
    >>> import mpmath, numpy as np
    >>> t = {"b": np.array(mpmath.mpf(0), dtype=object)}
    >>> eff, conv = accept_at_kinks(t, {"b": np.float64(1.5)}, {"b": np.array(mpmath.mpf(0), dtype=object)},
    ...                             {"b": np.array(mpmath.mpf(3), dtype=object)}, 1e-12)
    >>> float(eff["b"]), conv
    (1.5, ['b = 1.5, inside the one-sided interval [0, 3]'])
    """
    eff: dict[str, np.ndarray] = {}
    conventions: list[str] = []
    for name, g in truth_gradient.items():
        tol = tolerance[name] if isinstance(tolerance, Mapping) else tolerance
        g = np.asarray(g, dtype=object)
        v = np.asarray(value[name], dtype=np.float64).reshape(g.shape)
        out = np.array(g, dtype=object, copy=True)
        for idx in np.ndindex(*g.shape):
            a, b = lo[name][idx], hi[name][idx]
            if not a < b:
                continue
            x = float(v[idx])
            where = f"{name}{_idx(idx)}"
            if math.isfinite(x) and float(a) - tol <= x <= float(b) + tol:
                xm = mpmath.mpf(x)
                out[idx] = a if xm < a else (b if xm > b else xm)
                if abs(x - float(a)) <= tol:
                    kind = "the lower one-sided derivative"
                elif abs(x - float(b)) <= tol:
                    kind = "the upper one-sided derivative"
                else:
                    kind = "inside the one-sided interval"
                conventions.append(f"{where} = {x:.6g}, {kind} [{float(a):.6g}, {float(b):.6g}]"
                                   if kind.startswith("inside") else
                                   f"{where} = {x:.6g}, {kind} (interval [{float(a):.6g}, {float(b):.6g}])")
            else:
                gv = g[idx]
                out[idx] = a if gv < a else (b if gv > b else gv)
        eff[name] = out
    return PerEntryAcceptance(eff, conventions)


# ---------------------------------------------------------------------------
# joint acceptance (the grading hook)
# ---------------------------------------------------------------------------


def _snap(w: np.ndarray) -> tuple[Fraction, ...]:
    """LP weights -> exact simplex weights, snapped to simple fractions (denominator <= 12) within 1e-6."""
    out = []
    for x in np.clip(np.asarray(w, dtype=np.float64), 0.0, 1.0):
        fr = Fraction(float(x)).limit_denominator(12)
        out.append(fr if abs(float(fr) - float(x)) <= 1e-6 else Fraction(float(x)))
    total = sum(out)
    if total <= 0:
        return tuple(Fraction(1, len(out)) for _ in out)
    return tuple(q / total for q in out)


def _nearest_weights(sset: SubgradientSet, r: np.ndarray, rows: np.ndarray, weights: np.ndarray
                     ) -> list[tuple[Fraction, ...]] | None:
    """Weights of the element of the set nearest (weighted L1) to base + r on the given rows."""
    from scipy import sparse
    from scipy.optimize import linprog

    E = sset.effects[rows]
    m, n = E.shape
    groups: dict[int, list[int]] = {}
    for k, (j, _) in enumerate(sset.columns):
        groups.setdefault(j, []).append(k)
    A1 = sparse.hstack([sparse.csr_matrix(E), -sparse.identity(m, format="csr"), sparse.identity(m, format="csr")])
    data, ri, ci = [], [], []
    for g, cols in enumerate(groups[j] for j in range(len(sset.choices))):
        for k in cols:
            data.append(1.0)
            ri.append(g)
            ci.append(k)
    A2 = sparse.csr_matrix((data, (ri, ci)), shape=(len(sset.choices), n + 2 * m))
    A = sparse.vstack([A1, A2]).tocsr()
    b = np.concatenate([r, np.ones(len(sset.choices))])
    c = np.concatenate([np.zeros(n), weights, weights])
    res = linprog(c, A_eq=A, b_eq=b, bounds=(0, None), method="highs")
    if res.status != 0:
        return None
    lam = res.x[:n]
    return [_snap(lam[groups[j]]) for j in range(len(sset.choices))]


def _group_conventions(pairs: Sequence[tuple[Choice, tuple[Fraction, ...]]]) -> list[str]:
    grouped: dict[tuple[str, str], list[str]] = {}
    for c, w in pairs:
        key = (c.site.label, c.describe(w))
        grouped.setdefault(key, []).append(c.where())
    out = []
    for (_, text), places in grouped.items():
        sep = "; " if any("," in p for p in places) else ", "
        shown = sep.join(places[:4]) + (f" and {len(places) - 4} more" if len(places) > 4 else "")
        out.append(f"{text} at {shown}")
    return out


@dataclass(frozen=True, eq=False)
class KinkAcceptance:
    """How a candidate is graded at a point on kinks.

    Attributes
    ----------
    truth : dict of str to ndarray of mpf
        Effective truth: the element of the set of valid gradients nearest to
        the candidate (the point-value truth away from kinks).  Pass it to
        :func:`verigrad.grading.grade` instead of the point-value truth.
    baseline : dict of str to ndarray or None
        The float baseline of the same convention (the gradient expression
        evaluated naively in the dtype with the chosen choices), so that the
        tolerance is not inflated by the convention; None when none was given.
    conventions : tuple of str
        The conventions the candidate used (or, if it is not a valid gradient,
        those of the nearest valid one), e.g. ``relu'(0) = 0 (the left
        derivative of relu) at Z1[2, 0]``, ``max tie split 1/2 each at x[0, 1], x[1, 0]``.
    matched : bool
        The candidate is within ``tolerance`` of a valid gradient on every entry the kinks affect.
    distance : float
        Max over those entries of |candidate - nearest| / the gradient's scale.
    notes : tuple of str
    lower, upper : dict of str to ndarray or None
        Per-entry one-sided intervals, for reports.
    weights : tuple of tuple of Fraction
        The chosen point of each choice's simplex.
    """

    truth: dict[str, np.ndarray]
    baseline: dict[str, np.ndarray] | None
    conventions: tuple[str, ...] = ()
    matched: bool = True
    distance: float = 0.0
    notes: tuple[str, ...] = ()
    lower: dict[str, np.ndarray] | None = None
    upper: dict[str, np.ndarray] | None = None
    weights: tuple[tuple[Fraction, ...], ...] = ()

    @property
    def at_kink(self) -> bool:
        return bool(self.weights)


@dataclass(frozen=True, eq=False)
class KinkAnalysis:
    """Everything about the kinks at one truth's point, computed once per dtype.

    Attributes
    ----------
    model : Model
    truth : Truth
    sites : tuple of Site
    kinks : tuple of AtKink
        Sites with entries exactly on their kink.
    selection : SubgradientSet or None
        None when the point is on no kink.
    one_sided : OneSided or None
    notes : tuple of str
    """

    model: Model
    truth: Any
    sites: tuple[Site, ...]
    kinks: tuple[AtKink, ...]
    selection: SubgradientSet | None
    one_sided: OneSided | None
    notes: tuple[str, ...] = ()

    def accept(self, value: Mapping[str, np.ndarray], baseline: Mapping[str, np.ndarray] | None = None, *,
               tolerance: float | None = None) -> KinkAcceptance:
        """Grade-ready truth and baseline for one candidate (see :func:`kink_acceptance`)."""
        truth = self.truth
        lower = self.one_sided.lower if self.one_sided is not None else None
        upper = self.one_sided.upper if self.one_sided is not None else None
        plain = KinkAcceptance(dict(truth.gradient), dict(baseline) if baseline is not None else None,
                               notes=self.notes, lower=lower, upper=upper)
        sset = self.selection
        if sset is None or not sset.choices:
            return plain
        dt = truth.dtype.numpy
        scale = float(truth.scale) if truth.scale else 1.0
        tol = tolerance if tolerance is not None else 256 * float(np.finfo(dt).eps) * scale
        try:
            v = np.concatenate([np.asarray(value[n], dtype=np.float64).reshape(-1) for n in sset.names])
        except (KeyError, ValueError, TypeError):
            return plain
        base_f = np.array([float(x) for x in sset.base])
        rows = np.flatnonzero(sset.affected & np.isfinite(v))
        if rows.size == 0:
            return plain
        var_scale = []
        for n in sset.names:
            g = truth.gradient[n]
            s = max([abs(float(x)) for x in np.asarray(g).reshape(-1)] + [0.0])
            var_scale.extend([s if s > 0 else scale] * int(np.asarray(g).size))
        w = 1.0 / np.asarray(var_scale)[rows]
        weights = _nearest_weights(sset, v[rows] - base_f[rows], rows, w)
        notes = list(self.notes)
        if weights is None:
            notes.append("the nearest valid gradient could not be computed (linear program failed); "
                         "graded against the point-value convention")
            return KinkAcceptance(plain.truth, plain.baseline, (), False, math.nan, tuple(notes), lower, upper)
        eff_mp = sset.evaluate(weights)
        eff_f = sset.evaluate(weights, dtype=dt) if baseline is not None else None
        new_truth: dict[str, np.ndarray] = {}
        new_base: dict[str, np.ndarray] | None = {} if baseline is not None else None
        offset = 0
        dist = 0.0
        outside: list[str] = []
        for n, shape in zip(sset.names, sset.shapes):
            size = int(np.prod(shape, dtype=np.int64))
            aff = sset.affected[offset:offset + size]
            t = np.array(truth.gradient[n], dtype=object, copy=True).reshape(-1)
            e = np.asarray(eff_mp[n], dtype=object).reshape(-1)
            changed = aff | np.array([bool(e[i] != sset.base[offset + i]) for i in range(size)])
            t[changed] = e[changed]
            new_truth[n] = t.reshape(shape)
            if new_base is not None:
                b = np.array(baseline[n], copy=True).reshape(-1)
                b[changed] = np.asarray(eff_f[n]).reshape(-1)[changed]
                new_base[n] = b.reshape(shape)
            for i in np.flatnonzero(aff):
                x = v[offset + i]
                if math.isfinite(x):
                    dist = max(dist, abs(x - float(e[i])) / scale)
                if lower is not None and not (lower[n].reshape(-1)[i] - tol <= e[i] <= upper[n].reshape(-1)[i] + tol):
                    idx = np.unravel_index(i, shape) if shape else ()
                    outside.append(f"{n}{_idx(idx)}")
            offset += size
        matched = dist * scale <= tol
        pairs = list(zip(sset.choices, weights))
        conventions = _group_conventions(pairs)
        if not matched:
            conventions = [f"nearest valid: {c}" for c in conventions]
            notes.append(f"no choice of derivatives at the kinks reproduces the candidate (off by {dist:.2e} of "
                         f"the gradient's scale); it is graded against the nearest valid gradient")
        else:
            notes.append("the point is on a kink: the candidate is graded against the valid gradient with its "
                         "convention (" + "; ".join(conventions[:3]) + (" ..." if len(conventions) > 3 else "") + ")")
        if sset.interacting:
            notes.append("some kinks are nested (interacting): the set of valid gradients is linearised around "
                         "the point-value convention")
        if outside:
            notes.append(f"the chosen gradient lies outside the one-sided interval at {', '.join(outside[:4])}"
                         f"{' ...' if len(outside) > 4 else ''}: kinks interact along those coordinates")
        return KinkAcceptance(new_truth, new_base, tuple(conventions), bool(matched), float(dist), tuple(notes),
                              lower, upper, tuple(weights))


_CACHE: "weakref.WeakKeyDictionary[Any, tuple[int, KinkAnalysis]]" = weakref.WeakKeyDictionary()


def kink_analysis(model: Model, truth) -> KinkAnalysis:
    """Sites, kinks at the point, the set of valid gradients and the one-sided derivatives (cached per truth).

    Parameters
    ----------
    model : Model
    truth : Truth
        The certified truth at one dtype's point.

    Returns
    -------
    KinkAnalysis
        Computed once per ``truth`` object (weakly cached), so every candidate and
        finite difference of a dtype shares it.  Never raises for a problem of the
        analysis (a precision cap, say): it is recorded in ``notes``.
    """
    hit = _CACHE.get(truth)
    if hit is not None and hit[0] == id(model):
        return hit[1]
    sites = tuple(find_sites(model))
    kinks: tuple[AtKink, ...] = ()
    selection = one = None
    notes: list[str] = []
    try:
        kinks = tuple(at_kink(model, truth.point, sites=sites)) if sites else ()
        if kinks:
            selection = subgradient_set(model, truth.point, kinks, prec=max(truth.precision, DEFAULT_PREC))
    except VerigradError as exc:
        notes.append(f"the kinks at the point could not be analysed ({exc}); graded against the point value")
        selection = None
    if selection is not None:
        try:
            one = one_sided_gradient(model, truth.point, truth.dtype, truth=truth, selection=selection)
        except VerigradError as exc:
            notes.append(f"one-sided derivatives unavailable: {exc}")
    analysis = KinkAnalysis(model, truth, sites, kinks, selection, one, tuple(notes))
    try:
        _CACHE[truth] = (id(model), analysis)
    except TypeError:  # pragma: no cover - a truth that cannot be weakly referenced
        pass
    return analysis


def kink_acceptance(model: Model, truth, value: Mapping[str, np.ndarray],
                    baseline: Mapping[str, np.ndarray] | None = None, *, tolerance: float | None = None
                    ) -> KinkAcceptance:
    """The truth (and baseline) to grade a candidate with, when the point is on kinks.

    Parameters
    ----------
    model : Model
    truth : Truth
    value : mapping of str to ndarray
        The candidate's (validated) gradient.
    baseline : mapping of str to ndarray, optional
        The float baseline; returned adjusted to the candidate's convention.
    tolerance : float, optional
        Absolute distance under which the candidate counts as using a valid
        convention (for the messages; the grade decides the verdict).  Default
        ``256 eps_p`` times the gradient's scale.

    Returns
    -------
    KinkAcceptance
        Off kinks: the truth and baseline unchanged, no conventions.

    Notes
    -----
    The nearest element ``G(w*)`` of the set of valid gradients minimises
    ``sum_i |v_i - G_i(w)| / S_k(i)`` (``S_k`` the scale of entry i's variable)
    over the choice simplices, a linear program; ``w*`` is snapped to simple
    fractions and ``G(w*)`` re-evaluated exactly, and in the dtype for the baseline.
    """
    return kink_analysis(model, truth).accept(value, baseline, tolerance=tolerance)


# ---------------------------------------------------------------------------
# finite differences
# ---------------------------------------------------------------------------


def kink_limit(scheme: Scheme | str) -> tuple[Fraction, Fraction, str]:
    """The limit of a linear scheme at a kink: ``alpha d+ + beta d-``.

    Returns
    -------
    (Fraction, Fraction, str)
        ``alpha = sum_{c_k > 0} w_k c_k``, ``beta = sum_{c_k < 0} w_k c_k`` and a sentence.

    Examples
    --------
    >>> kink_limit("central")[2]
    '(d+ + d-)/2, the mean of the one-sided derivatives'
    >>> kink_limit("forward")[:2]
    (Fraction(1, 1), Fraction(0, 1))
    """
    scheme = get_scheme(scheme) if isinstance(scheme, str) else scheme
    alpha = sum((w * c for c, w in zip(scheme.offsets, scheme.weights) if c > 0), Fraction(0))
    beta = sum((w * c for c, w in zip(scheme.offsets, scheme.weights) if c < 0), Fraction(0))
    if beta == 0:
        text = "d+, the right one-sided derivative"
    elif alpha == 0:
        text = "d-, the left one-sided derivative"
    elif alpha == beta:
        text = "(d+ + d-)/2, the mean of the one-sided derivatives"
    else:
        text = f"{_frac_text(alpha)} d+ + {_frac_text(beta)} d-"
    return alpha, beta, text


@dataclass(frozen=True)
class SafeStep:
    """The largest step whose stencil stays on the point's side of every site, along one direction.

    Attributes
    ----------
    scheme : str
    direction : str
    limit : float
        Supremum of the safe steps (linearised): ``inf`` if no site can be
        crossed, 0 if the point is on a kink that the direction moves.
    step : float
        A step below ``limit`` verified exactly by :func:`stencil_crossings`
        (0 when none exists).
    site : Site or None
        The site that sets the limit.
    entry : tuple of int or None
    message : str
    """

    scheme: str
    direction: str
    limit: float
    step: float
    site: Site | None
    entry: tuple[int, ...] | None
    message: str


def safe_steps(model: Model, point: Mapping[str, np.ndarray], direction: Direction, scheme: Scheme | str, *,
               sites: Sequence[Site] | None = None, dtype: Dtype | None = None) -> SafeStep:
    """The largest step h such that no node x + c_k h e of ``scheme`` crosses a site.

    Parameters
    ----------
    model : Model
    point : mapping of str to ndarray
    direction : Direction
    scheme : Scheme or str
    sites : sequence of Site, optional
    dtype : Dtype, optional
        Check the verified step with nodes rounded to this dtype.

    Returns
    -------
    SafeStep

    Notes
    -----
    For a sign change at signed distance t* the nodes with ``c_k`` of the sign
    of t* stay before it while ``h < |t*| / max |c_k|``.  The limit is the
    minimum over all site entries; the reported ``step`` is ``limit (1 - 2^-8)``,
    halved until :func:`stencil_crossings` finds no crossing.
    """
    scheme = get_scheme(scheme) if isinstance(scheme, str) else scheme
    sites = find_sites(model) if sites is None else list(sites)
    offsets = list(scheme.offsets)
    cpos = max([c for c in offsets if c > 0], default=None)
    cneg = max([-c for c in offsets if c < 0], default=None)
    limit, which, entry = math.inf, None, None
    on_kink = False
    for sd in distance_along(model, point, direction, sites) if (sites and offsets) else []:
        for idx in np.ndindex(*sd.site.shape):
            t = sd.crossing[idx]
            if not math.isfinite(t):
                continue
            if t == 0.0:
                bound = 0.0
                on_kink = True
            elif t > 0:
                if cpos is None:
                    continue
                bound = t / float(cpos)
            else:
                if cneg is None:
                    continue
                bound = -t / float(cneg)
            if bound < limit:
                limit, which, entry = bound, sd.site, idx
    label = scheme.name
    if which is None:
        return SafeStep(label, direction.label, math.inf, math.inf, None, None,
                        f"no node of {label} along {direction.label} can cross a kink or domain boundary")
    if on_kink and limit == 0.0:
        return SafeStep(label, direction.label, 0.0, 0.0, which, entry,
                        f"the point is on the kink of {which.describe(entry)}: every stencil along "
                        f"{direction.label} straddles it; compare {label} with its limit "
                        f"{kink_limit(scheme)[2]}")
    step = limit * (1 - 2.0**-8)
    for _ in range(60):
        ts = [Fraction(c) * Fraction(step) for c in offsets]
        if not stencil_crossings(model, point, direction, ts, sites, dtype=dtype):
            break
        step /= 2
    else:  # pragma: no cover - a site closer than 2^-60 of the linearised one
        step = 0.0
    return SafeStep(label, direction.label, float(limit), float(step), which, entry,
                    f"steps below {_sci(limit)} keep every node of {label} along {direction.label} on the point's "
                    f"side of {which.describe(entry)} (verified step {_sci(step)})")


@dataclass(frozen=True, eq=False)
class FDCrossings:
    """Which coordinates of a full finite-difference gradient have a stencil across a site.

    Attributes
    ----------
    scheme : str
    step : float
        Nominal step.
    dtype : Dtype
    excluded : dict of str to ndarray of bool
        Coordinates whose stencil crosses a site the point is not on: exclude
        their estimates from verdicts.
    on_kink : dict of str to ndarray of bool
        Coordinates whose stencil straddles a kink the point is exactly on:
        compare them with :func:`kink_limit` of the one-sided derivatives.
    crossings : tuple of Crossing
        The nearest crossing of every flagged coordinate (``where`` names it).
    """

    scheme: str
    step: float
    dtype: Dtype
    excluded: dict[str, np.ndarray]
    on_kink: dict[str, np.ndarray]
    crossings: tuple[Crossing, ...]

    @property
    def count(self) -> int:
        return int(sum(int(m.sum()) for m in self.excluded.values()) + sum(int(m.sum()) for m in self.on_kink.values()))

    def messages(self) -> list[str]:
        return [c.message for c in self.crossings]


def _node_values(x: float, h: float, offsets: Sequence[Fraction], dt: np.dtype) -> list[Fraction]:
    xq, hq = Fraction(x), Fraction(h)
    return [_round_fraction(xq + c * hq, dt) for c in offsets]


def fd_crossings(model: Model, *, dtype: Dtype, scheme: Scheme | str, step: float | Mapping[str, np.ndarray],
                 step_mode: StepMode = StepMode.RELATIVE, sites: Sequence[Site] | None = None,
                 point: Mapping[str, np.ndarray] | None = None, max_batch_elements: int = 2_000_000,
                 margin: float = 1e-6) -> FDCrossings:
    """Mark the coordinates of :func:`verigrad.studies.fd_gradient` whose stencil crosses a site.

    Parameters
    ----------
    model : Model
    dtype : Dtype
    scheme : Scheme or str
    step : float
        Nominal step; steps and nodes are exactly those of ``fd_gradient``
        (``h_i = fl_p(h max(1, |x_i|))`` in relative mode, ``y = fl_p(x_i + c_k h_i)``).
    step_mode : StepMode
    sites : sequence of Site, optional
    point : mapping of str to ndarray, optional
        Default ``point_in_dtype(model.point, dtype)``.
    max_batch_elements : int
        Memory bound of the float screening.
    margin : float
        Screening margin, relative to the largest |condition| of a site.

    Returns
    -------
    FDCrossings

    Notes
    -----
    The conditions at every node are screened in float64; a node whose
    condition has another sign than at the point, or lies within ``margin``
    of 0 (either of them), or is not finite, is then checked exactly in mpmath,
    and only exact crossings are reported.  The distance of the nearest one per
    coordinate is located exactly (:func:`stencil_crossings` semantics).
    """
    scheme = get_scheme(scheme) if isinstance(scheme, str) else scheme
    sites = find_sites(model) if sites is None else list(sites)
    point = point_in_dtype(model.point, dtype) if point is None else {k: np.asarray(v) for k, v in point.items()}
    names = list(model.gradient)
    excluded = {n: np.zeros(model.shape(n), dtype=bool) for n in names}
    on_kink = {n: np.zeros(model.shape(n), dtype=bool) for n in names}
    if not sites or scheme.kind is SchemeKind.COMPLEX_STEP:
        return FDCrossings(scheme.name, step, dtype, excluded, on_kink, ())
    np_dt = dtype.numpy
    offsets = list(scheme.offsets)
    K = len(offsets)
    arg_sizes = sum(a.size for a in _arg_nodes(sites)) + sum(int(np.prod(s.shape, dtype=np.int64)) for s in sites)
    fbase = _float_base(model, point)
    with np.errstate(all="ignore"):
        c0f = _conditions(sites, fbase, FloatBackend(np.float64), 1)[0]
    margins = []
    for c in c0f:
        a = np.abs(np.asarray(c, dtype=np.float64))
        fin = a[np.isfinite(a)]
        margins.append(margin * (float(fin.max()) if fin.size else 1.0) + 1e-300)
    suspects: list[tuple[str, int, int, Fraction, Fraction]] = []  # (name, i, k, t, node value)
    for name in names:
        x = point[name]
        n = x.size
        xf = x.reshape(-1).astype(np.float64)
        hp = entry_steps(step, name, x, step_mode).astype(np_dt).astype(np.float64)
        per = max(1, max_batch_elements // max(1, K * arg_sizes))
        for start in range(0, n, per):
            idx = list(range(start, min(n, start + per)))
            nodes = {i: _node_values(float(xf[i]), float(hp[i]), offsets, np_dt) for i in idx}
            rows = [{(name, i): float(nodes[i][k])} for i in idx for k in range(K)]
            with np.errstate(all="ignore"):
                cf, _ = _conditions(sites, batched_leaves(fbase, rows), FloatBackend(np.float64), len(rows))
            flag = np.zeros(len(rows), dtype=bool)
            for s, c, c0, mg in zip(sites, cf, c0f, margins):
                c = np.asarray(c, dtype=np.float64).reshape(len(rows), -1)
                b0 = np.asarray(c0, dtype=np.float64).reshape(1, -1)
                with np.errstate(invalid="ignore"):
                    bad = (np.sign(c) != np.sign(b0)) | (np.abs(c) <= mg) | (np.abs(b0) <= mg) | ~np.isfinite(c)
                flag |= np.any(bad, axis=1)
            for r in np.flatnonzero(flag):
                i, k = idx[r // K], r % K
                suspects.append((name, i, k, offsets[k] * Fraction(float(hp[i])), nodes[i][k]))
    if not suspects:
        return FDCrossings(scheme.name, step, dtype, excluded, on_kink, ())
    # exact confirmation
    ts = [t for *_, t, _ in suspects]
    pscale = max([1.0] + [float(np.max(np.abs(point[n]))) for n in names])
    prec = _prec_for(ts, pscale)
    per_coord: dict[tuple[str, int], list] = {}
    with mpmath.workprec(prec):
        base = _mp_base(model, point)
        v0 = _conditions(sites, base, MPBackend(), 1)[0]
        s0 = [_signs(np.asarray(v[0, ...], dtype=object)) for v in v0]
        for start in range(0, len(suspects), 256):
            part = suspects[start:start + 256]
            rows = [{(name, i): mpmath.mpf(y.numerator) / y.denominator} for name, i, _, _, y in part]
            vals, failed = _conditions(sites, batched_leaves(base, rows), MPBackend(), len(rows))
            for r, (name, i, k, t, y) in enumerate(part):
                if r in failed:
                    per_coord.setdefault((name, i), []).append(("fail", None, (), t, None, failed[r]))
                    continue
                for j, site in enumerate(sites):
                    sg = _signs(np.asarray(vals[j][r, ...], dtype=object))
                    hit = _violates(site, s0[j], sg)
                    for e in zip(*np.nonzero(hit)) if site.shape else ([()] if bool(hit) else []):
                        e = tuple(int(q) for q in e)
                        per_coord.setdefault((name, i), []).append(("hit", j, e, t, vals[j][(r,) + e], ""))
        crossings: list[Crossing] = []
        locate_items, locate_meta = [], []
        for (name, i), hits in per_coord.items():
            shape = model.shape(name)
            idx = tuple(int(q) for q in np.unravel_index(i, shape)) if shape else ()
            coord = f"{name}{_idx(idx)}"
            h_i = float(entry_steps(step, name, point[name], step_mode)[i])
            prefix = f"{coord}: stencil of {scheme.name} h={_sci(h_i)}"
            real = [h for h in hits if h[0] == "hit"]
            kink_hits = [h for h in real if sites[h[1]].kind is SiteKind.KINK and s0[h[1]][h[2]] == 0]
            other = [h for h in real if h not in kink_hits]
            fails = [h for h in hits if h[0] == "fail"]
            if other or fails:
                excluded[name].reshape(-1)[i] = True
            elif kink_hits:
                on_kink[name].reshape(-1)[i] = True
            if other:
                # nearest by the secant estimate between the point and the node, then located exactly
                def secant(h):
                    a0 = v0[h[1]][(0,) + h[2]]
                    vt = h[4]
                    return abs(h[3]) * (abs(a0) / abs(a0 - vt)) if vt is not None and a0 != vt else abs(h[3])
                best = min(other, key=secant)
                j, e, t, vt = best[1], best[2], best[3], best[4]
                locate_items.append((j, e, v0[j][(0,) + e], mpmath.mpf(t.numerator) / t.denominator, vt))
                locate_meta.append((name, i, coord, prefix, best, sorted({float(h[3]) for h in other
                                                                          if h[1] == j and h[2] == e})))
            elif fails:
                crossings.append(Crossing(None, (), coord, tuple(sorted({float(h[3]) for h in fails})), math.nan,
                                          False, True, _crossing_message(prefix, None, (), math.nan, False, True,
                                                                         fails[0][5])))
            elif kink_hits:
                h = kink_hits[0]
                crossings.append(Crossing(sites[h[1]], h[2], coord, tuple(sorted({float(q[3]) for q in kink_hits})),
                                          0.0, True, False,
                                          _crossing_message(prefix, sites[h[1]], h[2], 0.0, True, False)))
        # locate per coordinate (each has its own line)
        for item, (name, i, coord, prefix, best, nodes) in zip(locate_items, locate_meta):
            entries = [(name, i, Fraction(1))]
            d = _locate(sites, base, entries, [item])[0]
            site = sites[item[0]]
            leaves = site.kind is SiteKind.DOMAIN
            crossings.append(Crossing(site, item[1], coord, tuple(nodes), d, False, leaves,
                                      _crossing_message(prefix, site, item[1], d, False, leaves)))
    crossings.sort(key=lambda c: (c.distance if math.isfinite(c.distance) else math.inf))
    return FDCrossings(scheme.name, step, dtype, excluded, on_kink, tuple(crossings))


@dataclass(frozen=True, eq=False)
class FDAdjustment:
    """The truth to grade a full finite-difference gradient with, given its crossings.

    Attributes
    ----------
    truth : dict of str to ndarray of mpf
        The point-value truth, except: coordinates whose stencil crosses a site
        take the estimate itself (excluded from the verdict: zero error), and
        coordinates on a kink take the scheme's limit ``alpha d+ + beta d-``.
    crossings : FDCrossings
    notes : tuple of str
        What was excluded or compared with one-sided derivatives, and why.
    """

    truth: dict[str, np.ndarray]
    crossings: FDCrossings
    notes: tuple[str, ...] = ()

    @property
    def excluded_count(self) -> int:
        return int(sum(int(m.sum()) for m in self.crossings.excluded.values()))

    @property
    def on_kink_count(self) -> int:
        return int(sum(int(m.sum()) for m in self.crossings.on_kink.values()))


def fd_kink_adjustment(model: Model, truth, estimate: Mapping[str, np.ndarray], *, scheme: Scheme | str,
                       step: float | Mapping[str, np.ndarray],
                       step_mode: StepMode = StepMode.RELATIVE) -> FDAdjustment:
    """Exclude stencils that cross sites, and grade on-kink coordinates against the scheme's limit.

    Parameters
    ----------
    model : Model
    truth : Truth
    estimate : mapping of str to ndarray
        The output of :func:`verigrad.studies.fd_gradient` for the same scheme and step.
    scheme : Scheme or str
    step : float
    step_mode : StepMode

    Returns
    -------
    FDAdjustment
    """
    scheme = get_scheme(scheme) if isinstance(scheme, str) else scheme
    fdc = fd_crossings(model, dtype=truth.dtype, scheme=scheme, step=step, step_mode=step_mode,
                       point=truth.point)
    eff = {n: np.array(g, dtype=object, copy=True) for n, g in truth.gradient.items()}
    if not fdc.crossings:
        return FDAdjustment(eff, fdc, ())
    notes: list[str] = []
    n_ex = sum(int(m.sum()) for m in fdc.excluded.values())
    n_k = sum(int(m.sum()) for m in fdc.on_kink.values())
    total = sum(int(np.asarray(g).size) for g in truth.gradient.values())
    with mpmath.workprec(max(truth.precision, DEFAULT_PREC)):
        for n, mask in fdc.excluded.items():
            est = np.asarray(estimate[n], dtype=np.float64).reshape(mask.shape)
            for idx in zip(*np.nonzero(mask)) if mask.shape else ([()] if bool(mask) else []):
                if math.isfinite(est[idx]):
                    eff[n][idx] = mpmath.mpf(float(est[idx]))
        if n_k:
            one = kink_analysis(model, truth).one_sided
            alpha, beta, text = kink_limit(scheme)
            am = mpmath.mpf(alpha.numerator) / alpha.denominator
            bm = mpmath.mpf(beta.numerator) / beta.denominator
            for n, mask in fdc.on_kink.items():
                for idx in zip(*np.nonzero(mask)) if mask.shape else ([()] if bool(mask) else []):
                    if one is None:
                        continue
                    eff[n][idx] = am * one.plus[n][idx] + bm * one.minus[n][idx]
            missing = "" if one is not None else " (unavailable: compared with the point value)"
            notes.append(f"{n_k} of {total} coordinates sit on a kink: {scheme.name} is compared with its limit "
                         f"there, {text}{missing}")
    if n_ex:
        first = next(c.message for c in fdc.crossings if not c.on_kink)
        notes.append(f"{n_ex} of {total} coordinates excluded from the verdict: their stencil crosses a kink or "
                     f"domain boundary ({first}{'; ...' if n_ex > 1 else ''})")
        if n_ex == total:
            notes.append("every coordinate was excluded: the verdict says nothing; use a smaller step "
                         "(see verigrad.kinks.safe_steps)")
    return FDAdjustment(eff, fdc, tuple(notes))


# ---------------------------------------------------------------------------
# step studies
# ---------------------------------------------------------------------------


def directional_one_sided(model: Model, point: Mapping[str, np.ndarray], direction: Direction, *,
                          scale=None) -> tuple[Any, Any]:
    """Certified one-sided directional derivatives ``(d+, d-)`` of the loss along ``direction``.

    Parameters
    ----------
    model : Model
    point : mapping of str to ndarray
        x_p.
    direction : Direction
    scale : mpf, optional
        Absolute scale for the agreement test (default 1).

    Returns
    -------
    (mpf, mpf)
        ``d+ = lim_{t->0+} (f(x + t e) - f(x)) / t`` and ``d-`` (t -> 0-); Richardson
        extrapolation as in :func:`one_sided_gradient`.
    """
    res, _ = _richardson(model, point, [direction.entries()], [direction.label],
                         scale if scale else mpmath.mpf(1))
    return res[0]


@dataclass(frozen=True, eq=False)
class StudyKinks:
    """Kinks and domain boundaries met by a step sweep along one direction.

    Attributes
    ----------
    reference : mpf or None
        When the point is exactly on a kink that the direction moves: the
        scheme's limit ``alpha d+ + beta d-`` (:func:`kink_limit`), the value a
        study should measure its errors against instead of the point-value
        directional derivative.  None otherwise.
    plus, minus : mpf or None
        The one-sided directional derivatives (set with ``reference``).
    crossing : ndarray of bool
        Per step: some node lies across a site the point is not on (the row's
        error is not a truncation/round-off error; exclude it from fits).
    leaves_domain : ndarray of bool
        Per step: some node is outside the loss's domain.
    notes : tuple of str
    """

    reference: Any
    plus: Any
    minus: Any
    crossing: np.ndarray
    leaves_domain: np.ndarray
    notes: tuple[str, ...] = ()


def study_kinks(model: Model, point: Mapping[str, np.ndarray], direction: Direction, scheme: Scheme | str,
                steps: Sequence[float], *, dtype: Dtype | None = None, scale=None) -> StudyKinks:
    """Which steps of a sweep cross a site, and the reference value at a point on a kink.

    Parameters
    ----------
    model : Model
    point : mapping of str to ndarray
        x_p.
    direction : Direction
    scheme : Scheme or str
    steps : sequence of float
        The steps actually used (h_p).
    dtype : Dtype, optional
        Round the nodes to this dtype, as the study does.
    scale : mpf, optional
        Scale of the gradient, for the agreement test of the one-sided derivatives.

    Returns
    -------
    StudyKinks
    """
    scheme = get_scheme(scheme) if isinstance(scheme, str) else scheme
    n = len(steps)
    crossing = np.zeros(n, dtype=bool)
    leaves = np.zeros(n, dtype=bool)
    sites = find_sites(model)
    if not sites or scheme.kind is SchemeKind.COMPLEX_STEP:
        return StudyKinks(None, None, None, crossing, leaves, ())
    notes: list[str] = []
    on = [(sd.site, idx) for sd in distance_along(model, point, direction, sites, verify=False)
          for idx in np.ndindex(*sd.site.shape) if sd.crossing[idx] == 0.0]
    first = None
    for r, h in enumerate(steps):
        if not h > 0 or not math.isfinite(h):
            continue
        ts = [c * Fraction(float(h)) for c in scheme.offsets]
        crs = stencil_crossings(model, point, direction, ts, sites, dtype=dtype, locate=False)
        crossing[r] = any(not c.on_kink for c in crs)
        leaves[r] = any(c.leaves_domain for c in crs)
        if crossing[r] and (first is None or h < steps[first]):
            first = r
    if first is not None:
        h = float(steps[first])
        ts = [c * Fraction(h) for c in scheme.offsets]
        msg = next(c.message for c in stencil_crossings(model, point, direction, ts, sites, dtype=dtype,
                                                        label=f"{scheme.name} h={_sci(h)}") if not c.on_kink)
        notes.append(f"{int(crossing.sum())} of {n} steps put a node across a kink or domain boundary "
                     f"(from h = {_sci(h)}: {msg}); their errors are not truncation or round-off and they are "
                     f"excluded from fits")
    ref = dp = dm = None
    if on:
        dp, dm = directional_one_sided(model, point, direction, scale=scale)
        alpha, beta, text = kink_limit(scheme)
        with mpmath.workprec(DEFAULT_PREC + 128):
            ref = (mpmath.mpf(alpha.numerator) / alpha.denominator) * dp + (mpmath.mpf(beta.numerator)
                                                                            / beta.denominator) * dm
        site, idx = on[0]
        notes.append(f"the point is on the kink of {site.describe(idx)} along {direction.label}: the loss has no "
                     f"derivative there (d+ = {mpmath.nstr(dp, 10)}, d- = {mpmath.nstr(dm, 10)}); {scheme.name} "
                     f"tends to {text} = {mpmath.nstr(ref, 10)}, which the errors are measured against; its "
                     f"truncation error is O(h) whatever the order of the scheme")
    return StudyKinks(ref, dp, dm, crossing, leaves, tuple(notes))



@dataclass(frozen=True, eq=False)
class RecommendedSteps:
    """Per-entry nominal steps that keep every stencil inside the smooth region of the point.

    Attributes
    ----------
    steps : dict of str to ndarray
        Nominal step per entry (float64), for :func:`verigrad.studies.fd_gradient`.
    reduced : dict of str to ndarray of bool
        Entries whose step was reduced below the rule of thumb to stay away from a site.
    on_kink : dict of str to ndarray of bool
        Entries exactly on a kink: no step keeps a two-sided stencil smooth; their estimates
        are compared with the scheme's limit of the one-sided derivatives.
    notes : tuple of str
    """

    steps: dict
    reduced: dict
    on_kink: dict
    notes: tuple


def recommend_steps(model: Model, *, dtype: Dtype, scheme: Scheme | str,
                    step_mode: StepMode = StepMode.RELATIVE) -> RecommendedSteps:
    """The rule-of-thumb step eps^(1/(p+1)), reduced per entry where a stencil would cross a site.

    For each coordinate whose stencil at the rule-of-thumb step crosses a kink or a domain
    boundary, the step becomes :func:`safe_steps`' verified step along that coordinate (the
    stencil then stays on the point's side); coordinates exactly on a kink keep the rule of
    thumb and are reported against the one-sided derivatives (see :func:`kink_limit`).
    """
    scheme = get_scheme(scheme) if isinstance(scheme, str) else scheme
    point = point_in_dtype(model.point, dtype)
    base = recommended_step(scheme, dtype)
    steps = {n: entry_steps(base, n, point[n], step_mode).reshape(model.shape(n)) for n in model.gradient}
    reduced = {n: np.zeros(model.shape(n), dtype=bool) for n in model.gradient}
    if scheme.kind is SchemeKind.COMPLEX_STEP:
        return RecommendedSteps(steps, reduced, {n: r.copy() for n, r in reduced.items()}, ())
    sites = find_sites(model)
    fdc = fd_crossings(model, dtype=dtype, scheme=scheme, step=base, step_mode=step_mode, sites=sites, point=point)
    notes = []
    for name, mask in fdc.excluded.items():
        for idx in zip(*np.nonzero(mask)) if mask.shape else ([()] if bool(mask) else []):
            idx = tuple(int(q) for q in idx)
            safe = safe_steps(model, point, coordinate_direction(model, name, idx), scheme, sites=sites, dtype=dtype)
            if 0 < safe.step < steps[name][idx]:
                steps[name][idx] = safe.step
                reduced[name][idx] = True
    n_red = sum(int(r.sum()) for r in reduced.values())
    if n_red:
        notes.append(f"step reduced at {n_red} coordinate{'s' if n_red > 1 else ''} to keep {scheme.name}'s "
                     f"stencil inside the smooth region")
    n_k = sum(int(m.sum()) for m in fdc.on_kink.values())
    if n_k:
        notes.append(f"{n_k} coordinate{'s are' if n_k > 1 else ' is'} exactly on a kink: compared with "
                     f"{scheme.name}'s limit of the one-sided derivatives")
    return RecommendedSteps(steps, reduced, dict(fdc.on_kink), tuple(notes))
