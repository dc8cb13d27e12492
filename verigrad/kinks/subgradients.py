"""Points on a kink and the set of valid gradients there.

:func:`at_kink` finds the kink entries whose condition is exactly 0 at the point;
:func:`subgradient_set` describes the set of valid gradients a candidate may return
there: one :class:`Choice` per kink entry, through the chain rule.

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
chosen convention, so the effective truth is an exact element of the set
(:mod:`verigrad.kinks.acceptance`).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import mpmath
import numpy as np

from verigrad.engine.backends import FloatBackend, MPBackend
from verigrad.engine.model import Model
from verigrad.expr.evaluate import eval_node
from verigrad.expr.graph import Node, Op, topological
from verigrad.kinks.conditions import DEFAULT_PREC, _mp_base, site_values
from verigrad.kinks.sites import Site, SiteKind, SiteRule, find_sites

__all__ = ["AtKink", "at_kink", "Choice", "SubgradientSet", "subgradient_set"]


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
        if r is SiteRule.RELU or (r is SiteRule.JUMP and self.site.name == "step"):
            return [(self.nodes[0], self.entry, w[1])]
        if r is SiteRule.ABS or r is SiteRule.JUMP:  # sign: the same carrier as abs'
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
        if r is SiteRule.JUMP and self.site.name == "step":
            s = w[1]
            note = {0: " (the branch below the jump: the left side)", 1: " (the branch above it: the right side)"}
            return f"mask [{self.site.argument_text[0]} > 0] taken as {_num_text(s)} at 0{note.get(s, ' (in [0, 1])')}"
        if r is SiteRule.JUMP:
            u = w[1] - w[0]
            note = {0: " (numpy's sign(0))", 1: " (the right side)", -1: " (the left side)"}
            return f"sign(0) taken as {_num_text(u)}{note.get(u, ' (in [-1, 1])')}"
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
    """:func:`verigrad.expr.evaluate.evaluate` with some entries of some nodes replaced, per batch row."""
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
        elif r is SiteRule.JUMP and site.name == "step":
            # a comparison's mask (where, <, ...): its one-sided values 0 and 1, like relu's step
            node = car["step"].get(x.id)
            if node is not None:
                out.extend(Choice(site, e, (e,), (node,), (Fraction(1), Fraction(0))) for e in entries)
        elif r is SiteRule.ABS or r is SiteRule.JUMP:
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
    # vertex rows that provably change no gradient entry (beyond BALL_DROP of its scale: a tie in a
    # dead pooling window, whose cotangent a relu stops) are screened on double-double balls, all at
    # once; only the others, row 0 and the joint row, are evaluated in mpmath
    skip = np.zeros(len(rows), dtype=bool)
    if len(rows) > 8:
        from verigrad.kinks.ballscreen import negligible_rows

        nb = len(base_assign)
        skip[1:-1] = negligible_rows(model, point, nodes, base_assign, [r[nb:] for r in rows[1:-1]])
    exact = [r for r in range(len(rows)) if not skip[r]]
    with mpmath.workprec(prec):
        leaves = _mp_base(model, point)
        conv = lambda q: mpmath.mpf(q.numerator) / q.denominator  # noqa: E731
        G = np.empty((len(rows), sum(int(np.prod(s, dtype=np.int64)) for s in shapes)), dtype=object)
        for start in range(0, len(exact), chunk):
            idx = exact[start:start + chunk]
            part = [rows[r] for r in idx]
            vals = _evaluate_with(nodes, leaves, MPBackend(), _overrides(part, conv), len(part))
            G[idx] = _flatten(vals, len(part))
        if skip.any():
            G[np.flatnonzero(skip)] = G[0][None, :]
        base = G[0].copy()
        scale = max([abs(v) for v in base] + [mpmath.mpf(0)])
        tiny = mpmath.ldexp(max(scale, mpmath.mpf(1)), -(prec - 24))
        # rows screened out on balls change nothing: their difference is 0 (and never "nonzero")
        live = np.flatnonzero(~skip[1:-1]) if columns else np.zeros(0, dtype=np.int64)
        diff = np.full((len(columns), G.shape[1]), mpmath.mpf(0), dtype=object)
        nonzero = np.zeros(diff.shape, dtype=bool)
        if live.size and G.shape[1]:
            diff[live] = G[1 + live] - base[None, :]
            nonzero[live] = np.vectorize(lambda d: abs(d) > tiny, otypes=[bool])(diff[live])
        keep_choice = [bool(np.any(nonzero[[k for k, (jj, _) in enumerate(columns) if jj == j]]))
                       for j in range(len(choices))]
        interacting = False
        if columns:
            last = [k for k, (j, v) in enumerate(columns) if v == choices[j].size - 1]
            last = [k for k in last if not skip[1 + k]]
            summed = np.sum(diff[last], axis=0) if last else np.full(G.shape[1], mpmath.mpf(0), dtype=object)
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
