"""The error model of the float baseline: a per-entry bound of the rounding error in any order.

The float baseline is the exact gradient graph evaluated naively in the dtype ``p`` under test
(unit roundoff ``u = 2**-t``, ``t`` = 24 or 53).  :func:`baseline_error_model` walks the same
graph once, in float64, carrying with every value ``x`` two magnitudes, in units of ``u``: ``I``,
errors independent from entry to entry (they come from different roundings), and ``C``, errors
shared by many entries (one rounding that reached them through a broadcast or a gather).  The
model of entry ``i`` of the gradient is ``m_i = u (I_i + C_i)``: to first order in ``u``, the
rounding error of evaluating it in ``p`` -- in the graph's order or in another order of the same
sums, as a hand-written candidate does.  ``m_i / |g_i|`` is the entry's *conditioning as
computed*: a few ulps where the entry is a short computation, many where it is a sum of terms
that cancel.  :func:`verigrad.grading.grade` (``error_model=``) gives each entry its own
tolerance from it.

Rules (``|.|`` elementwise; ``Q`` below):

==============  ===========================================  =============================
node            ``I``                                        ``C``
==============  ===========================================  =============================
leaf            0 (the point of dtype ``p`` is exact)        0
constant c      0                                            ``|c|`` unless ``fl_p(c) = c``
``a +- b``      ``I_a + I_b + |a| + |b|`` (re-association)   ``C_a + C_b``
``a * b``       ``|b| I_a + |a| I_b + |a b|``                ``|b| C_a + |a| C_b``
``a / b``       ``(I_a + |a/b| I_b) / |b| + |a/b|``          the same without the rounding
``a ** b``      partials times ``I`` + ``2 |a**b|``          partials times ``C``
``f(a)``        ``|f'(a)| I_a + (c + x) |f(a)|``             ``|f'(a)| C_a``
sum of n        ``sqrt(sum I_j**2) + Q``                     ``sum C_j``
matmul (k)      ``sqrt(|A|**2 I_B**2 + I_A**2 |B|**2)``      ``|A| C_B + C_A |B|``
                ``+ sqrt(A**2 B**2) + Q``
logsumexp       ``sqrt(sum (p_j I_j)**2) + sum p_j |x_j-m|``  ``sum p_j C_j``
                ``+ 2 + sqrt(n-1) + 3 |log s| + |m|``
max, maximum    the largest of the arguments'                the same
broadcast,      0                                            ``C + I`` of the source
gather
structure       transpose, slice, reshape, scatter move ``I`` and ``C`` with the value
==============  ===========================================  =============================

``c = 4`` for numpy's own functions (a few ulps for an exact argument) and ``c = 8`` for the
stable composite forms of :mod:`verigrad.expr.functions` (sigmoid, its derivative, dtanh,
softplus); ``x`` is the textbook form's extra error (``exp|a|`` for the sigmoid's derivative,
``2 sinh(a)**2`` for tanh's, 0 otherwise: ``_textbook``); ``f'`` is a float64 one-sided difference (a weight, not a value).  ``Q`` is the root
mean square, over the orders of summation, of ``sqrt(sum_k s_k**2)`` with ``s_k`` the partial
sums: for a uniformly random order of ``n`` terms with mean ``mu`` and variance ``var``,
``Q**2 = mu**2 n (n+1) (2n+1) / 6 + var n (n+1) / 6``.  A sum in some order has the rounding
error ``sum_k delta_k s_k`` with ``|delta_k| <= u``; for independent roundings its standard
deviation is ``u sqrt(sum s_k**2) / sqrt(3)``, so ``u Q`` is about 1.7 of them for a typical order
(N. J. Higham and T. Mary, "A new approach to probabilistic rounding error analysis", SIAM J. Sci.
Comput. 41, 2019, for the probabilistic view).  Everything else is a worst case: partial
derivatives in absolute value, a full ``u`` per rounding, the errors inside an elementwise chain
added linearly.

That worst case is 3-100 times the error of the correct candidates (partial derivatives lose
their signs, so an error that cancels downstream counts in full).  :func:`baseline_error_spread`
gives ``sigma_i``, the standard deviation of the entry's error when every rounding is replaced by
a random perturbation of its size and propagated *with its sign* (128 seeded runs of the graph
in float64, batched), and the model returned is

    ``m_i = min(u (I_i + C_i), SPREAD_SIGMAS sigma_i)``,   ``SPREAD_SIGMAS = 4.5``

The grade multiplies ``m`` by ``entry_lambda = 2``: a tolerance of 9 standard deviations.  Its
margin is measured (``docs/numerics.md``, "Per-entry tolerances"): over every shipped case, in
float32 and float64, the baseline, six float32 re-evaluations of the graph in other orders of
its sums (numpy's pairwise, loops in natural, reversed, sorted and three random orders, float64
accumulation) and every correct hand-written candidate are within 2.80 ``sigma_i`` at every entry
(the natural-order loop on mlp-weight-decay, ``W2``), so 9 ``sigma`` leaves 3.2; 36 correct
gradients written with other formulas (``benchmarks/rewrites``), at 200 points, stay within 2.65.
The systematic gaps found are in both models: a candidate's textbook derivative ``s (1 - s)`` or
``1 - t**2`` where the graph uses a stable form (3.2 ``sigma`` before it was modelled,
``_textbook``), and terms computed apart, ``(H W^T)^T H - X^T H`` for ``(H W^T - X)^T H`` (12.5
``sigma`` before it was modelled, ``_split_paths``: the rounding of a sum or product whose
operand is linear in a ``+``/``-`` node is at least the root-sum-square of its terms').
``[check] entry_sigmas`` sets another multiple (``entry_lambda = entry_sigmas / 4.5``).

Examples
--------
>>> from verigrad.casefile.loader import load_case_text, point_in_dtype
>>> from verigrad.engine.model import compile_case
>>> from verigrad.spec import Dtype
>>> model = compile_case(load_case_text('''
... name = "sq"
... loss = "sum(x**2) / 2"
... [symbols]
... x = { value = [3.0, -0.5] }
... '''))
>>> m = baseline_error_model(model, point_in_dtype(model.point, Dtype.FLOAT32), np.float32, spread=False)
>>> [float(v / 2.0 ** -24) for v in m["x"]]  # in units of u: the gradient is (1/2) (2 x), two roundings
[6.0, 1.0]
>>> sd = baseline_error_spread(model, point_in_dtype(model.point, Dtype.FLOAT32), np.float32)
>>> [round(float(v / 2.0 ** -24), 1) for v in sd["x"]]  # ~ sqrt(2/3) |x| = [2.45, 0.41]: two uniform roundings
[2.5, 0.4]
"""


