"""Certified second order: exact Hessian-vector products, Hessians, diagonals and blocks.

The gradient of a case is itself a graph of the expression language
(:func:`verigrad.expr.reverse.gradient_graph`), so the exact Hessian-vector product is
the gradient of the scalar

    s(x) = sum_k sum(g_k(x) * v_k)          (v a constant, one array per variable)

built by a second reverse pass over the gradient graph (reverse-over-reverse). ``H v``
is then an expression of the same language, and every certified backend of
:func:`verigrad.engine.truth.certify` (the fast double-double engine, Arb, mpmath)
evaluates it with radii exactly as it evaluates the gradient: the returned
:class:`~verigrad.engine.truth.Truth` holds ``H v`` where a gradient truth holds ``g``
(and its ``loss`` is the directional derivative ``g . v``). One HVP costs a small
constant times one certified gradient (its graph is about three times the gradient's).

The full Hessian (small cases) is ``N`` products with the unit vectors; its blocks
``d^2 L / dA dB`` and its diagonal are read from it. Symmetry is checked on the
certificates: for every pair ``i < j`` the balls of ``H_ij`` and ``H_ji`` must overlap
(the exact Hessian is symmetric; two balls that do not overlap would prove a bug in
this machinery, and the check says so instead of hiding it).

Conventions at kinks: the second derivatives of ``relu``, ``abs``, ``step``, ``sign``,
``maximum`` and ``max`` are taken as 0 (their value away from the kink); on a kink they
are undefined, which the runner reports (:mod:`verigrad.runner.second`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Mapping

import numpy as np

from verigrad.engine.model import Model
from verigrad.errors import LimitError
from verigrad.spec import Dtype

__all__ = ["HessianTruth", "hvp_model", "certify_hvp", "certify_hessian", "hvp_baseline",
           "hessian_baseline", "vector_name", "MAX_HESSIAN_ENTRIES", "flat_offsets", "DiagonalTruth",
           "certify_hessian_diagonal", "hessian_diagonal_baseline", "MAX_DIAGONAL_ENTRIES"]

#: the full Hessian is N certified HVPs: beyond this many variable entries use ``hvp`` candidates
MAX_HESSIAN_ENTRIES = 400
#: the exact diagonal is N certified HVPs kept O(N) in memory (one entry of each): beyond this many
#: variable entries its cost (N times one certified HVP) is refused
MAX_DIAGONAL_ENTRIES = 4096


def vector_name(variable: str) -> str:
    """Name of the constant leaf holding the direction ``v`` for ``variable`` (never a case symbol:
    case names cannot contain ``:``)."""
    return f"v:{variable}"


def hvp_model(model: Model, term=None) -> Model:
    """A model whose "gradient" is ``H v``: new leaves ``v:<name>`` (constants), loss ``g . v``.

    Built once per model (cached) with the model's own builder, so the HVP graph shares every
    node of the loss and gradient graphs. Its values need, besides the case's symbols, one array
    per variable under :func:`vector_name`. With ``term`` (a scalar node of the loss graph), the
    HVP of that term alone (to recognise a candidate that misses a term of the Hessian).
    """
    key = ("hvp-model", None if term is None else term.id)
    hit = model._mp_cache.get(key)
    if hit is not None:
        return hit
    from verigrad.expr.reverse import gradient_graph

    t0 = time.perf_counter()
    b = model.builder
    vleaves = {vector_name(n): b.leaf(vector_name(n), model.shape(n), variable=False) for n in model.gradient}
    grad = model.gradient if term is None else gradient_graph(
        b, term, {n: model.leaves[n] for n in model.gradient})
    s = None
    for n, g in grad.items():
        term = b.sum(b.mul(g, vleaves[vector_name(n)]), label=f"sum(grad_{n} * v_{n})")
        if term.shape != ():
            term = b.reshape(term, ())
        s = term if s is None else b.add(s, term)
    variables = {n: model.leaves[n] for n in model.gradient}
    hv = gradient_graph(b, s, variables)
    out = Model(case=model.case, builder=b, leaves={**model.leaves, **vleaves}, defines=model.defines, loss=s,
                gradient=hv, point=model.point, compile_seconds=model.compile_seconds + time.perf_counter() - t0)
    model._mp_cache[key] = out
    return out


def _vector_values(model: Model, vector: Mapping[str, np.ndarray], dtype) -> dict[str, np.ndarray]:
    out = {}
    for n in model.gradient:
        v = np.asarray(vector[n]) if n in vector else np.zeros(model.shape(n))
        if v.shape != model.shape(n):
            raise ValueError(f"the vector for {n} has shape {v.shape}, expected {model.shape(n)}")
        out[vector_name(n)] = np.array(v, dtype=dtype)
    return out


def certify_hvp(model: Model, point: Mapping[str, np.ndarray], vector: Mapping[str, np.ndarray], dtype: Dtype, *,
                digits: int = 24, backend: str = "auto"):
    """Certified exact ``H(x_p) v_p`` at the dtype's point.

    Parameters
    ----------
    model : Model
    point : mapping of str to ndarray
        Every symbol in ``dtype`` (x_p = fl_p(x)).
    vector : mapping of str to ndarray
        ``v`` per variable (a missing variable is 0); taken exactly as its ``dtype`` values
        (the candidate receives the same ``v_p``).
    dtype : Dtype
    digits : int
        Certified significant digits per entry (as for the gradient; entries that cancel to
        almost nothing are certified absolutely against ``max |H v|``).

    Returns
    -------
    Truth
        Its ``gradient`` (and ``gradient_hi/lo/rad``, ``exact_zero``) is ``H v`` per variable;
        its ``loss`` is ``g . v``; its ``point`` includes the vector under :func:`vector_name`.

    Examples
    --------
    >>> from verigrad.casefile.loader import load_case_text, point_in_dtype
    >>> from verigrad.engine.model import compile_case
    >>> m = compile_case(load_case_text('name = "q"\\nloss = "x**2 * y"\\n[symbols]\\n'
    ...                                 'x = { value = 1.5 }\\ny = { value = 0.5 }\\n'))
    >>> t = certify_hvp(m, point_in_dtype(m.point, Dtype.FLOAT64), {"x": np.array(1.0)}, Dtype.FLOAT64)
    >>> float(t.gradient_hi["x"]), float(t.gradient_hi["y"])  # H e_x = (2y, 2x)
    (1.0, 3.0)
    """
    from verigrad.engine.truth import certify

    hm = hvp_model(model)
    values = {**{k: point[k] for k in model.leaves}, **_vector_values(model, vector, dtype.numpy)}
    return certify(hm, values, dtype, digits=digits, backend=backend)


def hvp_baseline(model: Model, point: Mapping[str, np.ndarray], vector: Mapping[str, np.ndarray],
                 dtype: Dtype, *, term=None) -> dict[str, np.ndarray]:
    """The float baseline of ``H v``: the exact HVP graph evaluated naively in ``dtype`` (of one ``term``
    of the loss when given)."""
    hm = hvp_model(model, term)
    values = {**{k: point[k] for k in model.leaves}, **_vector_values(model, vector, dtype.numpy)}
    vals = hm.float_eval(list(hm.gradient.values()), values, dtype.numpy)
    return dict(zip(hm.gradient, vals))


def flat_offsets(model: Model, variables=None) -> dict[str, tuple[int, int]]:
    """``name -> (start, stop)`` of each variable in the flattened parameter vector (declaration order)."""
    out, k = {}, 0
    for n in (variables or model.gradient):
        size = int(np.prod(model.shape(n), dtype=np.int64))
        out[n] = (k, k + size)
        k += size
    return out


def hessian_baseline(model: Model, point: Mapping[str, np.ndarray], dtype: Dtype, *, term=None) -> np.ndarray:
    """The float baseline of the full ``N x N`` Hessian: the HVP graph evaluated naively in ``dtype``
    with the unit vectors, as one batched evaluation (column ``j`` is ``H e_j``); of one ``term``
    of the loss when given."""
    hm = hvp_model(model, term)
    offs = flat_offsets(model)
    total = sum(b - a for a, b in offs.values())
    eye = np.eye(total, dtype=dtype.numpy)
    values = {k: np.asarray(point[k])[None, ...] for k in model.leaves}
    for n, (a, c) in offs.items():
        values[vector_name(n)] = eye[:, a:c].reshape((total,) + model.shape(n))
    vals = hm.float_eval(list(hm.gradient.values()), values, dtype.numpy, batched=True)
    cols = np.concatenate([np.broadcast_to(v, (total,) + model.shape(n)).reshape(total, -1)
                           for n, v in zip(hm.gradient, vals)], axis=1)  # row j = H e_j = column j
    return np.ascontiguousarray(cols.T)


@dataclass(frozen=True, eq=False)
class HessianTruth:
    """The certified exact Hessian at one dtype's point, flattened in declaration order.

    Attributes
    ----------
    case : str
    dtype : Dtype
    point : dict of str to ndarray
    offsets : dict of str to (int, int)
        Each variable's rows/columns ``start:stop`` (entries in C order of the variable).
    shapes : dict of str to tuple
    hi, lo, rad : ndarray of float64, shape (N, N)
        ``H_ij`` lies in ``[hi + lo - rad, hi + lo + rad]`` (proved by the fast and Arb
        backends; for mpmath the agreement of two precisions).
    exact_zero : ndarray of bool, shape (N, N)
        Entries proved exactly 0 (structurally or by exact cancellation).
    digits : int
        Certified digits of every column ``H e_j`` (relative per entry, or absolute against
        ``max_i |H_ij|`` for entries that cancel to almost nothing).
    asymmetric : tuple of (int, int)
        Pairs ``i < j`` whose balls of ``H_ij`` and ``H_ji`` do not overlap (empty: symmetry
        holds within the certificates).
    exactly_symmetric : int
        Pairs ``i < j`` whose midpoints agree exactly with radius 0 on both.
    backend : str
    seconds : float
    """

    case: str
    dtype: Dtype
    point: dict
    offsets: dict
    shapes: dict
    hi: np.ndarray
    lo: np.ndarray
    rad: np.ndarray
    exact_zero: np.ndarray
    digits: int
    asymmetric: tuple
    exactly_symmetric: int
    backend: str
    seconds: float

    @property
    def size(self) -> int:
        return int(self.hi.shape[0])

    @property
    def symmetric(self) -> bool:
        return not self.asymmetric

    def block(self, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
        """``d^2 L / dA dB`` as ``(hi, lo)`` arrays of shape ``A.shape + B.shape``."""
        (ra, sa), (rb, sb) = self.offsets[a], self.offsets[b]
        shape = tuple(self.shapes[a]) + tuple(self.shapes[b])
        return (self.hi[ra:sa, rb:sb].reshape(shape).copy(), self.lo[ra:sa, rb:sb].reshape(shape).copy())

    def block_zero(self, a: str, b: str) -> np.ndarray:
        (ra, sa), (rb, sb) = self.offsets[a], self.offsets[b]
        return self.exact_zero[ra:sa, rb:sb].reshape(tuple(self.shapes[a]) + tuple(self.shapes[b])).copy()

    def diagonal(self, name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The diagonal ``d^2 L / dx_i^2`` as ``(hi, lo)``: of one variable (its shape) or of all (N,)."""
        if name is None:
            return np.diag(self.hi).copy(), np.diag(self.lo).copy()
        a, b = self.offsets[name]
        shape = tuple(self.shapes[name])
        return (np.diag(self.hi)[a:b].reshape(shape).copy(), np.diag(self.lo)[a:b].reshape(shape).copy())

    def as_float64(self) -> np.ndarray:
        return self.hi.copy()


