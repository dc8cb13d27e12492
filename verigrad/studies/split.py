"""The full-gradient split: every coordinate's finite difference split exactly into T, S and R.

:func:`fd_split` at one step, :func:`fd_sweep_split` at several; the parts are defined
in :mod:`verigrad.studies`, the estimates are those of :func:`verigrad.fd.fd_gradient`.
The exact values come from incremental line evaluations in Arb ball arithmetic, from
Taylor series where the loss is analytic along the coordinate, or from mpmath
(see :func:`fd_sweep_split`, Notes); :class:`_Line` computes them for one variable.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from fractions import Fraction
from typing import Mapping, Sequence

import mpmath
import numpy as np

from verigrad.casefile.loader import point_in_dtype
from verigrad.engine.model import Model
from verigrad.engine.truth import certify
from verigrad.errors import LimitError as LimitErrorType, UsageError
from verigrad.fd.estimate import fd_gradients
from verigrad.fd.nodes import _nodes, batched_leaves, exact_nodes, node_arb, node_equals, node_mpf
from verigrad.fd.steps import entry_steps
from verigrad.schemes import Scheme, SchemeKind, StepMode, get_scheme
from verigrad.spec import Dtype
from verigrad.studies.exact import _mp_loss
from verigrad.studies.splitseries import _FAST_MIN_UNITS, _RAD, series_parts

__all__ = ["FDSplit", "fd_split", "fd_sweep_split"]

#: Default bound of :func:`fd_sweep_split`'s exact work (cone entries x coordinates x steps): about a
#: minute at the measured ~1.4 M entries per second (softmax 500 x 30 steps: 11.6 M, 3 s; logistic
#: 200 x 1000 x 30 steps: 54 M, 40 s -- the benchmarks of issue 3, which 2 M refused).
MAX_SPLIT_WORK = 64_000_000


@dataclass(frozen=True, eq=False)
class FDSplit:
    """A full-gradient finite-difference estimate at one step, with its exact split per entry.

    Attributes
    ----------
    scheme : Scheme
    dtype : Dtype
    step : float
        Nominal step; the step used per entry is in ``h``.
    h : dict of str to ndarray
        h_p per entry (float64 values of the dtype's step).
    estimate : dict of str to ndarray
        D_float per entry, of ``dtype``.
    error, truncation, step_error, roundoff : dict of str to ndarray
        E, T, S, R per entry (float64), with E = T + S + R.
    precision : int
        Bits of the exact evaluations.
    """

    scheme: Scheme
    dtype: Dtype
    step: float
    h: dict
    estimate: dict
    error: dict
    truncation: dict
    step_error: dict
    roundoff: dict
    precision: int

    def norms(self) -> dict[str, float]:
        """2-norms of E, T, S, R over all entries."""
        def n(d):
            return float(np.sqrt(sum(float(np.sum(np.square(v))) for v in d.values())))
        return {"error": n(self.error), "truncation": n(self.truncation), "step": n(self.step_error),
                "roundoff": n(self.roundoff)}


def _rows_leaves(model: Model, base: dict, name: str, rows, convert) -> dict[str, np.ndarray]:
    """Batched object leaves: the point with entry i of ``name`` set to ``convert(q)`` per row (i, q)."""
    return batched_leaves({m: v[None, ...] for m, v in base.items()}, [{(name, i): convert(q)} for i, q in rows])


def fd_split(model: Model, *, dtype: Dtype, scheme: Scheme | str, step: float | Mapping[str, np.ndarray],
             step_mode: StepMode = StepMode.RELATIVE, truth=None, loss_values=None,
             reference: Mapping[str, np.ndarray] | None = None, entries: Mapping[str, Sequence[int]] | None = None,
             max_batch_objects: int = 400_000, max_work: int | None = MAX_SPLIT_WORK) -> FDSplit:
    """Full-gradient finite differences at one step, each entry split exactly into T, S and R.

    Parameters
    ----------
    model : Model
    dtype : Dtype
    scheme : Scheme or str
        A linear scheme (the complex step has S = 0 and T from :func:`verigrad.studies.run_study`; refused here).
    step : float
        Nominal step (relative mode: h max(1, |x_i|) per entry).
    truth : Truth, optional
        The certified truth at ``dtype``'s point.
    loss_values : callable, optional
        The case's ``loss_code`` evaluator (see :func:`verigrad.studies.run_study`).
    reference : mapping of str to object ndarray, optional
        What E and T are measured against instead of the truth (e.g. the scheme's limit of the
        one-sided derivatives at coordinates exactly on a kink).
    entries : mapping of str to sequence of int, optional
        Split only these flat entries per variable (others: NaN parts); default all.
    max_batch_objects : int
        Bound on (nodes in one exact batch) x (entries of the perturbed variable).
    max_work : int or None
        Bound on the exact work (see :func:`fd_sweep_split`; LimitError beyond it).

    Returns
    -------
    FDSplit

    Notes
    -----
    Per entry i, with nodes z_k = x_p + c_k h_p e_i (exact) and y_k = fl_p(z_k):
    T = Σ w_k f(z_k)/h_p − g_i, S = Σ w_k (f(y_k) − f(z_k))/h_p, R = D_float − Σ w_k f(y_k)/h_p,
    the exact values in Arb ball arithmetic or mpmath, directly or from Taylor series
    (see :func:`fd_sweep_split`).
    """
    return fd_sweep_split(model, dtype=dtype, scheme=scheme, steps=[step], step_mode=step_mode, truth=truth,
                          loss_values=loss_values, reference=reference, entries=entries,
                          max_batch_objects=max_batch_objects, max_work=max_work)[0]


def fd_sweep_split(model: Model, *, dtype: Dtype, scheme: Scheme | str,
                   steps: Sequence[float | Mapping[str, np.ndarray]], step_mode: StepMode = StepMode.RELATIVE,
                   truth=None, loss_values=None, reference: Mapping[str, np.ndarray] | None = None,
                   entries: Mapping[str, Sequence[int]] | None = None,
                   max_batch_objects: int = 400_000, max_work: int | None = MAX_SPLIT_WORK) -> tuple[FDSplit, ...]:
    """:func:`fd_split` at several steps at once, for the whole gradient.

    Parameters
    ----------
    max_work : int or None
        Bound on the exact work: the entries of the cones of the coordinates to split (estimated
        from one coordinate per variable), times the steps. Beyond it a :class:`LimitError` says
        so before any exact evaluation (each coordinate of a wide layer moves a whole column of
        it: 1,000 coordinates of ``X @ w`` with 1,000 rows are 10^6 ball operations per step and
        node kind). None: no bound.

    Returns
    -------
    tuple of FDSplit
        One per step, in order.

    Raises
    ------
    LimitError
        The split would exceed ``max_work``.

    Notes
    -----
    The exact loss is needed at 2 S nodes per (step, entry). Three devices keep this cheap:

    * **Incremental evaluation** (:class:`verigrad.engine.lines.LineEvaluator`): the loss at a
      point that differs from x_p in one entry is updated from one evaluation at x_p,
      recomputing only the entries that depend on the perturbed one.
    * **Taylor mode** for variables on an analytic path to the loss: one power series
      φ_i(t) = f(x_p + t e_i) = Σ_{j<L} a_j t^j per entry (Arb balls) gives, without
      cancellation, T = Σ_{j≠1} a_j m_j h^(j-1) (m_j = Σ_k w_k c_k^j) and
      S = Σ_k w_k Σ_j a_j ((c_k h + δ_k)^j − (c_k h)^j) / h (δ_k = y_k − x_p − c_k h).
      A (step, entry) takes these values only where the estimated omitted terms plus the
      ball radii are below 2^-50 of each part they enter (T's error enters T and R, S's
      enters S and R; a part below 2^-100 of the largest part or of the float's round-off
      scale is held to 2^-50 of that instead), for every smaller step too; the largest such
      step of each entry is also evaluated directly, and the series is discarded for an
      entry whose two answers disagree. Everything else is evaluated directly, at a
      precision that grows with |log2 h| so that differences of exact values keep their
      digits.
    * **Shared series** (:mod:`verigrad.engine.sharedseries`): downstream of an entry that is
      linear in t (a row of ``X @ w`` along w_i), each elementwise function is G(c t) with G
      the same for every coordinate, so it is computed once per row and batch; such
      variables get p + 53 terms instead of p + 21, which reach steps up to ~0.3.

    Either way R = D_float − D_nodes = E − T − S exactly.
    """
    from verigrad.engine import arb as ab
    from verigrad.engine.lines import series_ok

    scheme = get_scheme(scheme) if isinstance(scheme, str) else scheme
    if scheme.kind is SchemeKind.COMPLEX_STEP:
        raise UsageError("fd_split takes linear schemes; study the complex step with run_study")
    if max_work is not None:
        work = _split_work(model, entries) * len(steps)
        if work > max_work:
            raise LimitErrorType(f"the exact split of every coordinate would touch about {work:,} entries of the "
                                 f"coordinates' cones, over the bound of {max_work:,}",
                                 hint="split fewer coordinates (entries=...), or study one (verigrad study --variable)")
    np_dt = dtype.numpy
    point = point_in_dtype(model.point, dtype)
    truth = truth or certify(model, point, dtype, digits=30)
    ests = fd_gradients(model, dtype=dtype, scheme=scheme, steps=steps, step_mode=step_mode, loss_values=loss_values)
    offsets = list(scheme.offsets)
    M = len(steps)
    h_all = [dict() for _ in steps]
    parts = [{k: {} for k in ("error", "truncation", "step", "roundoff")} for _ in steps]
    prec_used = 0
    g_exact: dict = {}
    for name in model.gradient:
        x = point[name]
        n = x.size
        with np.errstate(over="ignore"):
            hps = [entry_steps(st, name, x, step_mode).astype(np_dt) for st in steps]
        for st, hp in zip(steps, hps):
            if not np.isfinite(hp).all():  # [check] steps = [1e5] in float16: every node would be inf
                top = float(np.finfo(np_dt).max)
                raise UsageError(f"the step {float(st):.3g} for {name} overflows {np.dtype(np_dt).name} (largest "
                                 f"finite {top:.3g})", hint=f"choose steps well below {top:.3g} for "
                                                            f"{np.dtype(np_dt).name} ([check] steps, coordinate_steps)")
        y_nodes = [[_nodes(x.ravel(), hp, c, np_dt) for c in offsets] for hp in hps]
        g_ref = (reference if reference is not None else truth.gradient)[name].ravel()
        wanted = list(range(n)) if entries is None else [int(i) for i in entries.get(name, ())]
        if name not in g_exact and ab.available():
            g_exact.update(_exact_gradient(model, point))
        line = _Line(model, point, name, x.ravel(), hps, y_nodes, scheme, ests, g_ref, dtype, truth,
                     g_exact.get(name))
        outs = [{k: np.full(n, np.nan) for k in parts[0]} for _ in steps]
        taylor: dict[tuple[int, int], tuple] = {}
        checks: dict[int, int] = {}
        if ab.available() and series_ok(model, name) and wanted:
            taylor, checks = line.taylor(wanted)
        direct = [(m, i) for i in wanted for m in range(M) if (m, i) not in taylor]
        direct_set = set(direct)
        direct += [(m, i) for i, m in checks.items() if (m, i) not in direct_set]
        found = line.direct(direct, max_batch_objects)
        retry = []
        for i, m in checks.items():
            if (m, i) not in found:
                continue
            if not line.agree(taylor[(m, i)], found[(m, i)]):
                retry += [(mm, i) for mm in range(M) if (mm, i) in taylor and (mm, i) not in found]
                for mm in range(M):
                    taylor.pop((mm, i), None)
            elif sum(found[(m, i)][6:]) < sum(taylor[(m, i)][6:]):
                taylor.pop((m, i))  # both agree: keep the one with the smaller error bound
        found.update(line.direct(retry, max_batch_objects))
        for (m, i), res in list(found.items()) + list(taylor.items()):
            e, t, st_, r = res[:4]
            outs[m]["error"][i], outs[m]["truncation"][i], outs[m]["step"][i], outs[m]["roundoff"][i] = e, t, st_, r
        prec_used = max(prec_used, line.prec_used)
        for m in range(M):
            h_all[m][name] = hps[m].astype(np.float64).reshape(x.shape)
            for k in parts[m]:
                parts[m][k][name] = outs[m][k].reshape(x.shape)
    return tuple(FDSplit(scheme=scheme, dtype=dtype, step=steps[m], h=h_all[m], estimate=ests[m],
                         error=parts[m]["error"], truncation=parts[m]["truncation"], step_error=parts[m]["step"],
                         roundoff=parts[m]["roundoff"], precision=prec_used) for m in range(M))


def _split_work(model: Model, entries: Mapping[str, Sequence[int]] | None) -> int:
    """Entries of the coordinates' cones to split, from the cone of each variable's first entry."""
    widths = _CONE_WIDTHS.get(model)
    if widths is None:
        widths = _CONE_WIDTHS[model] = _cone_widths(model)
    total = 0
    for name, leaf in model.leaves.items():
        if name in widths:
            total += (leaf.size if entries is None else len(entries.get(name, ()))) * widths[name]
    return total


#: Per model (a sweep splits both dtypes of one model): the cone width of each variable's entry 0.
_CONE_WIDTHS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _cone_widths(model: Model) -> dict[str, int]:
    from verigrad.engine.cone import ConeUnsupported, forward_cone
    from verigrad.expr.graph import topological

    order = topological([model.loss])
    out = {}
    for name, leaf in model.leaves.items():
        if name not in model.gradient or not leaf.size:
            continue
        try:
            out[name] = sum(c.size for c in forward_cone(model, order, name, 0).values())
        except ConeUnsupported:
            out[name] = sum(node.size for node in order)
    return out


#: Taylor values are used where the first omitted terms are below this fraction of the parts.
_TAIL = 2.0 ** -50
#: Parts below this fraction of a unit's scale are held to _TAIL of it, not of themselves.
_NEGLIGIBLE = 2.0 ** -100
#: Bits of the power series' coefficients.
_SERIES_PREC = 128
#: Terms of the power series beyond the scheme's leading derivative. Past steps of ~0.01 the
#: series must resolve T to 2^-50 of a much smaller R; 21 extra terms (13 before 2026-12-06) let
#: it reach steps up to ~0.05 (float64) and ~0.1 (float32). Measured on logistic 200x1000: 84% ->
#: 90% of the float64 units and 72% -> 82% of the float32 ones, for 25-45% more series time,
#: where each unit left to direct evaluation costs ~3 ms.
_SERIES_EXTRA = 21
#: Terms beyond the leading derivative where the line evaluator shares its series across
#: coordinates (``engine/sharedseries.py``): each costs O(L) per coordinate instead of O(L^2), and
#: the series reaches steps up to ~0.3. Measured on logistic 200x1000 (CPU s, both dtypes, truth
#: excluded): 21 terms 44, 37: 36, 45: 36, 53: 32-33, 61: 34, 77: 36.
_SERIES_EXTRA_SHARED = 53
#: Entries whose series decide whether the rest are shared (and long).
_SHARE_PROBE = 64
#: The shortest series a step falls back to when the longer one's last powers of h would leave
#: the double-double range (h below ~1e-9 with 24 terms).
_SERIES_EXTRA_MIN = 13


#: Largest working precision of a direct evaluation; units still unresolved there are reported as they are.
_MAX_DIRECT_PREC = 4000

#: Direct units x graph entries up to which one variable's units share one evaluation at the highest
#: precision they start at (the 3-layer net of the benchmarks: 600 units x ~300 entries).
_MERGE_WORK = 1_000_000


def _graph_entries(model: Model) -> int:
    """Entries of all the loss graph's nodes (a measure of what one walk through it costs)."""
    from verigrad.expr.graph import topological

    return sum(n.size for n in topological([model.loss]))


def _direct_precision(h: float, scheme: Scheme, dtype: Dtype) -> int:
    """Bits to start the exact losses at the nodes of step h with.

    T·h is about h^(p+1) of f, and S·h about ulp(x)·f' (2^-mantissa of f): each loses that
    many bits to cancellation, and needs ~100 more (50 for the resolution asked of every
    part, the rest for the growth of the balls' radii). A guess: units it leaves
    unresolved are evaluated again with more bits (:meth:`_Line.direct`).
    """
    lost = max(np.finfo(dtype.numpy).nmant + 1,
               int(math.ceil(-math.log2(h))) * (scheme.leading_derivative + 2) if 0 < h < 1 else 0)
    return min(_MAX_DIRECT_PREC, 64 * -(-(100 + lost) // 64))


class _Line:
    """The exact parts of one variable's full-gradient split (helper of :func:`fd_sweep_split`).

    Results per (step m, entry i): (E, T, S, R) as floats, then T and S as balls and
    their absolute error bounds (for comparisons between the two ways of computing them).
    """

    def __init__(self, model, point, name, x, hps, y_nodes, scheme, ests, g_ref, dtype, truth, g_exact):
        from verigrad.engine import arb as ab
        from verigrad.engine.lines import object_array

        self.model, self.point, self.name, self.x, self.dtype = model, point, name, x, dtype
        self.hps, self.y_nodes, self.scheme, self.ests = hps, y_nodes, scheme, ests
        self.offsets, self.weights = list(scheme.offsets), list(scheme.weights)
        self.prec_used = 0
        self.max_batch_objects = 400_000
        self._evaluators: dict[int, object] = {}
        self._ab = ab
        self.est_flat = np.stack([e[name].ravel() for e in ests])  # (steps, entries): one gather per _combine_arrays
        g_true = truth.gradient[name].ravel()
        self.g_ref = object_array(_arb_of_mpf(v) for v in g_ref)
        # E and T are measured from g_base: the exact derivative (a tight ball) where the
        # reference is the truth, so that no part carries the truth's own rounding; the
        # reference itself elsewhere (e.g. a kink's one-sided limit), known to ref_err.
        same = np.array([a is b for a, b in zip(g_true, g_ref)], dtype=bool)
        exact = object_array(_arb_of_mpf(v) for v in g_true) if g_exact is None else g_exact
        self.g_base = np.where(same, exact, self.g_ref)
        ref_err = _reference_error(truth, name, g_ref, same)
        self.ref_err = ref_err if g_exact is None else np.where(same, 0.0, ref_err)
        # a Taylor T is measured from the series' own derivative: this moves it to g_base
        if same.all():
            self.series_shift = None
        else:
            with ab.arb_precision(_EXACT_G_PREC + 64):
                self.series_shift = np.where(same, ab.arb(0), exact - self.g_ref)

    def _q(self, q: Fraction):
        return self._ab.arb(q.numerator) / q.denominator

    def _combine_arrays(self, m, I, T, S, err_T, err_S, *, series=False):
        """The parts of entries I at step m (an int, or an int array: one step per unit) from T and S
        (balls) with their error bounds, per unit: finite float estimate (bool), E, T, S, R
        (float64), T, S (balls); :func:`_unit_result` makes one unit's result of them.

        A series T is measured from the series' exact derivative; it is moved to g_base here.
        T and S within their error bound are indistinguishable from 0 and reported as 0."""
        ab = self._ab
        dfl = self.est_flat[m, I].astype(np.float64)
        fin = np.isfinite(dfl)
        with ab.arb_precision(max(self.prec_used, 256) + 64):  # E, T and R exactly, never rounded to 53 bits
            zero = ab.arb(0)
            T = np.where(np.abs(T.astype(np.float64)) <= err_T, zero, T)
            S = np.where(np.abs(S.astype(np.float64)) <= err_S, zero, S)
            if series and self.series_shift is not None:
                T = T + self.series_shift[I]
            E = ab.from_float(np.where(fin, dfl, 0.0)) - self.g_base[I]
            R = E - T - S
            Ef, Tf, Sf, Rf = (v.astype(np.float64) for v in (E, T, S, R))
            # R carries T's and S's errors (and its own rounding): within them it is 0 too
            Rf = np.where(np.abs(Rf) <= err_T + err_S + _up(_RAD(R)), 0.0, Rf)
        return fin, Ef, Tf, Sf, Rf, T, S

    # -- Taylor mode ----------------------------------------------------------------------------

    def taylor(self, wanted):
        """Units whose T and S come from power series, and the step of each entry to check directly."""
        ab = self._ab
        from verigrad.engine.lines import Unsupported, coefficients, series_cap

        scheme, M = self.scheme, len(self.hps)
        p = scheme.leading_derivative
        L_own = p + self._series_extra(len(wanted) * M)
        L_shared = max(L_own, p + _SERIES_EXTRA_SHARED) if len(wanted) * M >= _FAST_MIN_UNITS else L_own
        moments = [sum((w * c**j for c, w in zip(self.offsets, self.weights)), Fraction(0)) for j in range(L_shared)]
        if moments[0] != 0 or moments[1] != 1 or not M:
            return {}, {}
        W = np.asarray(wanted, dtype=np.int64)
        prec = _SERIES_PREC
        self.prec_used = max(self.prec_used, prec)
        result: dict[tuple[int, int], tuple] = {}
        checks: dict[int, int] = {}
        with ab.arb_precision(prec):
            try:
                ser, L = self._series(W, L_own, L_shared)
            except (Unsupported, ab.Undecided, ArithmeticError):
                return {}, {}
        moments = moments[:L]
        with ab.arb_precision(prec), series_cap(L):
            A = [np.empty(W.size, dtype=object) for _ in range(L)]
            for u, s in enumerate(ser):
                for j, a in enumerate(coefficients(s, L)):
                    A[j][u] = a
            # the estimates of the omitted terms: for the full series, and for the shorter ones of
            # steps too small for its last powers in double-double (down to the float64 length)
            shortest = min(L, scheme.leading_derivative + _SERIES_EXTRA_MIN)
            absA = {j: np.exp2(np.array([_log2_abs(a) for a in A[j]])) for j in range(max(shortest - 2, 2), L)}
            Hf = np.stack([self.hps[m][W].astype(np.float64) for m in range(M)])  # (steps, entries)
            Y = [np.stack([self.y_nodes[m][k][W].astype(np.float64) for m in range(M)])
                 for k in range(len(self.offsets))]
            T, S, err_T, err_S, fin_T = series_parts(A, moments, self.offsets, self.weights,
                                                     self.x[W].astype(np.float64), Hf, Y, absA, shortest)
        # every (step, entry) at once; which of them are taken is decided step by step below
        ms, I = np.repeat(np.arange(M), W.size), np.tile(W, M)
        err_T, err_S = err_T.ravel(), err_S.ravel()
        arrays = self._combine_arrays(ms, I, T.ravel(), S.ravel(), err_T, err_S, series=True)
        fin, Tf, Sf, Rf = arrays[0], arrays[2], arrays[3], arrays[4]
        unit_roundoff = 2.0 ** -(np.finfo(self.dtype.numpy).nmant + 1)
        with np.errstate(all="ignore"):
            noise = (unit_roundoff * np.abs(A[0].astype(np.float64)) / Hf).ravel()
        good = fin_T.ravel() & _resolved((Tf, Sf, Rf), err_T, err_S, noise)
        # steps in increasing order of their largest h: an entry is taken up to its first step that
        # is finite but unresolved (a unit without a finite estimate neither takes nor stops it)
        order = sorted(range(M), key=lambda m: float(np.max(self.hps[m][W])) if W.size else 0.0)
        present, good = fin.reshape(M, W.size)[order], good.reshape(M, W.size)[order]
        stop = present & ~good
        first_stop = np.where(stop.any(axis=0), stop.argmax(axis=0), M)
        taken = present & good & (np.arange(M)[:, None] < first_stop)
        for t, u in zip(*np.nonzero(taken)):
            m, i = order[t], int(W[u])
            result[(m, i)] = _unit_result(arrays, err_T, err_S, m * W.size + u)
            checks[i] = m
        return result, checks

    def _series(self, W: np.ndarray, L_own: int, L_shared: int):
        """The power series of the entries W, and their length: L_shared terms where the line
        evaluator shares its series across coordinates (then a longer series costs little more and
        reaches larger steps), else L_own. The first entries decide: evaluated at L_shared, they are
        cut to L_own if the rest is not shared (the first L_own coefficients of a longer series
        enclose the same numbers)."""
        from verigrad.engine.lines import LineEvaluator, series_cap

        def leaves(I):  # x_i + t, built under the cap: a series keeps the length it was made with
            return [self._ab.flint.arb_series([self._ab.arb(float(self.x[i])), 1]) for i in I]

        probe = min(W.size, _SHARE_PROBE) if L_shared > L_own else W.size
        with series_cap(L_shared):
            ev = LineEvaluator(self.model, self.point, self.name, prec=_SERIES_PREC, series=L_shared)
            first = ev.losses(W[:probe], leaves(W[:probe]))
            shared = ev.shared_fraction() >= 0.5
            if probe == W.size:
                return first, L_shared if shared else L_own
            if shared:
                return np.concatenate([first, ev.losses(W[probe:], leaves(W[probe:]))]), L_shared
        with series_cap(L_own):
            ev = ev.with_series(L_own)
            return np.concatenate([first, ev.losses(W[probe:], leaves(W[probe:]))]), L_own

    @staticmethod
    def _series_extra(units: int) -> int:
        """Terms beyond the leading derivative for a variable's series: the long series pays for
        itself only where many units would otherwise be evaluated directly (a few hundred units
        cost less directly than lengthening every series: the 3-layer net's last layer)."""
        return _SERIES_EXTRA if units >= _FAST_MIN_UNITS else _SERIES_EXTRA_MIN

    def agree(self, series, direct) -> bool:
        """Whether a Taylor and a direct answer for the same unit agree within their error bounds."""
        scale = max(abs(direct[1]), abs(direct[2]), abs(direct[3]))
        with self._ab.arb_precision(max(self.prec_used, 256) + 64):
            # T (ball 4, bound 6) and S (ball 5, bound 7), each against its own size: both
            # answers resolve it to 2^-50 of itself (or of the unit's scale when negligible)
            for k, e, f in ((4, 6, 1), (5, 7, 2)):
                diff = abs(float(series[k] - direct[k]))
                if diff > series[e] + direct[e] + 2.0 ** -40 * max(abs(direct[f]), _NEGLIGIBLE * scale):
                    return False
        return True

    # -- direct evaluation ----------------------------------------------------------------------

    def direct(self, units, max_batch_objects):
        """E, T, S, R from exact losses at the nodes, per unit (m, i).

        T and S carry the radii of the balls they come from as error bounds. A unit whose
        parts are not resolved (:func:`_resolved`) at the precision it started with is
        evaluated again with as many more bits as it fell short by, up to the cap, so the
        starting precision (:func:`_direct_precision`) only needs to be a good guess."""
        groups: dict[int, list] = {}
        precs: dict[float, int] = {}  # steps repeat (h_p = h wherever |x_i| <= 1)
        for m, i in units:
            h = float(self.hps[m][i])
            if h == 0:
                continue
            if h not in precs:
                precs[h] = _direct_precision(h, self.scheme, self.dtype)
            groups.setdefault(precs[h], []).append((m, i))
        if len(groups) > 1 and sum(map(len, groups.values())) * _graph_entries(self.model) <= _MERGE_WORK:
            # a few hundred units of a small model: each evaluation builds a line evaluator at its
            # precision and walks the graph, which costs more than the arithmetic; one evaluation at
            # the highest starting precision replaces them (more bits never loosen a result)
            top = max(groups)
            groups = {top: [u for p in sorted(groups) for u in groups[p]]}
        out = {}
        while groups:
            prec = min(groups)
            us = groups.pop(prec)
            self.prec_used = max(self.prec_used, prec)
            self.max_batch_objects = max_batch_objects
            per = self._units_per_chunk(prec, max_batch_objects)
            for start in range(0, len(us), per):
                for unit, (res, short) in self._direct_chunk(us[start:start + per], prec).items():
                    if short <= 0 or prec >= _MAX_DIRECT_PREC:
                        out[unit] = res
                    else:
                        more = min(_MAX_DIRECT_PREC, prec + 64 * -(-(short + 16) // 64))
                        groups.setdefault(more, []).append(unit)
        return out

    def _units_per_chunk(self, prec: int, max_batch_objects: int) -> int:
        """Units per batch of exact losses: a whole-graph evaluation holds the perturbed variable once
        per node (``max_batch_objects`` bounds that); the incremental line evaluator only the
        entries each node changes, and bounds its own batches."""
        from verigrad.engine.lines import LineEvaluator, Unsupported

        if self._ab.available():
            try:
                if prec not in self._evaluators:
                    with self._ab.arb_precision(prec):
                        self._evaluators[prec] = LineEvaluator(self.model, self.point, self.name, prec=prec)
                return 4096
            except (Unsupported, self._ab.Undecided, ArithmeticError):
                pass
        return max(1, max_batch_objects // max(1, self.x.size * len(self.offsets) * 2))

    def _direct_chunk(self, chunk, prec):
        """{unit: (result, bits short of resolving it)} for units whose nodes are all in the domain."""
        from verigrad.engine.lines import object_array

        ab = self._ab
        K = len(self.offsets)
        n = len(chunk)
        same = np.zeros((n, K), dtype=bool)
        rows = exact_nodes(chunk, self.x, self.hps, self.offsets)
        for j, (m, i) in enumerate(chunk):
            for k in range(K):
                y = float(self.y_nodes[m][k][i])
                if node_equals(rows[j * K + k][1], y):
                    same[j, k] = True  # the float node is the exact node: its step error is exactly 0
                else:
                    rows.append((i, y))
        f = self._losses(rows, prec)
        zero = ab.arb(0)
        missing = np.array([v is None for v in f], dtype=bool)  # outside the domain
        f = object_array(zero if v is None else v for v in f)
        fx = f[:n * K].reshape(n, K)
        fy = fx.copy()
        fy[~same] = f[n * K:]
        bad = missing[:n * K].reshape(n, K)
        bad_y = np.zeros((n, K), dtype=bool)
        bad_y[~same] = missing[n * K:]
        valid = ~(bad | bad_y).any(axis=1)
        out = {}
        with ab.arb_precision(prec):
            hs = ab.from_float(np.array([float(self.hps[m][i]) for m, i in chunk]))
            # Σ w_k = 0, so D = Σ w_k (f_k − f_0) / h; a loss the change never reached is the very
            # same ball, and its difference is exactly 0 (a dead ReLU's weight, a masked entry)
            diffs = _exact_differences(fx, fx[:, :1], zero)
            de = sum(diffs[:, k] * self._q(w) for k, w in enumerate(self.weights)) / hs
            err_de = _up(_RAD(de))
            dS = np.where(same, zero, _exact_differences(fy, fx, zero))
            S = sum(dS[:, k] * self._q(w) for k, w in enumerate(self.weights)) / hs
            fmax = np.max(np.abs(fx.astype(np.float64)), axis=1)
            noise = 2.0 ** -(np.finfo(self.dtype.numpy).nmant + 1) * fmax / hs.astype(np.float64)
            sel = np.flatnonzero(valid)
            if not sel.size:
                return out
            ms = np.array([chunk[j][0] for j in sel], dtype=np.int64)
            I = np.array([chunk[j][1] for j in sel], dtype=np.int64)
            T = de[sel] - self.g_base[I]
            err_T = _up(_RAD(T)) + self.ref_err[I]
            err_S = _up(_RAD(S[sel]))
            arrays = self._combine_arrays(ms, I, T, S[sel], err_T, err_S)
            # T is known only as well as what it is measured from; more bits here cannot
            # improve that, so only the nodes' own error enters the resolution test
            done = _resolved(arrays[2:5], err_de[sel], err_S, noise[sel])
            for u in np.flatnonzero(arrays[0]).tolist():  # units with a finite float estimate
                j, r = sel[u], _unit_result(arrays, err_T, err_S, u)
                out[(int(ms[u]), int(I[u]))] = (r, 0 if done[u] else _bits_short(r[1:4], err_de[j], err_S[u], noise[j]))
        return out

    def _losses(self, rows, prec):
        """Exact losses at the point with entry i set to q, per row (i, q): balls whose radii
        bound the error, or None outside the domain."""
        ab = self._ab
        from verigrad.expr.evaluate import evaluate
        from verigrad.engine.lines import LineEvaluator, Unsupported, object_array

        if ab.available():
            with ab.arb_precision(prec):
                vals = object_array(node_arb(q) for _, q in rows)
                idx = np.array([i for i, _ in rows], dtype=np.int64)
                f = None
                try:
                    ev = self._evaluators.get(prec)
                    if ev is None:
                        ev = self._evaluators[prec] = LineEvaluator(self.model, self.point, self.name, prec=prec)
                    f = ev.losses(idx, vals)
                except Unsupported:
                    base = {m: ab.from_float(np.asarray(self.point[m])) for m in self.model.leaves}
                    # whole-graph batches hold the perturbed variable once per row: bounded
                    per = max(1, self.max_batch_objects // max(1, self.x.size))
                    try:
                        f = np.concatenate([
                            evaluate([self.model.loss], _rows_leaves(self.model, base, self.name,
                                                                     list(zip(idx[s:s + per], vals[s:s + per])),
                                                                     lambda v: v), ab.ArbBackend())[0].ravel()
                            for s in range(0, idx.size, per)])
                    except (ab.Undecided, ArithmeticError):
                        f = None
                except (ab.Undecided, ArithmeticError):
                    f = None
                # balls this wide mean lost digits: the mpmath path below re-derives them
                bound = 2.0 ** (96 - prec)
                if f is not None and all(v.is_finite() and float(v.rad()) <= bound * abs(float(v.mid())) + 2.0 ** -prec
                                         for v in f):
                    return list(f)
        with mpmath.workprec(prec):
            base = {m: self.model.mp_values(m, self.point[m]) for m in self.model.leaves}
            leaves = _rows_leaves(self.model, base, self.name, rows, node_mpf)
            vals = list(_mp_loss(self.model, leaves, prec).ravel())
            # mpmath's own error bound for a whole evaluation, as a radius
            err = [None if v is None else _arb_of_mpf(abs(v) * mpmath.ldexp(1, 32 - prec)) for v in vals]
        return [None if v is None else ab.arb(_arb_of_mpf(v), e) for v, e in zip(vals, err)]


_IS = np.frompyfunc(lambda u, v: u is v, 2, 1)


def _unit_result(arrays, err_T, err_S, u) -> tuple:
    """One unit's result from :meth:`_Line._combine_arrays`'s arrays: (E, T, S, R) floats, the T and
    S balls, and their error bounds."""
    _, Ef, Tf, Sf, Rf, T, S = arrays
    return Ef[u], Tf[u], Sf[u], Rf[u], T[u], S[u], float(err_T[u]), float(err_S[u])


def _exact_differences(a: np.ndarray, b: np.ndarray, zero) -> np.ndarray:
    """a − b for object arrays of balls (b broadcast), exactly ``zero`` where both are the same
    object (subtracting a ball from itself would double its radius instead)."""
    return np.where(_IS(a, b).astype(bool), zero, a - b)


def _up(r) -> np.ndarray:
    """Float radii rounded up (a float64 of an Arb radius may round down by half an ulp)."""
    return np.asarray(r, dtype=np.float64) * (1 + 2.0 ** -50)


#: Bits of the exact gradient that direct T is measured from (far beyond any truth's digits).
_EXACT_G_PREC = 320


def _exact_gradient(model: Model, point) -> dict:
    """The gradient at ``point`` as Arb balls at :data:`_EXACT_G_PREC` bits, per variable (flat
    object arrays); empty where ball arithmetic cannot decide it (a kink argument that is
    not exactly 0, a domain edge): the reference is used there instead."""
    names = list(model.gradient)
    try:
        vals = model.arb_eval([model.gradient[v] for v in names], point, prec=_EXACT_G_PREC)
    except (ArithmeticError, LimitErrorType):
        return {v: None for v in names}
    out = {}
    for v, g in zip(names, vals):
        flat = np.asarray(g, dtype=object).reshape(-1)
        out[v] = flat if all(b.is_finite() for b in flat) else None
    return out


def _reference_error(truth, name: str, g_ref, same: np.ndarray) -> np.ndarray:
    """Bound on |reference − exact gradient| per flat entry (float64): the truth's certified
    accuracy (relative 10^(1−digits), absolute where it is certified absolutely, 0 where it is
    an exact zero); a reference that is not the truth (``same`` False) is taken as certified
    alike."""
    digits = truth.digits
    mag = np.array([abs(float(v)) for v in g_ref], dtype=np.float64)
    err = 10.0 ** (1 - digits) * mag
    absolute = np.asarray(truth.absolute[name]).ravel()
    err = np.where(absolute, err + 10.0 ** -(digits + 7) * float(truth.scale), err)
    return np.where(np.asarray(truth.exact_zero[name]).ravel() & same, 0.0, err)


def _bits_short(parts, err_T: float, err_S: float, noise: float) -> int:
    """By how many bits the error bounds of a unit's parts miss resolving them (0 when resolved).

    ``parts`` are its T, S, R (floats); T carries the error err_T, S err_S, and R = E − T − S
    both. Each part must be known to 2^-50 of itself; a part below 2^-100 of the unit's
    scale — the largest of its parts and of ``noise`` (the dtype's unit round-off times
    |f| / h, the size of the float's own round-off) — to 2^-50 of that instead, which is
    what a part that is exactly 0 (T of a quadratic) needs. A looser rule (an absolute
    2^-100 of the scale for every part) would let a part just above the floor keep only a
    few correct digits: S of a saturated sigmoid is 1e-14 of its T.
    """
    parts = np.abs(np.array(parts, dtype=np.float64))
    errs = np.array([err_T, err_S, err_T + err_S])
    if not np.all(np.isfinite(errs)):
        return 1 << 20
    allowed = _TAIL * np.maximum(parts, _NEGLIGIBLE * max(float(parts.max()), float(noise)))
    if np.all(errs <= allowed):
        return 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # e/0, 0/0, overflow: 1 << 20 below
        ratio = float(np.max(errs / allowed))
    return int(math.ceil(math.log2(ratio))) if math.isfinite(ratio) else 1 << 20


def _resolved(parts, err_T: np.ndarray, err_S: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """``_bits_short(parts[:, u], err_T[u], err_S[u], noise[u]) == 0`` per unit u, vectorised.

    ``parts`` are the T, S, R arrays (float64, one entry per unit). Units with all numbers
    finite take :func:`_bits_short`'s rule on whole arrays (the same float operations); the
    others (rare) call it. This is the hot path: ``_bits_short`` itself runs only for the units
    it finds unresolved, to say by how many bits.
    """
    p = np.abs(np.stack([np.asarray(v, dtype=np.float64) for v in parts]))
    errs = np.stack([err_T, err_S, err_T + err_S])
    with np.errstate(all="ignore"):
        finite = np.isfinite(p).all(axis=0) & np.isfinite(noise) & np.isfinite(errs).all(axis=0)
        floor = _NEGLIGIBLE * np.maximum(p.max(axis=0), noise)
        ok = finite & (errs <= _TAIL * np.maximum(p, floor)).all(axis=0)
    for u in np.flatnonzero(~finite):
        ok[u] = _bits_short([v[u] for v in parts], err_T[u], err_S[u], noise[u]) == 0
    return ok


def _arb_of_mpf(v):
    """The exact ball of an mpmath number (or of an Arb ball, unchanged)."""
    from verigrad.engine import arb as ab

    if not isinstance(v, mpmath.mpf):
        return v
    if not mpmath.isfinite(v):
        return ab.arb(float(v))
    sign, man, exp, _ = v._mpf_
    man, exp = (-int(man) if sign else int(man)), int(exp)
    if man == 0:
        return ab.arb(0)
    with ab.arb_precision(max(64, man.bit_length() + 8)):
        return ab.arb(man) * ab.arb(2) ** exp


def _log2_abs(a) -> float:
    """log2 |midpoint| of a ball (-inf for 0), without overflow."""
    m = a.mid()
    if m == 0:
        return -math.inf
    man, exp = m.man_exp()
    man = int(man)
    return math.log2(abs(man)) + int(exp)