from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Mapping

import numpy as np

__all__ = ["SPREAD_SIGMAS", "ErrorModel", "baseline_error_model", "baseline_error_spread"]


#: numpy's own implementations, accurate to a few ulps of the result for an exact argument
_LIBRARY = frozenset({"exp", "log", "log1p", "expm1", "sqrt", "square", "sin", "cos", "tan", "sinh", "cosh",
                      "tanh", "arcsin", "arccos", "arctan", "relu", "abs", "step", "sign"})


def _rho(n: int) -> float:
    return math.sqrt(max(n - 1, 0))


def _abs_deriv(fn: Any, x: np.ndarray) -> np.ndarray:
    """``|f'(x)|`` estimated by the larger one-sided float64 difference (a weight, not a value)."""
    h = np.maximum(np.abs(x), 2.0 ** -20) * 2.0 ** -20
    with np.errstate(all="ignore"):
        f0 = fn.np_f(x)
        up = np.abs(fn.np_f(x + h) - f0) / h
        dn = np.abs(f0 - fn.np_f(x - h)) / h
        d = np.fmax(up, dn)  # one side may leave the domain (log at 0): the other is used
    return np.where(np.isnan(d), np.inf, d)


def baseline_error_model(model: Any, point: Mapping[str, np.ndarray], dtype: Any, *, spread: bool = True,
                         samples: int = 128, seed: int = 0, memo: dict | None = None) -> dict[str, np.ndarray]:
    """Per variable, per entry: a first-order bound ``u E_i`` of the rounding error of the gradient in ``dtype``.

    Parameters
    ----------
    model : verigrad.engine.model.Model
        The compiled case (its ``gradient`` graphs are walked).
    point : mapping of str to ndarray
        The values of every leaf in ``dtype`` (a truth's ``point``).
    dtype : numpy.float32 or numpy.float64
    spread : bool, default True
        Return ``min(u E_i, SPREAD_SIGMAS sigma_i)`` with ``sigma_i`` from
        :func:`baseline_error_spread` (the signed propagation of random roundings); ``False``
        gives the worst-case bound ``u E_i`` alone.
    samples, seed : int
        Passed to :func:`baseline_error_spread` (fixed seed: the grade is reproducible).
    memo : dict, optional
        Passed to :func:`baseline_error_spread`: one dict per model shares the perturbed runs
        between float32 and float64.

    Returns
    -------
    dict of str to ndarray of float64
        In the variable's shape; ``inf`` where the model has no bound (an infinite
        derivative, an overflow).  See the module docstring for the rules.

    See the module docstring for the rules and an example.
    """
    from verigrad.engine.backends import FloatBackend
    from verigrad.expr.evaluate import _align, _batched_axes, eval_node
    from verigrad.expr.graph import ELEMENTWISE_BINARY, Op, topological

    dt = np.dtype(dtype)
    t = np.finfo(dt).nmant + 1
    u = 2.0 ** -t
    bk = FloatBackend(np.float64)
    outputs = list(model.gradient.values())
    leaves = {name: np.asarray(point[name], dtype=np.float64)[None, ...] for name in model.leaves}
    val: dict[int, np.ndarray] = {}
    ind: dict[int, np.ndarray] = {}  # I: errors independent from entry to entry
    coh: dict[int, np.ndarray] = {}  # C: errors shared by entries (through a broadcast)
    with np.errstate(all="ignore"):
        for n in topological(outputs):
            op = n.op
            args = [val[a.id] for a in n.args]
            x = eval_node(n, args, leaves, bk)
            nd = len(n.shape)
            zero = np.broadcast_to(np.zeros((), dtype=np.float64), x.shape)  # no memory for exact values
            if op in ELEMENTWISE_BINARY or op in (Op.NEG, Op.UNARY):
                args = [_align(y, nd) for y in args]
                ia = [_align(ind[a.id], nd) for a in n.args]
                ca = [_align(coh[a.id], nd) for a in n.args]
            else:
                ia = [ind[a.id] for a in n.args]
                ca = [coh[a.id] for a in n.args]
            if op is Op.LEAF:
                i_, c_ = zero, zero
            elif op is Op.CONST:
                i_, c_ = zero, (zero if _const_exact(n.params, dt) else np.abs(x))
            elif op in (Op.ADD, Op.SUB):
                a, b = args
                i_ = ia[0] + ia[1] + np.abs(a) + np.abs(b)
                c_ = ca[0] + ca[1]
            elif op is Op.MUL:
                a, b = np.abs(args[0]), np.abs(args[1])
                i_ = b * ia[0] + a * ia[1] + np.abs(x)
                c_ = b * ca[0] + a * ca[1]
            elif op is Op.DIV:
                b, q = np.abs(args[1]), np.abs(x)
                i_ = (ia[0] + q * ia[1]) / b + q
                c_ = (ca[0] + q * ca[1]) / b
            elif op is Op.POW:
                a, b = args
                da = np.abs(b * a ** (b - 1))
                db = np.abs(x * np.log(np.abs(a)))
                i_ = _wt(da, ia[0]) + _wt(db, ia[1]) + 2 * np.abs(x)
                c_ = _wt(da, ca[0]) + _wt(db, ca[1])
            elif op is Op.NEG:
                i_, c_ = ia[0], ca[0]
            elif op is Op.UNARY:
                d = _abs_deriv(n.fn, args[0])
                # numpy's functions: a few ulps; the composite formulas (stable forms of sigmoid, its
                # derivative, dtanh, softplus: exp(-|a|) and a few operations) up to about twice that
                c = (4.0 if n.fn.name in _LIBRARY else 8.0) + _textbook(n.fn.name, args[0])
                i_ = _wt(d, ia[0]) + c * np.abs(x)
                c_ = _wt(d, ca[0])
            elif op is Op.MAXIMUM:
                i_, c_ = np.maximum(ia[0], ia[1]), np.maximum(ca[0], ca[1])
            elif op is Op.TIE_WEIGHT:
                i_, c_ = zero, zero
            elif op is Op.ARGMAX_WEIGHT:
                i_, c_ = np.abs(x), zero  # mask / count: one rounding when the count is not a power of two
            elif op is Op.MATMUL:
                a, b = args
                k = n.args[0].shape[-1]

                def mm(p: np.ndarray, q: np.ndarray) -> np.ndarray:
                    return eval_node(n, [p, q], leaves, bk)  # the same product, on other arrays

                a2, b2 = a * a, b * b
                sq = mm(a2, b2)
                prop = (mm(a2, ia[1] ** 2) if _any(ia[1]) else 0.0) + (mm(ia[0] ** 2, b2) if _any(ia[0]) else 0.0)
                i_ = np.sqrt(prop) + np.sqrt(sq) + _q(x, sq, k)
                c_ = (mm(np.abs(a), ca[1]) if _any(ca[1]) else zero) + (mm(ca[0], np.abs(b)) if _any(ca[0]) else zero)
            elif op in (Op.TRANSPOSE, Op.RESHAPE, Op.SCATTER) or (op is Op.GETITEM and not _gathers(n.params)):
                i_, c_ = eval_node(n, [ia[0]], leaves, bk), eval_node(n, [ca[0]], leaves, bk)
            elif op in (Op.BROADCAST, Op.GETITEM):
                # one entry's error now reaches many entries: it is shared from here on
                i_, c_ = zero, eval_node(n, [ia[0] + ca[0]], leaves, bk)
            elif op is Op.SUM:
                axes, keepdims = n.params
                a = args[0]
                bax = _batched_axes(axes, a.ndim - 1)
                cnt = int(np.prod([a.shape[j] for j in bax], dtype=np.int64))
                sq = np.sum(a * a, axis=bax, keepdims=keepdims)
                i_ = np.sqrt(np.sum(ia[0] ** 2, axis=bax, keepdims=keepdims)) + _q(x, sq, cnt)
                c_ = np.sum(ca[0], axis=bax, keepdims=keepdims)
            elif op is Op.PROD:
                axes, keepdims = n.params
                a = args[0]
                bax = _batched_axes(axes, a.ndim - 1)
                cnt = int(np.prod([a.shape[j] for j in bax], dtype=np.int64))
                i_ = cnt * np.abs(x)
                c_ = np.abs(x) * np.sum((ia[0] + ca[0]) / np.abs(a), axis=bax, keepdims=keepdims)
            elif op is Op.MAX:
                axes, keepdims = n.params
                bax = _batched_axes(axes, args[0].ndim - 1)
                i_ = np.max(ia[0], axis=bax, keepdims=keepdims)
                c_ = np.max(ca[0], axis=bax, keepdims=keepdims)
            elif op is Op.LOGSUMEXP:
                axes, keepdims = n.params
                a = args[0]
                bax = _batched_axes(axes, a.ndim - 1)
                cnt = int(np.prod([a.shape[j] for j in bax], dtype=np.int64))
                m = np.max(a, axis=bax, keepdims=True)
                w = np.exp(a - m)
                s_ = np.sum(w, axis=bax, keepdims=True)
                p = w / s_
                ls = np.log(s_)
                i_ = (np.sqrt(np.sum((p * ia[0]) ** 2, axis=bax, keepdims=True))
                      + np.sum(p * np.abs(a - m), axis=bax, keepdims=True) + 2 + _rho(cnt) + 3 * np.abs(ls) + np.abs(m))
                c_ = np.sum(p * ca[0], axis=bax, keepdims=True)
                if not keepdims:
                    i_, c_ = np.squeeze(i_, axis=bax), np.squeeze(c_, axis=bax)
            else:  # pragma: no cover - a new op without a rule has no bound
                i_, c_ = np.full_like(x, np.inf), zero
            val[n.id] = x
            ind[n.id] = _finite_or_inf(np.broadcast_to(i_, x.shape))
            coh[n.id] = _finite_or_inf(np.broadcast_to(c_, x.shape))
    worst = {name: (u * (ind[node.id][0] + coh[node.id][0])).astype(np.float64).reshape(model.shape(name))
             for name, node in model.gradient.items()}
    if not spread:
        return worst
    sd = baseline_error_spread(model, point, dtype, samples=samples, seed=seed, memo=memo)
    if sd is None:
        return ErrorModel(worst, model=model, point=point, dtype=dtype, samples=samples, seed=seed, memo=memo)
    with np.errstate(all="ignore"):
        # an entry whose spread is not finite (an overflow in a perturbed run) keeps the worst case
        m = {name: np.where(np.isfinite(sd[name]), np.minimum(worst[name], SPREAD_SIGMAS * sd[name]), worst[name])
             for name in worst}
    return ErrorModel(m, model=model, point=point, dtype=dtype, samples=samples, seed=seed, memo=memo)