def _exact(h: float, l: float) -> Fraction:
    return Fraction(h) + Fraction(l)


def _asymmetric_pairs(hi: np.ndarray, lo: np.ndarray, rad: np.ndarray) -> tuple[tuple, int]:
    """Pairs whose balls do not overlap (exact rational test), and the count of exactly equal pairs."""
    n = hi.shape[0]
    iu, ju = np.triu_indices(n, 1)
    same = (hi[iu, ju] == hi[ju, iu]) & (lo[iu, ju] == lo[ju, iu])
    exact_pairs = int(np.sum(same & (rad[iu, ju] == 0) & (rad[ju, iu] == 0)))
    # float pre-test: pairs clearly within their radii need no exact arithmetic
    diff = np.abs((hi[iu, ju] - hi[ju, iu]) + (lo[iu, ju] - lo[ju, iu]))
    slack = (rad[iu, ju] + rad[ju, iu]) * (1 - 2.0 ** -50) - 4 * 2.0 ** -104 * (np.abs(hi[iu, ju]) + np.abs(hi[ju, iu]))
    doubtful = np.flatnonzero(~same & ~(diff <= slack))
    bad = []
    for k in doubtful.tolist():
        i, j = int(iu[k]), int(ju[k])
        d = abs(_exact(hi[i, j], lo[i, j]) - _exact(hi[j, i], lo[j, i]))
        if d > Fraction(rad[i, j]) + Fraction(rad[j, i]):
            bad.append((i, j))
    return tuple(bad), exact_pairs


