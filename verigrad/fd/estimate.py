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
from typing import Mapping, Sequence

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

__all__ = ["fd_gradient", "fd_gradients", "fd_directional", "non_analytic_sites"]


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
    if not isinstance(scheme, Scheme):
        raise UsageError(f"{scheme.name} is an adaptive method, not a linear scheme: use "
                         "verigrad.fd.adaptive_gradient / adaptive_directional (the split: "
                         "verigrad.studies.run_adaptive_study)")
    is_cs = scheme.kind is SchemeKind.COMPLEX_STEP
    if is_cs:
        _refuse_complex(model)
        _ = dtype.complex  # raises for float16/bfloat16 (UsageError: no complex type of 16-bit parts)
    return scheme, is_cs, dtype.numpy, point_in_dtype(model.point, dtype)


def fd_gradient(model: Model, *, dtype: Dtype, scheme: Scheme | str, step: float | Mapping[str, np.ndarray],
                step_mode: StepMode = StepMode.RELATIVE, max_batch_elements: int = 250_000,
                loss_values=None, entries: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
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
    entries : mapping of str to ndarray of int, optional
        Estimate only these coordinates (flat C-order indices per variable); every other
        entry of the result is NaN, and a variable not in the mapping is all NaN. The cost
        is that of the chosen coordinates only (a sampled check of a large gradient).

    Returns
    -------
    dict of str to ndarray
        Estimates of ``dtype`` per variable.
    """
    return fd_gradients(model, dtype=dtype, scheme=scheme, steps=[step], step_mode=step_mode,
                        max_batch_elements=max_batch_elements, loss_values=loss_values, entries=entries)[0]


def fd_gradients(model: Model, *, dtype: Dtype, scheme: Scheme | str,
                 steps: Sequence[float | Mapping[str, np.ndarray]], step_mode: StepMode = StepMode.RELATIVE,
                 max_batch_elements: int = 250_000, loss_values=None,
                 entries: Mapping[str, np.ndarray] | None = None) -> list[dict[str, np.ndarray]]:
    """:func:`fd_gradient` at several steps, the stencils of every step in the same batches.

    Each estimate is the one :func:`fd_gradient` gives at that step: a batched evaluation
    computes every row of the batch with the same operations (numpy's stacked matmul calls
    BLAS once per row; reductions and elementwise functions do not mix rows), so only the
    number of evaluations changes -- one per variable and chunk instead of one per step,
    which is what a sweep over K steps of a small model spends its time on.

    Parameters
    ----------
    steps : sequence of float or mapping of str to ndarray
        Nominal steps, as ``step`` of :func:`fd_gradient`.
    max_batch_elements : int
        Bound on (nodes in one batch) x (entries of the perturbed variable), over all steps.

    Returns
    -------
    list of dict of str to ndarray
        One :func:`fd_gradient` result per step, in order.

    See Also
    --------
    fd_gradient : the other parameters.
    """
    scheme, is_cs, np_dt, point = _prepare(model, scheme, dtype)
    if scheme.derivative != 1:
        raise UsageError(f"{scheme.name} estimates derivative {scheme.derivative}, not the gradient",
                         hint="study it along a line: verigrad study CASE --scheme \"central(deriv=2)\"")
    M = len(steps)
    out: list[dict[str, np.ndarray]] = [{} for _ in range(M)]
    workspace = shared_workspace()
    offsets = [Fraction(1)] if is_cs else list(scheme.offsets)
    weights = [float(w) for w in ([Fraction(1)] if is_cs else scheme.weights)]
    K = len(offsets)
    for name in model.gradient:
        x = point[name]
        n = x.size
        xf = x.ravel()
        H = np.stack([entry_steps(st, name, x, step_mode).astype(np_dt).ravel() for st in steps]) if M else \
            np.empty((0, n), dtype=np_dt)
        if entries is None:
            chosen = np.arange(n)
            est = np.empty((M, n), dtype=np_dt)
        else:
            chosen = np.sort(np.asarray(entries.get(name, ()), dtype=np.int64).ravel())
            if chosen.size > 1:  # sorted unique without np.unique, whose first call imports numpy.ma (~60 ms)
                chosen = chosen[np.concatenate(([True], chosen[1:] != chosen[:-1]))]
            if chosen.size and (chosen[0] < 0 or chosen[-1] >= n):
                raise ValueError(f"entries of {name} must lie in [0, {n}); got {chosen[0]}..{chosen[-1]}")
            est = np.full((M, n), np.nan, dtype=np_dt)
        # units (step m, coordinate i), step-major: with one step, exactly fd_gradient's chunks
        unit_m = np.repeat(np.arange(M), chosen.size)
        unit_i = np.tile(chosen, M)
        per = max(1, max_batch_elements // max(1, n * K))
        for start in range(0, unit_i.size, per):
            um, idx = unit_m[start:start + per], unit_i[start:start + per]
            hu = H[um, idx]
            B = len(idx) * K
            if is_cs:
                cdt = dtype.complex
                base = workspace.take((B, n), np.dtype(cdt))
                base[...] = x.astype(cdt).reshape(1, -1)
                base[np.arange(B), idx] += 1j * hu.astype(cdt)
                leaves = {m: (base.reshape((B,) + x.shape) if m == name else point[m].astype(cdt)[None, ...])
                          for m in model.leaves}
                if loss_values is not None:
                    calls = [{m: np.array(leaves[m][b if m == name else 0]) for m in model.leaves} for b in range(B)]
                    F = np.asarray(loss_values(calls)).astype(cdt)
                else:
                    F = model.float_eval([model.loss], leaves, cdt, batched=True)[0]
                with np.errstate(all="ignore"):
                    est[um, idx] = (F.imag / hu).astype(np_dt)
                workspace.give(base)  # F is consumed: nothing refers to the rows any more
                continue
            base = workspace.take((B, n), np_dt)
            base[...] = x.reshape(1, -1)
            rows = np.arange(B)
            cols = np.repeat(idx, K)
            node_vals = np.stack([_nodes(xf[idx], hu, c, np_dt) for c in offsets], axis=1).ravel()
            base[rows, cols] = node_vals
            leaves = {m: (base.reshape((B,) + x.shape) if m == name else point[m][None, ...]) for m in model.leaves}
            if loss_values is not None:
                calls = [{m: np.array(leaves[m][b if m == name else 0]) for m in model.leaves} for b in range(B)]
                F = np.asarray(loss_values(calls), dtype=np_dt)
            else:
                F = model.float_eval([model.loss], leaves, np_dt, batched=True)[0]
            F = F.reshape(len(idx), K)
            with np.errstate(all="ignore"):
                acc = np.zeros(len(idx), dtype=np_dt)
                for k, w in enumerate(weights):
                    acc = acc + np_dt.type(w) * F[:, k]
                est[um, idx] = acc / hu
            workspace.give(base)
        for m in range(M):
            out[m][name] = est[m].reshape(x.shape)
    return out


def fd_directional(model: Model, *, dtype: Dtype, directions, step: float,
                   loss_values=None) -> np.ndarray:
    """Central differences of the loss along whole-gradient directions, in ``dtype``.

    ``D_j = fl_p((f_p(y_j+) - f_p(y_j-)) / (2 h_p))`` with nodes
    ``y_j± = fl_p(x_p ± h_p d_j)`` entry by entry (the product and sum are formed in
    float64 and rounded once to ``dtype``; in float64 that is two roundings, so the nodes
    are not the exact line points: this estimate is what a classic checker computes, not
    a split into truncation, step and round-off).

    Parameters
    ----------
    directions : sequence of mapping of str to ndarray
        Each a float64 array per variable (the variable's shape); typically unit vectors.
    step : float
        The absolute step h.

    Returns
    -------
    ndarray, shape (len(directions),), dtype ``dtype``
        One estimate per direction.
    """
    np_dt = dtype.numpy
    point = point_in_dtype(model.point, dtype)
    hp = np_dt.type(step)
    calls = []
    for d in directions:
        for sign in (1.0, -1.0):
            calls.append({m: ((point[m].astype(np.float64) + sign * float(hp) * d[m]).astype(np_dt)
                              if m in d else point[m]) for m in model.leaves})
    if loss_values is not None:
        F = np.asarray(loss_values(calls), dtype=np_dt)
    elif not calls:
        F = np.empty(0, dtype=np_dt)
    else:
        leaves = {m: np.stack([c[m] for c in calls]) for m in model.leaves}
        F = model.float_eval([model.loss], leaves, np_dt, batched=True)[0]
    F = F.reshape(len(directions), 2)
    with np.errstate(all="ignore"):
        return ((F[:, 0] - F[:, 1]) / (np_dt.type(2) * hp)).astype(np_dt)