class ErrorModel(dict):
    """The error model ``m_i`` per variable (a dict of arrays), and, computed when first asked,
    the part of the rounding noise that no rewrite of the formulas removes.

    :meth:`reduction_noise` is ``SPREAD_SIGMAS sigma_i`` with only the roundings of the sums,
    matrix products and log-sum-exps perturbed (:func:`baseline_error_spread` with
    ``reductions_only=True``): the accumulation error of a reduction is there in any
    implementation that adds in the dtype, whereas elementwise roundings (``1 - s`` for a
    saturated sigmoid, ``1 - cos x`` near 0) are the formula's and a stable formulation removes
    them.  The grade asks for it only for a variable that has entries beyond their tolerance,
    to decide whether the dtype can resolve that variable at all (the verdict ``unresolved``).
    """

    def __init__(self, m: Mapping[str, np.ndarray], *, model: Any, point: Mapping[str, np.ndarray], dtype: Any,
                 samples: int, seed: int, memo: dict | None) -> None:
        super().__init__(m)
        self._args = (model, point, dtype, samples, seed, memo)
        self._reduction: dict[str, np.ndarray] | None = None

    def reduction_noise(self, name: str) -> np.ndarray | None:
        """``SPREAD_SIGMAS`` times the spread of variable ``name`` from its reductions alone (None if unknown)."""
        if self._reduction is None:
            model, point, dtype, samples, seed, memo = self._args
            sd = baseline_error_spread(model, point, dtype, samples=samples, seed=seed, memo=memo,
                                       reductions_only=True)
            self._reduction = {} if sd is None else {k: SPREAD_SIGMAS * v for k, v in sd.items()}
        return self._reduction.get(name)


