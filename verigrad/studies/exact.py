"""Exact losses at the nodes of a stencil, for the studies' exact split.

The loss at the exact nodes x_p + c_k h_p e and at the rounded nodes y_k, in Arb ball
arithmetic (:func:`_arb_losses`) or in mpmath (:func:`_mp_losses`, :func:`_mp_loss`),
which also marks nodes outside the loss's domain (None).
"""

from __future__ import annotations

import mpmath
import numpy as np

from verigrad.engine.model import Model
from verigrad.errors import LimitError as LimitErrorType
from verigrad.fd.nodes import batched_leaves

__all__: list[str] = []


def _line_leaves(model: Model, point: dict, values_per_node: list[dict[tuple[str, int], object]], *,
                 as_object: bool) -> dict[str, np.ndarray]:
    """Batched leaves: the point (as exact mpmath numbers with ``as_object``) repeated per node."""
    base = {n: (_obj(point[n]) if as_object else np.asarray(point[n]))[None, ...] for n in model.leaves}
    return batched_leaves(base, values_per_node)


def _obj(a: np.ndarray) -> np.ndarray:
    from verigrad.engine.backends import MPBackend

    return MPBackend.from_float(np.asarray(a))


def _mp_loss(model: Model, leaves: dict, prec: int, complex: bool = False) -> np.ndarray:
    """Exact loss at every node of a batch; None where a node is outside the loss's domain."""
    from verigrad.engine.backends import MPBackend
    from verigrad.errors import DomainError
    from verigrad.expr.evaluate import evaluate

    with mpmath.workprec(prec):
        try:
            return evaluate([model.loss], leaves, MPBackend(complex=complex))[0]
        except DomainError:
            pass
        B = max(v.shape[0] for v in leaves.values())
        out = np.empty(B, dtype=object)
        for b in range(B):
            one = {n: (v[b:b + 1] if v.shape[0] > 1 else v) for n, v in leaves.items()}
            try:
                out[b] = evaluate([model.loss], one, MPBackend(complex=complex))[0][0]
            except DomainError:
                out[b] = None
        return out


def _mp_losses(model, point, exact_nodes, float_nodes, prec, is_cs):
    """Exact loss at the exact and at the rounded nodes of a sweep, with mpmath (None outside the domain)."""
    with mpmath.workprec(prec):
        if is_cs:
            ex_vals = [{k: mpmath.mpc(mpmath.mpf(float(re)), mpmath.mpf(im.numerator) / im.denominator)
                        for k, (re, im) in d.items()} for d in exact_nodes]
            fl_vals = [{k: mpmath.mpc(float(re), im) for k, (re, im) in d.items()} for d in float_nodes]
        else:
            ex_vals = [{k: mpmath.mpf(q.numerator) / q.denominator for k, q in d.items()} for d in exact_nodes]
            fl_vals = [{k: mpmath.mpf(v) for k, v in d.items()} for d in float_nodes]
        f_exact = _mp_loss(model, _line_leaves(model, point, ex_vals, as_object=True), prec, is_cs)
        f_nodes = _mp_loss(model, _line_leaves(model, point, fl_vals, as_object=True), prec, is_cs)
    return f_exact, f_nodes


def _arb_losses(model, point, exact_nodes, float_nodes, prec):
    """The same in Arb ball arithmetic (midpoints as mpf), or None when a ball cannot decide a node
    (a node on a kink, tie or domain edge): the caller then uses mpmath, which marks such nodes."""
    from verigrad.engine import arb as ab
    from verigrad.expr.evaluate import evaluate

    if not ab.available():
        return None
    out = []
    with ab.arb_precision(prec):
        base = {n: ab.from_float(point[n]) for n in model.leaves}
        for nodes, conv in ((exact_nodes, lambda q: ab.arb(q.numerator) / q.denominator),
                            (float_nodes, lambda v: ab.arb(v))):
            leaves = batched_leaves({n: a[None, ...] for n, a in base.items()},
                                    [{k: conv(v) for k, v in d.items()} for d in nodes])
            try:
                f = evaluate([model.loss], leaves, ab.ArbBackend())[0]
            except (ab.Undecided, ArithmeticError, LimitErrorType):
                return None
            if not all(v.is_finite() for v in f.ravel()):
                return None
            out.append(np.array([ab.to_mpf(v) for v in f.ravel()], dtype=object))
    return out[0], out[1]
