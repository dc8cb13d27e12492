"""Sites: the non-smooth places of the loss graph.

:func:`find_sites` finds every *site* of the loss graph: a kink (the derivative
jumps where a condition value is 0) or a domain boundary (the loss or its
derivative is undefined beyond it), each as an entry-wise condition on an
argument node, e.g. ``relu(Z1) at Z1 = 0``. A :class:`Site` names itself and its
entries in the words of the case file (``relu(Z1[2, 0])``, ``a[3] = delta``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from fractions import Fraction
from typing import Mapping, Sequence

import numpy as np

from verigrad.engine.model import Model
from verigrad.expr.graph import Node, Op, const_value, decode_index, topological

__all__ = ["SiteKind", "SiteRule", "Boundary", "Site", "find_sites", "POLE_FUNCTIONS"]

#: functions undefined at the poles 0, -1, -2, ... of Γ (their condition value is 1/Γ(x))
POLE_FUNCTIONS = frozenset({"gammaln", "digamma", "trigamma", "tetragamma"})


class SiteKind(enum.Enum):
    """What happens at a site: the derivative jumps (KINK) or the loss stops being defined (DOMAIN)."""

    KINK = "kink"
    DOMAIN = "domain"


class SiteRule(enum.Enum):
    """The operation that makes a site."""

    RELU = "relu"
    ABS = "abs"
    #: a jump of the value: ``step`` (the masks of comparisons, ``where``) and ``sign`` at argument 0
    JUMP = "jump"
    MAXIMUM = "maximum"
    MAX = "max"
    FUNCTION_DOMAIN = "function-domain"
    DIVISION = "division"
    POWER = "power"
    PRODUCT = "product"
    #: the 2-norm ``sqrt(sum(x*x))`` at ``x = 0`` and ``std`` where the variance is 0: the sqrt of a
    #: sum of squares (condition value: that sum, >= 0; the kink is where it is 0)
    NORM = "norm"


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

    def _comparison(self) -> str:
        """The user's comparison (``Z > 0``, from the node's label) that a ``step`` jump comes from."""
        return _paren(self.label.split(": ", 1)[-1])

    def _short(self) -> str:
        a = self.argument_text
        if self.rule is SiteRule.JUMP and self.name == "step":
            return f"the mask {self._comparison()}"
        if self.rule in (SiteRule.RELU, SiteRule.ABS, SiteRule.FUNCTION_DOMAIN, SiteRule.JUMP):
            return f"{self.name}({a[0]})"
        if self.rule is SiteRule.MAXIMUM:
            return f"{self.name}({a[0]}, {a[1]})"
        if self.rule is SiteRule.MAX:
            return f"max({a[0]})"
        if self.rule is SiteRule.PRODUCT:
            return f"prod({a[0]})"
        if self.rule is SiteRule.NORM:
            return f"{self.name}({a[0]})"
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
        if self.rule is SiteRule.JUMP and self.name == "step":
            return f"the mask {self._comparison()} at {self._arg_at(0, entry)} = 0"
        if self.rule in (SiteRule.RELU, SiteRule.ABS, SiteRule.FUNCTION_DOMAIN, SiteRule.JUMP):
            return f"{self.name}({self._arg_at(0, entry)})"
        if self.rule is SiteRule.MAXIMUM:
            ea = _sub_entry(entry, self.arguments[0].shape, self.shape)
            eb = _sub_entry(entry, self.arguments[1].shape, self.shape)
            return f"{self.name}({self._arg_at(0, ea)}, {self._arg_at(1, eb)})"
        if self.rule is SiteRule.MAX:
            return f"max({a[0]}) at {self._arg_at(0, entry)}"
        if self.rule is SiteRule.PRODUCT:
            return f"prod({a[0]}) at {self._arg_at(0, entry)}"
        if self.rule is SiteRule.NORM:  # one value per reduced group: name it by the result's entry
            return f"{self.name}({a[0]}){_idx(entry)}"
        e0 = _sub_entry(entry, self.arguments[0].shape, self.shape)
        if self.rule is SiteRule.POWER:
            return f"{_paren(self._arg_at(0, e0))}**{self.extra_text}"
        return f"division by {self._arg_at(0, e0)}"

    def location(self, entry: Sequence[int] = ()) -> str:
        """Where the condition holds at one entry: ``Z1[2, 0]`` or ``a[3] = delta``."""
        entry = tuple(int(i) for i in entry)
        if self.rule is SiteRule.NORM:
            inner = f"{self.argument_text[0]}" if self.name == "norm" else f"var({self.argument_text[0]})"
            return f"{inner}{' (group ' + _idx(entry) + ')' if entry else ''}"
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
            norm = _norm_kink(n, names)
            if norm is not None:
                out.append(norm)
            elif not fn.smooth:
                rule = {"relu": SiteRule.RELU, "abs": SiteRule.ABS}.get(fn.name, SiteRule.JUMP)
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


#: the markers that :mod:`verigrad.expr.arrays` puts in the label of the sqrt of ``norm`` and ``std``
_NORM_MARKERS = {"(the 2-norm has a kink where all its entries are 0)": "norm",
                 "(std has no derivative where the variance is 0)": "std"}


def _norm_kink(n: Node, names: Mapping[int, str]) -> Site | None:
    """The kink of a 2-norm at 0 or of ``std`` where the variance is 0 (the sqrt of a sum of squares,
    marked in its label by :mod:`verigrad.expr.arrays`), or None for any other sqrt.

    The sqrt's argument ``s >= 0`` is the condition value (0 exactly on the kink); the
    subgradient of the 2-norm there is the unit ball, that of ``std`` the ball of radius
    ``1/sqrt(n - ddof)`` around 0 in the deviations from the mean.
    """
    if n.fn.name != "sqrt":
        return None
    kind = next((v for k, v in _NORM_MARKERS.items() if n.label.endswith(k)), None)
    if kind is None:
        return None
    s = n.args[0]
    inner = s
    if kind == "std" and inner.op is Op.MUL:  # sum(d*d) * 1/(n - ddof)
        inner = inner.args[0]
    x = None
    if inner.op is Op.SUM and inner.args[0].op is Op.MUL:
        x = inner.args[0].args[0]
        if kind == "std" and x.op is Op.SUB:  # d = x - mean(x)
            x = x.args[0]
    xt = _text(x, names) if x is not None else _text(s, names)
    cond = f"{xt} = 0 (every entry)" if kind == "norm" else f"var({xt}) = 0 (all entries of {xt} equal)"
    return Site(SiteKind.KINK, SiteRule.NORM, n, (s,), n.label, kind, cond, Boundary.KINK, s.shape,
                argument_text=(xt,), sources=(None,))


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
    elif name in POLE_FUNCTIONS:
        # the poles 0, -1, -2, ... of Γ: the condition value is 1/Γ(x), zero exactly there
        cond = f"{xt} = 0, -1, -2, ..."
        dom, boundary = f"{xt} not in {{0, -1, -2, ...}}", Boundary.NONZERO
    else:
        cond, dom = f"{xt} = 0", f"{xt} > 0"
    return Site(SiteKind.DOMAIN, SiteRule.FUNCTION_DOMAIN, n, (x,), n.label, name, cond, boundary, x.shape,
                domain_text=dom, argument_text=(xt,), sources=(source,))