def certify_hessian(model: Model, point: Mapping[str, np.ndarray], dtype: Dtype, *, digits: int = 24,
                    backend: str = "auto") -> HessianTruth:
    """The certified full Hessian at the dtype's point: ``N`` certified HVPs with unit vectors.

    Parameters
    ----------
    model : Model
    point : mapping of str to ndarray
        Every symbol in ``dtype``.
    dtype : Dtype
    digits : int

    Returns
    -------
    HessianTruth

    Raises
    ------
    LimitError
        More than :data:`MAX_HESSIAN_ENTRIES` variable entries (use Hessian-vector products).
    CertificationError, DomainError
        As :func:`verigrad.engine.truth.certify`.

    Examples
    --------
    >>> from verigrad.casefile.loader import load_case_text, point_in_dtype
    >>> from verigrad.engine.model import compile_case
    >>> m = compile_case(load_case_text('name = "q"\\nloss = "x**2 * y"\\n[symbols]\\n'
    ...                                 'x = { value = 1.5 }\\ny = { value = 0.5 }\\n'))
    >>> H = certify_hessian(m, point_in_dtype(m.point, Dtype.FLOAT64), Dtype.FLOAT64)
    >>> H.hi.tolist(), H.symmetric, H.exact_zero.tolist()
    ([[1.0, 3.0], [3.0, 0.0]], True, [[False, False], [False, True]])
    """
    t0 = time.perf_counter()
    offs = flat_offsets(model)
    total = sum(b - a for a, b in offs.values())
    if total > MAX_HESSIAN_ENTRIES:
        raise LimitError(f"{model.case.path}::{model.case.name}: the full Hessian has {total} x {total} entries, "
                         f"over the limit of {MAX_HESSIAN_ENTRIES} variables",
                         hint="grade Hessian-vector products (kind = \"hvp\") instead")
    hi = np.zeros((total, total))
    lo = np.zeros((total, total))
    rad = np.zeros((total, total))
    zero = np.zeros((total, total), dtype=bool)
    used = set()
    for name, (a, _c) in offs.items():
        for k in range(int(np.prod(model.shape(name), dtype=np.int64))):
            v = np.zeros(model.shape(name))
            v.reshape(-1)[k] = 1.0
            t = certify_hvp(model, point, {name: v}, dtype, digits=digits, backend=backend)
            used.add(t.backend)
            col = a + k
            for n2, (r0, r1) in offs.items():
                hi[r0:r1, col] = np.asarray(t.gradient_hi[n2]).reshape(-1)
                lo[r0:r1, col] = np.asarray(t.gradient_lo[n2]).reshape(-1)
                rad[r0:r1, col] = np.asarray(t.gradient_rad[n2]).reshape(-1)
                zero[r0:r1, col] = np.asarray(t.exact_zero[n2]).reshape(-1)
    bad, exact_pairs = _asymmetric_pairs(hi, lo, rad)
    return HessianTruth(case=model.case.name, dtype=dtype, point=dict(point), offsets=offs,
                        shapes={n: model.shape(n) for n in offs}, hi=hi, lo=lo, rad=rad, exact_zero=zero,
                        digits=digits, asymmetric=bad, exactly_symmetric=exact_pairs,
                        backend="+".join(sorted(used)), seconds=time.perf_counter() - t0)