#: ``m_i = min(worst case, SPREAD_SIGMAS sigma_i)``; the grade's ``entry_lambda = 2`` makes the
#: tolerance 9 sigma_i (see the module docstring for the measured margin)
SPREAD_SIGMAS = 4.5
#: the perturbed runs hold ``samples`` copies of a node: at most this many float64 numbers per node
_SPREAD_BUDGET = 2 ** 22
_SPREAD_MIN_SAMPLES = 16
#: the perturbed runs go through the graph about this many numbers per node at a time (a few MB,
#: which stay in cache: the first model of a process measured 2x faster), but at least
#: ``_SPREAD_MIN_CHUNK`` runs (each pass over the graph costs Python time per node)
_SPREAD_CHUNK = 2 ** 17
_SPREAD_MIN_CHUNK = 16


def baseline_error_spread(model: Any, point: Mapping[str, np.ndarray], dtype: Any, *, samples: int = 128,
                          seed: int = 0, memo: dict | None = None,
                          reductions_only: bool = False) -> dict[str, np.ndarray] | None:
    """Per entry, the standard deviation ``sigma_i`` of the gradient's rounding error under random rounding.

    The gradient graph is evaluated in float64 ``samples`` times (a batch axis, in chunks that
    stay in cache), every rounding of an evaluation in ``dtype`` (unit roundoff ``u``) replaced
    by a random perturbation of its size; ``sigma_i`` is the root mean square, over the runs, of
    the difference from an unperturbed run.  Unlike the worst-case bound, every rounding is
    propagated *with its sign* to the end, so an error that cancels downstream (the mean
    subtracted in a layer norm, a shared scale) counts as what it does.

    ==============================  =============================================================
    node                            perturbation, per entry and run
    ==============================  =============================================================
    ``+ - * /``, mask/count         ``x (1 + u r)``, ``r`` uniform on [-1, 1]
    ``**``                          ``x (1 + 2 u r)``
    numpy function, composite       ``x (1 + c u r)``, ``c`` = 2 (numpy's), 4 (the stable forms)
    inexact constant                ``c (1 + u r)``, one ``r`` per run (shared by every use)
    sum of ``n``                    ``+ u Q r``, ``Q`` as in the module docstring (a random
                                    order's partial sums, or a loop's, the larger)
    matmul (``k``)                  ``+ u sqrt(sum_k a_k**2 b_k**2 + Q**2) r``
    logsumexp, prod                 the worst-case rule's magnitude times ``r``
    structure, max, neg, leaves     exact
    ==============================  =============================================================

    A rounding to nearest has a relative error uniform-like on ``[-u, u]`` (standard deviation
    ``u / sqrt(3)``); a sum's error ``sum_k delta_k s_k`` is a sum of many such terms, with the
    standard deviation ``u Q / sqrt(3)``, which ``u Q r`` has.  ``sigma_i`` depends on the draws only
    through their variances, so every ``r`` is one random byte ``k``, ``r = (2 k + 1) / 256``: 256
    levels symmetric about 0, variance 1/3 to 1.5e-5 (cheaper than floating-point draws, which
    dominated the model's time).  This is the model of a *correct* implementation: the same
    mathematics, any order of its sums, a few ulps per library function.

    Parameters
    ----------
    model : verigrad.engine.model.Model
    point : mapping of str to ndarray
        The values of every leaf in ``dtype``.
    dtype : numpy.float32 or numpy.float64
    samples : int, default 128
        Perturbed runs (fewer, at least 16, when a node is large; see ``_SPREAD_BUDGET``).
    seed : int, default 0
        The random perturbations are seeded: the same case gives the same ``sigma``.
    memo : dict, optional
        A dict kept by the caller for one model.  float32 and float64 share one set of perturbed
        runs: the perturbations are drawn at the scale ``s = max(u, 2**-24)`` and ``sigma`` is
        scaled by ``u / s`` (first order in ``u``, as the model; for float64 the scale also keeps
        the perturbations far above float64's own roundings in the runs, which would otherwise
        add to ``sigma``).  At that scale the runs start from the point rounded to float32
        (``_float32_point``), so both dtypes see one point; with ``memo`` they are computed once
        (the inexact constants must also agree).
    reductions_only : bool, default False
        Perturb only the sums, matrix products, products and log-sum-exps (their accumulation
        error, which every implementation that adds in the dtype has; :class:`ErrorModel`).

    Returns
    -------
    dict of str to ndarray of float64, or None
        ``sigma_i`` in the variable's shape (``nan`` where a run overflowed); ``None`` when a
        node is too large for 16 runs (the caller keeps the worst case).
    """
    from verigrad.expr.graph import Op, topological

    dt = np.dtype(dtype)
    u = 2.0 ** -(np.finfo(dt).nmant + 1)
    scale = max(u, 2.0 ** -24)
    outputs = list(model.gradient.values())
    order = topological(outputs)
    inexact = frozenset(n.id for n in order if n.op is Op.CONST and not _const_exact(n.params, dt))
    if scale == 2.0 ** -24:
        point = _float32_point(point)
    key = (scale, samples, seed, inexact, reductions_only)
    hit = memo.get(key) if memo is not None else None
    if hit is not None and _same_point(hit[0], point):
        return None if hit[1] is None else {k: v * u for k, v in hit[1].items()}
    unit = _spread_runs(model, point, order, outputs, frozenset() if reductions_only else inexact, scale, samples,
                        seed, reductions_only)
    if memo is not None:
        memo[key] = ({k: np.array(v, copy=True) for k, v in point.items()}, unit)
    return None if unit is None else {k: v * u for k, v in unit.items()}


