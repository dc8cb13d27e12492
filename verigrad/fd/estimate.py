"""The full finite-difference gradient in a float dtype: the float part of a check.

For a linear scheme (offsets c_k, weights w_k), every coordinate i and dtype p:
F_k = f_p(y_k) at the nodes y_k = fl_p(x_p + c_k h_p e_i) and
D_float = fl_p(sum_k fl_p(w_k) F_k / h_p), accumulated in p, batched over the
coordinates and chunked (:func:`fd_gradient`). The complex step Im f(x + i h_p e)/h_p
is evaluated in complex64/complex128; it is refused for a loss that is not analytic
(:func:`non_analytic_sites`).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Mapping

import numpy as np

from verigrad.casefile.loader import point_in_dtype
from verigrad.engine.model import Model
from verigrad.errors import UsageError
from verigrad.expr.evaluate import shared_workspace
from verigrad.expr.graph import Op, topological
from verigrad.fd.nodes import _nodes
from verigrad.fd.steps import entry_steps
from verigrad.schemes import Scheme, SchemeKind, StepMode, get_scheme
from verigrad.spec import Dtype

__all__ = ["fd_gradient", "non_analytic_sites"]


def non_analytic_sites(model: Model) -> list[str]:
    """Sub-expressions of the loss through which the complex step is invalid."""
    out = []
    for n in topological([model.loss]):
        if n.op is Op.UNARY and not n.fn.analytic:
            out.append(n.label)
        elif n.op in (Op.MAXIMUM, Op.MAX):
            out.append(n.label)
    return out


def _refuse_complex(model: Model) -> None:
    sites = non_analytic_sites(model)
    if sites:
        raise UsageError(f"complex-step is refused for {model.case.name}: the loss is not analytic at "
                         f"{'; '.join(dict.fromkeys(sites))} (abs/relu/maximum/max have no complex extension "
                         f"that gives the derivative)", hint="use a real scheme such as central or central4")


def _prepare(model: Model, scheme: Scheme | str, dtype: Dtype):
    """(scheme, is complex step, numpy dtype, point in dtype); the complex step refused for non-analytic losses."""
    scheme = get_scheme(scheme) if isinstance(scheme, str) else scheme
    is_cs = scheme.kind is SchemeKind.COMPLEX_STEP
    if is_cs:
        _refuse_complex(model)
    return scheme, is_cs, dtype.numpy, point_in_dtype(model.point, dtype)


def fd_gradient(model: Model, *, dtype: Dtype, scheme: Scheme | str, step: float | Mapping[str, np.ndarray],
                step_mode: StepMode = StepMode.RELATIVE, max_batch_elements: int = 250_000,
                loss_values=None) -> dict[str, np.ndarray]:
    """The full finite-difference gradient in ``dtype`` (every coordinate), batched and chunked.

    Parameters
    ----------
    step : float or mapping of str to ndarray
        Nominal step; relative mode uses h * max(1, |x_i|) per coordinate. A mapping gives
        the nominal step of every entry (see :func:`verigrad.kinks.recommend_steps`).
    max_batch_elements : int
        Bound on (nodes in one batch) x (entries of the perturbed variable). It caps memory,
        and the default keeps each batched intermediate (2 MB in float64) inside a core's
        L2 cache: on a 2-core machine with 2 MB L2, batches of 2 M entries ran 3x slower
        for a 1000-dimensional Rosenbrock than batches of 250 k (``docs/benchmarks.md``).

    Returns
    -------
    dict of str to ndarray
        Estimates of ``dtype`` per variable.
    """
    scheme, is_cs, np_dt, point = _prepare(model, scheme, dtype)
    out: dict[str, np.ndarray] = {}
    workspace = shared_workspace()
    offsets = [Fraction(1)] if is_cs else list(scheme.offsets)
    weights = [float(w) for w in ([Fraction(1)] if is_cs else scheme.weights)]
    for name in model.gradient:
        x = point[name]
        n = x.size
        hp = entry_steps(step, name, x, step_mode).astype(np_dt)
        est = np.empty(n, dtype=np_dt)
        per = max(1, max_batch_elements // max(1, n * len(offsets)))
        for start in range(0, n, per):
            idx = np.arange(start, min(n, start + per))
            B = len(idx) * len(offsets)
            if is_cs:
                cdt = dtype.complex
                base = workspace.take((B, n), np.dtype(cdt))
                base[...] = x.astype(cdt).reshape(1, -1)
                base[np.arange(B), idx] += 1j * hp[idx].astype(cdt)
                leaves = {m: (base.reshape((B,) + x.shape) if m == name else point[m].astype(cdt)[None, ...])
                          for m in model.leaves}
                if loss_values is not None:
                    calls = [{m: np.array(leaves[m][b if m == name else 0]) for m in model.leaves} for b in range(B)]
                    F = np.asarray(loss_values(calls)).astype(cdt)
                else:
                    F = model.float_eval([model.loss], leaves, cdt, batched=True)[0]
                with np.errstate(all="ignore"):
                    est[idx] = (F.imag / hp[idx]).astype(np_dt)
                workspace.give(base)  # F is consumed: nothing refers to the rows any more
                continue
            base = workspace.take((B, n), np_dt)
            base[...] = x.reshape(1, -1)
            rows = np.arange(B)
            cols = np.repeat(idx, len(offsets))
            node_vals = np.stack([_nodes(x.ravel()[idx], hp[idx], c, np_dt) for c in offsets], axis=1).ravel()
            base[rows, cols] = node_vals
            leaves = {m: (base.reshape((B,) + x.shape) if m == name else point[m][None, ...]) for m in model.leaves}
            if loss_values is not None:
                calls = [{m: np.array(leaves[m][b if m == name else 0]) for m in model.leaves} for b in range(B)]
                F = np.asarray(loss_values(calls), dtype=np_dt)
            else:
                F = model.float_eval([model.loss], leaves, np_dt, batched=True)[0]
            F = F.reshape(len(idx), len(offsets))
            with np.errstate(all="ignore"):
                acc = np.zeros(len(idx), dtype=np_dt)
                for k, w in enumerate(weights):
                    acc = acc + np_dt.type(w) * F[:, k]
                est[idx] = acc / hp[idx]
            workspace.give(base)
        out[name] = est.reshape(x.shape)
    return out
