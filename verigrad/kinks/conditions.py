"""Condition values of sites: exact (mpmath) or float, at a point or a batch of points.

A site's condition value is 0 exactly on its kink or boundary (:mod:`verigrad.kinks.sites`);
:func:`site_values` evaluates them exactly at a point. The private helpers evaluate
them for batches of nodes (rows that leave a domain are reported, not raised), read
their signs and tell when a node is on another side of a site than the point.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import mpmath
import numpy as np

from verigrad.engine.backends import MPBackend
from verigrad.engine.model import Model
from verigrad.errors import DomainError
from verigrad.expr.evaluate import _align, evaluate
from verigrad.expr.graph import Node
from verigrad.kinks.sites import POLE_FUNCTIONS, Boundary, Site, SiteRule

__all__ = ["site_values", "nondifferentiable_error"]


#: Working precision (bits) of condition values unless a caller asks for more.
DEFAULT_PREC = 192


def _is_object(a: np.ndarray) -> bool:
    return a.dtype == object


def _cos(x: np.ndarray) -> np.ndarray:
    if _is_object(x):
        return np.frompyfunc(mpmath.cos, 1, 1)(x).astype(object)
    return np.cos(x)


def _rgamma(x: np.ndarray) -> np.ndarray:
    """1/Γ(x): zero exactly at the poles 0, -1, -2, ... of gammaln and digamma, nonzero elsewhere."""
    if _is_object(x):
        return np.frompyfunc(mpmath.rgamma, 1, 1)(x).astype(object)
    from scipy.special import rgamma

    return rgamma(x)


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
    if r in (SiteRule.RELU, SiteRule.ABS, SiteRule.PRODUCT, SiteRule.NORM):
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
        elif name in POLE_FUNCTIONS:
            v = _rgamma(x)
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
        All argument nodes are evaluated in one :func:`~verigrad.expr.evaluate.evaluate` call.

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


def nondifferentiable_error(model: Model, point: Mapping[str, np.ndarray], exc: DomainError) -> DomainError:
    """A clearer error for a point exactly on the kink of a 2-norm or ``std`` (a sqrt of a sum of squares).

    The engines evaluate ``norm(x)`` as ``sqrt(sum(x*x))``, whose derivative is undefined at
    ``x = 0``; they stop there with a domain error of ``sqrt``.  When a ``norm``/``std`` kink
    site (:data:`verigrad.kinks.sites.SiteRule.NORM`) has its condition exactly 0 at the point,
    the returned error says so (the loss is defined but not differentiable there; which
    subgradients exist; how to move the point); otherwise ``exc`` itself is returned.

    Parameters
    ----------
    model : Model
    point : mapping of str to ndarray
    exc : DomainError
        What the certification raised.

    Returns
    -------
    DomainError
    """
    from verigrad.kinks.sites import SiteKind, find_sites

    sites = [s for s in find_sites(model) if s.rule is SiteRule.NORM and s.kind is SiteKind.KINK]
    if not sites:
        return exc
    try:
        vals = site_values(model, point, sites)
    except DomainError:
        return exc
    for s, v in zip(sites, vals):
        zero = [idx for idx in np.ndindex(*s.shape) if not v[(0,) + idx]]
        if not zero:
            continue
        x = s.argument_text[0]
        where = s.describe(zero[0]) + (f" (and {len(zero) - 1} more)" if len(zero) > 1 else "")
        if s.name == "norm":
            sub = f"its subgradients there are the unit ball {{g : ||g||_2 <= 1}} (in {x}'s entries)"
        else:
            sub = (f"its subgradients there are the ball of radius 1/sqrt(n - ddof) around 0 (in the deviations of "
                   f"{x} from its mean)")
        return DomainError(f"not differentiable at this point: it is on the kink of {where} "
                           f"({s.location(zero[0])} = 0 exactly); the loss is defined there ({s.name} = 0) "
                           f"but has no gradient, and {sub}; verigrad grades gradients where they exist: move the point off the kink "
                           f"(another value or init of {x})", expression=s.label)
    return exc