def _float32_point(point: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
    """The point rounded to float32, where that keeps every entry finite and every nonzero nonzero.

    float32 and float64 then evaluate the spread at the same point (the float32 one), whichever
    comes first: ``sigma`` is a magnitude, which moves by ~2**-24 relative with the point, far
    below its sampling error (~6% with 128 runs).  A point that float32 cannot hold (an overflow,
    a nonzero that underflows) keeps its own values."""
    out = {}
    for k, v in point.items():
        x = np.asarray(v)
        if x.dtype.kind != "f" or x.dtype == np.float32:
            out[k] = x
            continue
        with np.errstate(all="ignore"):
            y = x.astype(np.float32)
        if not (np.array_equal(np.isfinite(y), np.isfinite(x)) and np.array_equal(y == 0, x == 0)):
            return point
        out[k] = y
    return out


def _same_point(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> bool:
    """Whether two points are the same values (and dtypes)."""
    return a.keys() == b.keys() and all(
        np.asarray(a[k]).dtype == np.asarray(b[k]).dtype and np.array_equal(a[k], b[k], equal_nan=True) for k in a)


def _spread_runs(model: Any, point: Mapping[str, np.ndarray], order: list, outputs: list, inexact: frozenset,
                 u: float, samples: int, seed: int, reductions_only: bool = False) -> dict[str, np.ndarray] | None:
    """:func:`baseline_error_spread` with perturbations of the scale ``u``, divided by ``u``."""
    from verigrad.engine.backends import FloatBackend
    from verigrad.expr.evaluate import _align, _batched_axes, eval_node
    from verigrad.expr.graph import Op

    biggest = max((n.size for n in order), default=1)
    k_runs = min(samples, _SPREAD_BUDGET // max(biggest, 1))
    if k_runs < _SPREAD_MIN_SAMPLES:
        return None
    chunk = min(k_runs, max(_SPREAD_MIN_CHUNK, _SPREAD_CHUNK // max(biggest, 1)))
    bk = FloatBackend(np.float64)
    rng = np.random.default_rng(seed)
    leaves = {name: np.asarray(point[name], dtype=np.float64)[None, ...] for name in model.leaves}
    uses0: dict[int, int] = {}
    for n in order:
        for a in n.args:
            uses0[a.id] = uses0.get(a.id, 0) + 1
    keep = {n.id for n in outputs}

    paths = {n.id: p for n in order for p in [_split_paths(n)] if p}
    held = set(keep)  # the unperturbed run keeps what the split terms are computed from
    for ps in paths.values():
        for path in ps:
            for m, _ in path:
                held.update([m.id, *(a.id for a in m.args)])
    val: dict[int, np.ndarray] = {}

    def walk(runs: int, perturb: Any, hold: set[int]) -> dict[int, np.ndarray]:
        # one evaluation of the graph, ``runs`` at once, ``perturb(n, x, args)`` after each node;
        # what no later node reads is freed (runs x size per node) unless in ``hold``
        val.clear()
        uses = dict(uses0)
        for n in order:
            args = [val[a.id] for a in n.args]
            val[n.id] = perturb(n, eval_node(n, args, leaves, bk), args)
            for a in n.args:
                uses[a.id] -= 1
                if uses[a.id] == 0 and a.id not in hold:
                    del val[a.id]
        return {i: val[i] for i in keep}

    def parts(path: list) -> list[np.ndarray]:
        # the value of path[0] as the sum of the images of the addends of its +- node (path[-1])
        pm = path[-1][0]
        nd = len(pm.shape)
        a, b = (_align(val[m.id], nd) for m in pm.args)
        shape = val[pm.id].shape
        out = [np.broadcast_to(a, shape), np.broadcast_to(b if pm.op is Op.ADD else -b, shape)]
        for n, i in reversed(path[:-1]):
            args = [val[m.id] for m in n.args]
            out = [eval_node(n, args[:i] + [p] + args[i + 1:], leaves, bk) for p in out]
        return out

    # 1. the unperturbed run: the reference values and, per rounding, its magnitude (first order,
    #    as the model) and its scale
    mags: dict[int, tuple[np.ndarray, float, bool]] = {}

    def magnitude(n: Any, x: np.ndarray, args: list[np.ndarray]) -> np.ndarray:
        op = n.op
        if reductions_only and op not in (Op.SUM, Op.PROD, Op.LOGSUMEXP, Op.MATMUL):
            return x
        if op is Op.CONST:
            if n.id in inexact:
                mags[n.id] = (x, u, True)  # one r per run: every use of the constant shares its rounding
        elif op in (Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.ARGMAX_WEIGHT):
            mags[n.id] = (np.abs(x), u, False)
        elif op is Op.POW:
            mags[n.id] = (np.abs(x), 2.0 * u, False)
        elif op is Op.UNARY:
            c = 2.0 if n.fn.name in _LIBRARY else 4.0
            mags[n.id] = ((c + _textbook(n.fn.name, args[0])) * np.abs(x), u, False)
        elif op in (Op.SUM, Op.PROD, Op.LOGSUMEXP):
            axes, keepdims = n.params
            a = args[0]
            bax = _batched_axes(axes, a.ndim - 1)
            cnt = int(np.prod([a.shape[j] for j in bax], dtype=np.int64))
            if op is Op.SUM:
                def sum_sq(t: np.ndarray, total: np.ndarray | None = None) -> np.ndarray:
                    # the squared magnitude of summing t: a random order's, or a loop's, the larger
                    total = np.sum(t, axis=bax, keepdims=keepdims) if total is None else total
                    q = _q(total, np.sum(t * t, axis=bax, keepdims=keepdims), cnt)
                    return np.maximum(q * q, _sequential_sq(t, bax, keepdims))

                m2 = sum_sq(a, x)
                for path in paths.get(n.id, ()):
                    # the terms may be summed apart (sum(p) - sum(y) for sum(p - y)): their own
                    # partial sums, which can be far larger than the difference's
                    m2 = np.maximum(m2, sum(sum_sq(t) for t in parts(path[1:])))
                mag = np.sqrt(m2)
            elif op is Op.PROD:
                mag = cnt * np.abs(x)
            else:
                m = np.max(a, axis=bax, keepdims=True)
                w = np.exp(a - m)
                s_ = np.sum(w, axis=bax, keepdims=True)
                mag = (np.sum(w / s_ * np.abs(a - m), axis=bax, keepdims=True) + 2 + _rho(cnt)
                       + 3 * np.abs(np.log(s_)) + np.abs(m))
                if not keepdims:
                    mag = np.squeeze(mag, axis=bax)
            mags[n.id] = (mag, u, False)
        elif op is Op.MATMUL:
            a, b = args
            k = n.args[0].shape[-1]

            def product_sq(p: np.ndarray, q: np.ndarray, pq: np.ndarray | None = None) -> np.ndarray:
                # the squared magnitude of p @ q: its products' roundings and its sums' (as sum_sq)
                sq = eval_node(n, [p * p, q * q], leaves, bk)
                pq = eval_node(n, [p, q], leaves, bk) if pq is None else pq
                return sq + np.maximum(_q(pq, sq, k) ** 2, _sequential_sq_matmul(n, p, q))

            m2 = product_sq(a, b, x)
            for path in paths.get(n.id, ()):
                # an operand that is a sum of terms may be multiplied term by term
                # ((H W^T)^T H - X^T H for (H W^T - X)^T H): each product's own partial sums
                side = path[0][1]
                m2 = np.maximum(m2, sum(product_sq(t, b) if side == 0 else product_sq(a, t) for t in parts(path[1:])))
            mags[n.id] = (np.sqrt(m2), u, False)
        # leaves, structure, max, maximum, neg, tie weights: exact
        return x

    def noise(shape: tuple[int, ...], scale: float) -> np.ndarray:
        # scale * r, r = (2 k + 1) / 256 with k a random byte: symmetric on +-1/256 .. +-255/256,
        # variance 1/3 (to 1.5e-5), as a rounding's relative error.  Only second moments reach sigma,
        # so a sum's normal law is drawn the same way; random bytes cost a sixth of numpy's uniform
        # floats, which dominated the model's time.  float32 holds scale * r to 2^-24 relative (a
        # power-of-two scale exactly), far below what a standard deviation needs.
        size = int(np.prod(shape, dtype=np.int64))
        r = np.frombuffer(rng.bytes(size), dtype=np.int8).reshape(shape).astype(np.float32)
        r *= np.float32(2.0 * scale / 256.0)
        r += np.float32(scale / 256.0)
        return r

    with np.errstate(all="ignore"):
        ref = walk(1, magnitude, held)
        # 2. the perturbed runs, ``chunk`` at a time (a few MB per node: the runs stay in cache)
        acc = {i: np.zeros(ref[i].shape[1:]) for i in keep}
        done = 0
        while done < k_runs:
            c = min(chunk, k_runs - done)

            def perturbed(n: Any, x: np.ndarray, args: list[np.ndarray]) -> np.ndarray:
                hit = mags.get(n.id)
                if hit is None:
                    return x
                mag, scale, shared = hit
                sh = tuple(x.shape[1:])
                if shared:
                    return x * (1.0 + noise((c,) + (1,) * len(sh), scale))
                t = mag * noise((c,) + sh, scale)  # x + scale mag r: one pass, one buffer
                t += x
                return t

            out = walk(c, perturbed, keep)
            for i in keep:
                d = out[i] - ref[i]
                acc[i] += np.sum(d * d, axis=0)
            done += c
    res = {}
    for name, node in model.gradient.items():
        with np.errstate(all="ignore"):
            res[name] = (np.sqrt(acc[node.id] / k_runs) / u).reshape(model.shape(name))
    return res


_LINEAR = ("neg", "transpose", "reshape", "broadcast")


def _split_path(n: Any, depth: int = 0) -> list | None:
    """``[(node, i), ..., (pm, None)]``: ``n`` is linear in its argument ``i``, ... down to ``pm``, a sum or difference.

    Through negation, structure (transpose, reshape, broadcast, a slice without a gather) and
    products or quotients by other values: ``n`` equals the sum of the images of ``pm``'s two
    terms, which a correct candidate may compute apart (``c (a - b) -> c a - c b``)."""
    from verigrad.expr.graph import Op

    if n.op in (Op.ADD, Op.SUB):
        return [(n, None)]
    if depth >= 8:
        return None
    if n.op.value in _LINEAR or (n.op is Op.GETITEM and not _gathers(n.params)):
        sides: tuple[int, ...] = (0,)
    elif n.op is Op.MUL:
        sides = (0, 1)
    elif n.op is Op.DIV:
        sides = (0,)
    else:
        return None
    for i in sides:
        p = _split_path(n.args[i], depth + 1)
        if p is not None:
            return [(n, i)] + p
    return None


def _split_paths(n: Any) -> list[list]:
    """For a sum (its argument) or a matmul (either operand): the paths of :func:`_split_path`."""
    from verigrad.expr.graph import Op

    if n.op is Op.SUM:
        p = _split_path(n.args[0])
        return [[(n, 0)] + p] if p else []
    if n.op is Op.MATMUL:
        return [[(n, i)] + p for i in (0, 1) for p in [_split_path(n.args[i])] if p]
    return []


def _textbook(name: str, a: np.ndarray) -> np.ndarray | float:
    """Extra relative error, in units of ``u``, of the textbook form of a derivative a candidate may write.

    ``s (1 - s)`` for the sigmoid's derivative (``s`` rounded: ``1 - s`` has the relative error
    ``u s / (1 - s) = u exp(a)``) and ``1 - t**2`` for tanh's (``2 u t**2 / (1 - t**2) = 2 u sinh(a)**2``):
    correct formulas, as accurate as the dtype allows given ``s`` or ``t``, which the stable forms
    of the graph are not held against."""
    if name == "dsigmoid":
        return np.exp(np.abs(a))
    if name == "dtanh":
        return 2.0 * np.sinh(a) ** 2
    return 0.0


def _seq_sq(terms: np.ndarray, axis: int) -> np.ndarray:
    """``sum_k s_k**2`` over the partial sums ``s_2 .. s_n`` along ``axis``, the larger of the two loop orders.

    A loop over the terms in their natural order, or reversed, is what a hand-written sum does;
    where the terms drift (a trend along the axis) its partial sums exceed a random order's."""
    fwd = np.cumsum(terms, axis=axis)
    rev = np.cumsum(np.flip(terms, axis=axis), axis=axis)
    n = terms.shape[axis]
    tail = [slice(None)] * terms.ndim
    tail[axis] = slice(1, n)
    tail = tuple(tail)
    return np.maximum(np.sum(fwd[tail] ** 2, axis=axis), np.sum(rev[tail] ** 2, axis=axis))


def _sequential_sq(a: np.ndarray, bax: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """:func:`_seq_sq` of a sum over the axes ``bax`` of ``a`` (looped in C order), shaped like the sum."""
    rest = [j for j in range(a.ndim) if j not in bax]
    t = np.transpose(a, rest + list(bax))
    t = t.reshape(t.shape[:len(rest)] + (-1,))
    out = _seq_sq(t, -1)
    if keepdims:
        out = np.expand_dims(out, tuple(bax))
    return out


def _sequential_sq_matmul(n: Any, a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """:func:`_seq_sq` of every dot product of a matmul node (``0`` when the products are too many to hold)."""
    from verigrad.expr.evaluate import _align

    xs, ys = n.args[0].shape, n.args[1].shape
    x = a[:, None, :] if len(xs) == 1 else a
    y = b[..., None] if len(ys) == 1 else b
    k = max(x.ndim, y.ndim) - 1
    x, y = _align(x, k), _align(y, k)
    size = int(np.prod(np.broadcast_shapes(x.shape + (1,), y.shape[:-2] + (1,) + y.shape[-2:]), dtype=np.int64))
    if size > _SPREAD_BUDGET:
        return 0.0
    out = _seq_sq(x[..., :, :, None] * y[..., None, :, :], -2)
    if len(xs) == 1:
        out = out[..., 0, :]
    if len(ys) == 1:
        out = out[..., 0]
    return out


def _wt(d: np.ndarray, e: np.ndarray) -> np.ndarray:
    """``d e`` with ``0 * inf = 0`` (no error in, none out, however steep)."""
    return np.where(e > 0, d * e, 0.0)


def _finite_or_inf(e: np.ndarray) -> np.ndarray:
    if not _any(e):
        return e
    return np.where(np.isnan(e), np.inf, e)


def _any(e: np.ndarray) -> bool:
    """False for the zero views of exact values (every stride 0, value 0): nothing to propagate."""
    return not (e.size == 0 or (all(st == 0 for st in e.strides) and e.reshape(-1)[0] == 0))


def _q(total: np.ndarray, sumsq: np.ndarray, n: int) -> np.ndarray:
    """Root mean square, over the orders of summation, of ``sqrt(sum_k s_k**2)``, ``s_k`` the partial sums.

    For a uniformly random order of ``n`` terms with sum ``S`` and sum of squares ``Q2``
    (mean ``mu = S / n``, variance ``var = Q2 / n - mu**2``), a partial sum of ``k`` terms has
    mean ``k mu`` and variance ``k (n - k) var / (n - 1)`` (sampling without replacement), so
    ``E sum_k s_k**2 = mu**2 n (n + 1) (2 n + 1) / 6 + var n (n + 1) / 6``.
    """
    if n <= 1:
        return np.zeros_like(total)
    mu = total / n
    var = np.maximum(sumsq / n - mu * mu, 0.0)
    return np.sqrt(mu * mu * (n * (n + 1) * (2 * n + 1) / 6) + var * (n * (n + 1) / 6))


def _gathers(code: tuple) -> bool:
    """An index with an integer array may read one entry many times (a gather)."""
    return any(item[0] == "array" for item in code)


def _const_exact(params: tuple, dt: np.dtype) -> bool:
    """Whether the constant is exactly representable in ``dt``."""
    if params[0] != "rational":
        return False  # pi, e
    from verigrad.engine.backends import round_fraction

    q = Fraction(params[1], params[2])
    return Fraction(float(round_fraction(q, dt))) == q
