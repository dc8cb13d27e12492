"""Adaptive extrapolation (Ridders, numDeriv) applied to a case's loss: the float part.

The methods themselves (:class:`verigrad.schemes.adaptive.Ridders`,
:class:`verigrad.schemes.adaptive.NumDeriv`) work on a scalar function of the offset ``t``
along a line; here the line is ``t -> f_p(fl_p(x_p + t e))``: the loss evaluated in dtype p at
the nodes rounded once from their exact values (the same nodes as every other finite
difference, :mod:`verigrad.fd.nodes`). All the offsets of a method are evaluated in one batch
(the algorithm's early exit only changes how many it *uses*; the loss has no side effects).

:func:`adaptive_directional` gives one :class:`~verigrad.schemes.adaptive.Estimate` along a
direction; :func:`adaptive_gradient` one per coordinate (:class:`AdaptiveGradient`). Their
exact truncation / step / round-off split is in :mod:`verigrad.studies.adaptive`.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Mapping, Sequence

import numpy as np

from verigrad.casefile.loader import point_in_dtype
from verigrad.engine.backends import round_fraction
from verigrad.engine.model import Model
from verigrad.errors import UsageError
from verigrad.fd.directions import Direction
from verigrad.fd.nodes import batched_leaves
from verigrad.fd.steps import entry_steps
from verigrad.schemes import StepMode
from verigrad.schemes.adaptive import Estimate, EstimateStatus, NumDeriv, Ridders
from verigrad.spec import Dtype

__all__ = ["AdaptiveGradient", "adaptive_directional", "adaptive_gradient", "line_values", "method_step"]

#: floats of the perturbed variable one batch of the float evaluation holds
_BATCH = 2_000_000


def _node_entries(point, direction: Direction, t: float, np_dt) -> dict[tuple[str, int], object]:
    """The changed entries of the node x_p + t e, each rounded once from its exact value."""
    out = {}
    tq = Fraction(float(t))
    for name, i, e in direction.entries():
        x = point[name].reshape(-1)[i]
        if e == 1:
            with np.errstate(all="ignore"):
                out[(name, i)] = np_dt.type(x + np_dt.type(t))  # one IEEE addition: correctly rounded
        else:
            out[(name, i)] = np_dt.type(round_fraction(Fraction(float(x)) + tq * e, np_dt))
    return out


def _evaluate(model: Model, point, rows: Sequence[Mapping[tuple[str, int], object]], dtype: Dtype,
              loss_values=None) -> np.ndarray:
    """f_p at every row (the loss expression, or the case's ``loss_code``), in bounded batches."""
    np_dt = dtype.numpy
    touched = {n for row in rows for (n, _) in row}
    width = max(1, sum(int(point[n].size) for n in touched))
    per = max(1, _BATCH // width)
    base = {n: point[n][None, ...] for n in model.leaves}
    parts = []
    for start in range(0, len(rows), per):
        chunk = rows[start:start + per]
        leaves = batched_leaves(base, chunk)
        if loss_values is not None:
            calls = [{n: np.array(leaves[n][b if leaves[n].shape[0] > 1 else 0]) for n in model.leaves}
                     for b in range(len(chunk))]
            parts.append(np.asarray(loss_values(calls), dtype=np_dt).reshape(-1))
        else:
            with np.errstate(all="ignore"):
                parts.append(np.asarray(model.float_eval([model.loss], leaves, np_dt, batched=True)[0]).reshape(-1))
    return np.concatenate(parts) if parts else np.empty(0, dtype=np_dt)


def line_values(model: Model, direction: Direction, dtype: Dtype, *, loss_values=None,
                point: Mapping[str, np.ndarray] | None = None) -> Callable[[Sequence[float]], np.ndarray]:
    """``offsets -> f_p(fl_p(x_p + t e))`` for every offset ``t`` (one batch)."""
    np_dt = dtype.numpy
    point = point_in_dtype(model.point, dtype) if point is None else point

    def values(offsets: Sequence[float]) -> np.ndarray:
        rows = [_node_entries(point, direction, t, np_dt) for t in offsets]
        return _evaluate(model, point, rows, dtype, loss_values)

    return values


def method_step(method: Ridders | NumDeriv, x: float, step: float | None, step_mode: StepMode) -> float:
    """The first step of ``method`` at an entry of value ``x``.

    Ridders: its own ``h0`` when given, else ``step`` (``[check] steps``, a study's nominal step),
    else :attr:`Ridders.DEFAULT_H0`; scaled by ``max(1, |x|)`` in relative mode. numDeriv: its
    own rule ``|d x| + eps (|x| < zero_tol)`` (a given ``step`` replaces ``d``).
    """
    if isinstance(method, NumDeriv):
        if step is None:
            return method.first_step(x)
        return NumDeriv(d=Fraction(float(step)), eps=method.eps, zero_tol=method.zero_tol, r=method.r,
                        v=method.v, side=method.side).first_step(x)
    h = float(method.h0) if method.h0 is not None else (float(step) if step is not None
                                                        else float(Ridders.DEFAULT_H0))
    if method.h0 is None and step_mode is StepMode.RELATIVE:
        h *= max(1.0, abs(float(x)))
    return h


def adaptive_directional(model: Model, *, dtype: Dtype, method: Ridders | NumDeriv, direction: Direction,
                         step: float | None = None, loss_values=None) -> Estimate:
    """One adaptive estimate of the derivative along ``direction`` in ``dtype``.

    Parameters
    ----------
    step : float, optional
        The first step (Ridders' ``h0``, numDeriv's ``h``); default the method's own
        (Ridders: ``h0`` or :attr:`Ridders.DEFAULT_H0`; numDeriv: ``|d x| + eps (|x| < zero_tol)``
        with ``x`` the perturbed entry for a coordinate direction, 0 otherwise).

    Returns
    -------
    Estimate
    """
    point = point_in_dtype(model.point, dtype)
    values = line_values(model, direction, dtype, loss_values=loss_values, point=point)
    if step is None:
        x = float(point[direction.variable][direction.index]) if direction.variable is not None else 0.0
        step = method_step(method, x, None, StepMode.ABSOLUTE)
    kw = {"tiny_zero": model.case.parameter_count > 1} if isinstance(method, NumDeriv) else {}
    return method.estimate(None, h=float(step), dtype=dtype.numpy, values=values, **kw)


@dataclass(frozen=True, eq=False)
class AdaptiveGradient:
    """Adaptive estimates of every (or the chosen) coordinate of the gradient.

    Attributes
    ----------
    value, error_estimate : dict of str to ndarray
        Per variable, in the dtype (NaN where not estimated).
    status : dict of str to ndarray of str
        :class:`~verigrad.schemes.adaptive.EstimateStatus` values ("" where not estimated).
    steps : dict of str to ndarray of float64
        The first step used per entry.
    estimates : dict of (str, int) to Estimate
        The full record per estimated entry (flat index).
    """

    value: dict[str, np.ndarray]
    error_estimate: dict[str, np.ndarray]
    status: dict[str, np.ndarray]
    steps: dict[str, np.ndarray]
    estimates: dict[tuple[str, int], Estimate]

    def counts(self) -> dict[str, int]:
        """How many entries ended with each status."""
        out = {s.value: 0 for s in EstimateStatus}
        for e in self.estimates.values():
            out[e.status.value] += 1
        return out


def adaptive_gradient(model: Model, *, dtype: Dtype, method: Ridders | NumDeriv, step=None,
                      step_mode: StepMode = StepMode.RELATIVE, loss_values=None,
                      entries: Mapping[str, np.ndarray] | None = None) -> AdaptiveGradient:
    """Ridders or numDeriv for every coordinate, in ``dtype``.

    Parameters
    ----------
    step : float or mapping of str to ndarray, optional
        A nominal first step (see :func:`method_step`), or a per-entry mapping of first steps,
        used as given (absolute; NaN entries take the method's own step).
    entries : mapping of str to ndarray of int, optional
        Estimate only these flat indices per variable.

    Returns
    -------
    AdaptiveGradient

    Notes
    -----
    numDeriv's rule for functions of several variables (an entry's later first-level values
    set to 0 once one is below 1e-20) applies when the case has more than one parameter, as
    in R.
    """
    if not isinstance(method, (Ridders, NumDeriv)):
        raise UsageError(f"adaptive_gradient needs ridders(...) or numderiv(...), got {method!r}")
    np_dt = dtype.numpy
    point = point_in_dtype(model.point, dtype)
    many = model.case.parameter_count > 1
    out_v, out_e, out_s, out_h, records = {}, {}, {}, {}, {}
    for name in model.gradient:
        x = point[name].reshape(-1)
        n = x.size
        chosen = np.arange(n) if entries is None else np.unique(np.asarray(entries.get(name, ()), dtype=np.int64))
        v = np.full(n, np.nan, dtype=np_dt)
        e = np.full(n, np.nan, dtype=np_dt)
        s = np.full(n, "", dtype=object)
        hs = np.full(n, np.nan)
        if step is None or not isinstance(step, Mapping) or name not in step:
            nominal = [method_step(method, float(x[i]), step, step_mode) for i in chosen]
        else:
            per = entry_steps(step, name, x, step_mode)  # per-entry first steps, used as given
            nominal = [float(per[i]) if np.isfinite(per[i]) else method_step(method, float(x[i]), None, step_mode)
                       for i in chosen]
        rows, spans = [], []
        for i, h in zip(chosen, nominal):
            offsets = method.nodes(h, np_dt)
            spans.append((len(rows), len(offsets)))
            for t in offsets:
                with np.errstate(all="ignore"):
                    rows.append({(name, int(i)): np_dt.type(x[i] + np_dt.type(t))})
        F = _evaluate(model, point, rows, dtype, loss_values)
        for (i, h), (start, count) in zip(zip(chosen, nominal), spans):
            vals = F[start:start + count]
            kw = {"tiny_zero": many} if isinstance(method, NumDeriv) else {}
            est = method.estimate(None, h=h, dtype=np_dt, values=lambda _offs, vals=vals: vals, **kw)
            v[i], e[i], s[i], hs[i] = est.value, est.error_estimate, est.status.value, h
            records[(name, int(i))] = est
        shape = point[name].shape
        out_v[name], out_e[name] = v.reshape(shape), e.reshape(shape)
        out_s[name], out_h[name] = s.reshape(shape), hs.reshape(shape)
    return AdaptiveGradient(out_v, out_e, out_s, out_h, records)