@dataclass(frozen=True, eq=False)
class DiagonalTruth:
    """The certified diagonal ``d^2 L / dx_i^2`` at one dtype's point, without the full Hessian.

    Attributes
    ----------
    case : str
    dtype : Dtype
    offsets, shapes : dict
        As :class:`HessianTruth`.
    hi, lo, rad : ndarray of float64, shape (N,)
        ``H_ii`` lies in ``[hi + lo - rad, hi + lo + rad]``.
    exact_zero : ndarray of bool, shape (N,)
    digits : int
    backend : str
    seconds : float
    """

    case: str
    dtype: Dtype
    offsets: dict
    shapes: dict
    hi: np.ndarray
    lo: np.ndarray
    rad: np.ndarray
    exact_zero: np.ndarray
    digits: int
    backend: str
    seconds: float

    @property
    def size(self) -> int:
        return int(self.hi.shape[0])

    def diagonal(self, name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`HessianTruth.diagonal`: ``(hi, lo)`` of one variable (its shape) or of all (N,)."""
        if name is None:
            return self.hi.copy(), self.lo.copy()
        a, b = self.offsets[name]
        shape = tuple(self.shapes[name])
        return self.hi[a:b].reshape(shape).copy(), self.lo[a:b].reshape(shape).copy()


def certify_hessian_diagonal(model: Model, point: Mapping[str, np.ndarray], dtype: Dtype, *, digits: int = 24,
                             backend: str = "auto") -> DiagonalTruth:
    """The certified diagonal of the Hessian without forming it: ``H_ii = (H e_i)_i``.

    One certified HVP per entry (:func:`certify_hvp` with the unit vector), of which only entry
    ``i`` is kept: O(N) memory, N times the cost of one certified HVP (the full Hessian needs
    the same N products but O(N^2) memory, and is capped at :data:`MAX_HESSIAN_ENTRIES`). No
    structural sparsity is assumed: probing several columns in one product (``H (e_i + e_j)``)
    would need a *proof* that ``H_ij = 0``, which the graph does not give cheaply.

    Raises
    ------
    LimitError
        More than :data:`MAX_DIAGONAL_ENTRIES` variable entries.

    Examples
    --------
    >>> from verigrad.casefile.loader import load_case_text, point_in_dtype
    >>> from verigrad.engine.model import compile_case
    >>> m = compile_case(load_case_text('name = "q"\\nloss = "x**2 * y"\\n[symbols]\\n'
    ...                                 'x = { value = 1.5 }\\ny = { value = 0.5 }\\n'))
    >>> certify_hessian_diagonal(m, point_in_dtype(m.point, Dtype.FLOAT64), Dtype.FLOAT64).hi.tolist()
    [1.0, 0.0]
    """
    t0 = time.perf_counter()
    offs = flat_offsets(model)
    total = sum(b - a for a, b in offs.values())
    if total > MAX_DIAGONAL_ENTRIES:
        raise LimitError(f"{model.case.path}::{model.case.name}: the exact Hessian diagonal has {total:,} entries, "
                         f"over the limit of {MAX_DIAGONAL_ENTRIES:,} (verigrad.engine.hessian.MAX_DIAGONAL_ENTRIES): "
                         f"it costs one certified Hessian-vector product per entry",
                         hint="grade Hessian-vector products (kind = \"hvp\") instead, or a smaller case")
    hi, lo, rad = np.zeros(total), np.zeros(total), np.zeros(total)
    zero = np.zeros(total, dtype=bool)
    used = set()
    for name, (a, _c) in offs.items():
        shape = model.shape(name)
        for k in range(int(np.prod(shape, dtype=np.int64))):
            v = np.zeros(shape)
            v.reshape(-1)[k] = 1.0
            t = certify_hvp(model, point, {name: v}, dtype, digits=digits, backend=backend)
            used.add(t.backend)
            hi[a + k] = float(np.asarray(t.gradient_hi[name]).reshape(-1)[k])
            lo[a + k] = float(np.asarray(t.gradient_lo[name]).reshape(-1)[k])
            rad[a + k] = float(np.asarray(t.gradient_rad[name]).reshape(-1)[k])
            zero[a + k] = bool(np.asarray(t.exact_zero[name]).reshape(-1)[k])
    return DiagonalTruth(case=model.case.name, dtype=dtype, offsets=offs, shapes={n: model.shape(n) for n in offs},
                         hi=hi, lo=lo, rad=rad, exact_zero=zero, digits=digits, backend="+".join(sorted(used)),
                         seconds=time.perf_counter() - t0)


def hessian_diagonal_baseline(model: Model, point: Mapping[str, np.ndarray], dtype: Dtype, *, term=None,
                              chunk: int = 128) -> np.ndarray:
    """The float baseline of the diagonal (N,): the HVP graph evaluated naively in ``dtype`` with the
    unit vectors, ``chunk`` columns per batched evaluation (O(chunk N) memory, not O(N^2))."""
    hm = hvp_model(model, term)
    offs = flat_offsets(model)
    total = sum(b - a for a, b in offs.values())
    out = np.zeros(total, dtype=dtype.numpy)
    for start in range(0, total, chunk):
        cols = np.arange(start, min(start + chunk, total))
        eye = np.zeros((cols.size, total), dtype=dtype.numpy)
        eye[np.arange(cols.size), cols] = 1
        values = {k: np.asarray(point[k])[None, ...] for k in model.leaves}
        for n, (a, c) in offs.items():
            values[vector_name(n)] = eye[:, a:c].reshape((cols.size,) + model.shape(n))
        vals = hm.float_eval(list(hm.gradient.values()), values, dtype.numpy, batched=True)
        rows = np.concatenate([np.broadcast_to(v, (cols.size,) + model.shape(n)).reshape(cols.size, -1)
                               for n, v in zip(hm.gradient, vals)], axis=1)
        out[cols] = rows[np.arange(cols.size), cols]
    return out
