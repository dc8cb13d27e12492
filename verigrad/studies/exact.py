"""Exact losses at the nodes of a stencil, for the studies' exact split.

The loss at the exact nodes x_p + c_k h_p e and at the rounded nodes y_k, in Arb ball
arithmetic (:func:`_arb_losses`) or in mpmath (:func:`_mp_losses`, :func:`_mp_loss`),
which also marks nodes outside the loss's domain (None); along a coordinate, their
changes from the line's cone (:class:`verigrad.studies.coordinate.CoordinateLine`).
:func:`_exact_values` picks one and turns the values of a sweep's rows into their parts
(:class:`_Absolute`, :class:`_Changes`); :func:`_float_values` evaluates the loss in the
dtype at the rounded nodes, in batches of bounded size.
"""

from __future__ import annotations

import math
from fractions import Fraction

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


#: floats of the perturbed variables one batch of the float evaluation holds (32 MB in float64)
_FLOAT_BATCH = 4_000_000


def _float_values(model: Model, point: dict, float_nodes: list[dict], dtype, is_cs: bool, loss_values):
    """F_k = f_p(y_k) at every rounded node (the loss expression, or the case's ``loss_code``),
    in batches whose perturbed leaves hold at most :data:`_FLOAT_BATCH` floats."""
    np_dt = dtype.numpy
    B = len(float_nodes)
    touched = {name for d in float_nodes for (name, _) in d}
    width = max(1, sum(int(np.asarray(point[n]).size) for n in touched))
    per = max(1, _FLOAT_BATCH // width)
    if is_cs:
        cdt = dtype.complex
        base_point = {n: v.astype(cdt) for n, v in point.items()}
        vals = [{k: np.asarray(complex(re, im), dtype=cdt) for k, (re, im) in d.items()} for d in float_nodes]
        out_dt = cdt
    else:
        base_point = point
        vals = [{k: np_dt.type(v) for k, v in d.items()} for d in float_nodes]
        out_dt = np_dt
    parts = []
    for start in range(0, B, per):
        chunk = vals[start:start + per]
        leaves = _line_leaves(model, base_point, chunk, as_object=False)
        if loss_values is not None:
            # the case's own forward pass (called with complex arrays for the complex step: it must be complex-safe)
            calls = [{n: np.array(leaves[n][b if leaves[n].shape[0] > 1 else 0]) for n in model.leaves}
                     for b in range(len(chunk))]
            v = np.asarray(loss_values(calls))
            parts.append(v.astype(out_dt) if is_cs else np.asarray(v, dtype=out_dt))
        else:
            v = np.asarray(model.float_eval([model.loss], leaves, out_dt, batched=True)[0]).reshape(-1)
            # a loss that does not depend on the perturbed entries has no batch axis: one value for all nodes
            parts.append(np.broadcast_to(v, (len(chunk),)) if v.size == 1 else v)
    return np.concatenate([np.asarray(p).reshape(-1) for p in parts]) if parts else np.empty(0, dtype=out_dt)


def _exact_values(model, point, line, exact_nodes, float_nodes, prec, is_cs):
    """The exact values of a sweep's nodes: changes along a coordinate line, or whole losses."""
    if line is not None:
        from verigrad.studies.coordinate import LineUnavailable

        try:
            return _Changes(line, exact_nodes, float_nodes, prec, is_cs)
        except LineUnavailable:
            pass
    arb_vals = None if is_cs else _arb_losses(model, point, exact_nodes, float_nodes, prec)
    if arb_vals is not None:
        return _Absolute(*arb_vals, prec, is_cs)
    return _Absolute(*_mp_losses(model, point, exact_nodes, float_nodes, prec, is_cs), prec, is_cs)


class _Absolute:
    """Rows' parts from the loss itself at the exact and rounded nodes (mpmath at ``prec``)."""

    def __init__(self, f_exact, f_nodes, prec, is_cs):
        self.f_exact, self.f_nodes, self.prec, self.is_cs = f_exact, f_nodes, prec, is_cs

    def in_domain(self, r: int, S: int) -> bool:
        return all(self.f_exact[r * S + k] is not None and self.f_nodes[r * S + k] is not None for k in range(S))

    def parts(self, r, S, h, weights, F, d_float, gstar, g_ball):
        """((E, T, S, R), noise) of row ``r`` as floats."""
        fe, fn = self.f_exact, self.f_nodes
        with mpmath.workprec(self.prec):
            wq = [mpmath.mpf(w.numerator) / w.denominator for w in weights]
            hm = mpmath.mpf(h)
            if self.is_cs:
                de = mpmath.im(fe[r * S]) / hm
                dn = mpmath.im(fn[r * S]) / hm
                nz = [abs(float(F[0].imag) - mpmath.im(fn[r * S]))]
            else:
                de = sum(w * fe[r * S + k] for k, w in enumerate(wq)) / hm
                dn = sum(w * fn[r * S + k] for k, w in enumerate(wq)) / hm
                nz = [abs(mpmath.mpf(float(F[k])) - fn[r * S + k]) for k in range(S)]
            df = mpmath.mpf(d_float)
            noise = float(mpmath.sqrt(sum(v * v for v in nz) / len(nz)))
            return (float(df - gstar), float(de - gstar), float(dn - de), float(df - dn)), noise


class _Changes:
    """Rows' parts from the changes f(z) - f(x_p) along a coordinate line (Arb balls; mpmath
    complex numbers for the complex step), with f(x_p) for the noise."""

    def __init__(self, line, exact_nodes, float_nodes, prec, is_cs):
        self.line, self.prec, self.is_cs = line, prec, is_cs
        (key,) = exact_nodes[0].keys()
        if is_cs:
            ex = [Fraction(d[key][1]) for d in exact_nodes]
            fl = [Fraction(d[key][1]) for d in float_nodes]
            vals = line.complex_deltas(list(dict.fromkeys(ex + fl)))
            found = dict(zip(dict.fromkeys(ex + fl), vals))
        else:
            ex = [Fraction(d[key]) for d in exact_nodes]
            fl = [Fraction(d[key]) for d in float_nodes]
            uniq = list(dict.fromkeys(ex + fl))
            found = dict(zip(uniq, line.deltas(uniq)))
        self.d_exact = [found[q] for q in ex]
        self.d_nodes = [found[q] for q in fl]

    def in_domain(self, r: int, S: int) -> bool:
        return all(self.d_exact[r * S + k] is not None and self.d_nodes[r * S + k] is not None for k in range(S))

    def parts(self, r, S, h, weights, F, d_float, gstar, g_ball):
        """((E, T, S, R), noise) of row ``r`` as floats."""
        de_, dn_ = self.d_exact[r * S:(r + 1) * S], self.d_nodes[r * S:(r + 1) * S]
        if self.is_cs:
            with mpmath.workprec(self.prec):
                hm = mpmath.mpf(h)
                de = mpmath.im(de_[0]) / hm
                dn = mpmath.im(dn_[0]) / hm
                df = mpmath.mpf(d_float)
                noise = float(abs(float(F[0].imag) - mpmath.im(dn_[0])))
                return (float(df - gstar), float(de - gstar), float(dn - de), float(df - dn)), noise
        from verigrad.engine import arb as ab
        from verigrad.engine.arb import to_mpf

        with ab.arb_precision(self.prec + 64):
            # integer weights over a common denominator: exact changes combine exactly
            den = math.lcm(*(w.denominator for w in weights))
            scale = ab.arb(h) * den
            de = sum(ab.arb(int(w * den)) * v for w, v in zip(weights, de_)) / scale
            dn = sum(ab.arb(int(w * den)) * v for w, v in zip(weights, dn_)) / scale
            g = g_ball if g_ball is not None else _arb_of(gstar)
            df = ab.arb(d_float)
            # a part whose ball contains 0 is not distinguishable from 0 at this precision
            parts = tuple(0.0 if v.contains(0) else float(to_mpf(v)) for v in (df - g, de - g, dn - de, df - dn))
        with mpmath.workprec(self.prec):
            f0 = self.line.loss_value
            nz = [abs(mpmath.mpf(float(F[k])) - (f0 + to_mpf(dn_[k]))) for k in range(S)]
            noise = float(mpmath.sqrt(sum(v * v for v in nz) / len(nz)))
        return parts, noise


def _ball(q):
    from verigrad.engine import arb as ab

    return ab.arb(q.numerator) / q.denominator if q.denominator != 1 else ab.arb(q.numerator)


def _arb_of(v):
    """The exact ball of an mpmath number."""
    from verigrad.engine import arb as ab

    sign, man, exp, _ = v._mpf_
    if not man:
        return ab.arb(0) if exp == 0 else ab.arb(float(v))
    m = -int(man) if sign else int(man)
    with ab.arb_precision(max(64, int(man).bit_length() + 8)):
        return ab.arb(m) * ab.arb(2) ** int(exp)


def _dense_values(model, point, dense, hp, offsets, weights, dtype, loss_values, prec, exact_gstar, crossing):
    """A dense direction on the fast engine: the parts of every row (:class:`_DenseParts`) and F."""
    np_dt = dtype.numpy
    K, S = len(hp), len(offsets)
    ts = [c * Fraction(float(h)) for h in hp for c in offsets]
    ys = []
    cache: dict = {}
    for t in ts:
        if t not in cache:
            cache[t] = dense.float_nodes(t, np_dt)
        ys.append(cache[t])
    # F_k = f_p(y_k): the float loss at the rounded nodes, in batches of bounded size
    width = max(1, sum(int(np.asarray(point[n]).size) for n in dense.e))
    per = max(1, _FLOAT_BATCH // width)
    parts = []
    for s in range(0, len(ys), per):
        chunk = ys[s:s + per]
        leaves = {}
        for n in model.leaves:
            if n in dense.e:
                leaves[n] = np.stack([y[n] for y in chunk]).astype(np_dt)
            else:
                leaves[n] = np.asarray(point[n])[None, ...]
        if loss_values is not None:
            calls = [{n: np.array(leaves[n][b if leaves[n].shape[0] > 1 else 0]) for n in model.leaves}
                     for b in range(len(chunk))]
            parts.append(np.asarray(loss_values(calls), dtype=np_dt).reshape(-1))
        else:
            parts.append(np.asarray(model.float_eval([model.loss], leaves, np_dt, batched=True)[0]).reshape(-1))
    F = np.concatenate(parts)
    uniq_t = list(dict.fromkeys(ts))
    # f(z) - f(x), z = x + c h e: the series itself where it has ended (a polynomial along the line),
    # else from change pairs
    dz = dict(zip(uniq_t, dense.polynomial_changes(uniq_t) or dense.changes(uniq_t)))
    dyz = dense.changes(ts, ys)  # f(y) - f(z), y = fl(z)
    return _DenseParts(model, point, dense, hp, offsets, weights, [dz[t] for t in ts], dyz, F.reshape(K, S), prec,
                       dtype, ys, exact_gstar, crossing), F


class _DenseParts:
    """Rows' parts along a dense direction from double-double balls of f (and the line's power
    series for T at small steps), each part used when its ball resolves it
    (:func:`verigrad.studies.dense.resolved`); rows left unresolved are evaluated exactly in Arb
    when that is affordable, else reported as not finite (``notes`` says so)."""

    def __init__(self, model, point, dense, hp, offsets, weights, dz, dyz, F, prec, dtype, ys, exact_gstar, crossing):
        from verigrad.engine import arb as ab
        from verigrad.studies.dense import moments, resolved, series_truncation

        self.notes: list[str] = []
        K, S = len(hp), len(offsets)
        mom = moments(offsets, weights, dense.length)
        f0 = _arb_ball(dense.f0)
        g = dense.gstar
        den = math.lcm(*(w.denominator for w in weights))
        self.rows: list = [None] * K
        self.missing = [any(v is None for v in dz[r * S:(r + 1) * S] + dyz[r * S:(r + 1) * S]) for r in range(K)]
        series_ok = True
        pending = []
        with ab.arb_precision(256):
            for r in range(K):
                if self.missing[r] or not hp[r] > 0:
                    continue
                h = float(hp[r])
                scale = ab.arb(h) * den
                z_r = dz[r * S:(r + 1) * S]
                yz_r = dyz[r * S:(r + 1) * S]
                de = sum(ab.arb(int(w * den)) * v for w, v in zip(weights, z_r)) / scale
                S_ = sum(ab.arb(int(w * den)) * v for w, v in zip(weights, yz_r)) / scale
                dn = de + S_
                T_dir = de - g
                ser = series_truncation(dense, h, mom)
                pending.append((r, h, T_dir, S_, dn, ser))
            # the series is trusted only if it agrees with the direct value at the largest step where
            # both are resolved (and no node crosses a kink, where the loss is not its series)
            for r, h, T_dir, S_, dn, ser in sorted(pending, key=lambda p: -p[1]):
                if ser is None or crossing[r]:
                    continue
                Ts, err_s = ser
                t_dir, e_dir = float(T_dir.mid()), float(T_dir.rad())
                if resolved(t_dir, e_dir, abs(t_dir)) and resolved(float(Ts.mid()), err_s, abs(t_dir)):
                    series_ok = abs(float((Ts - T_dir).mid())) <= 2 * (err_s + e_dir) + float((Ts - T_dir).rad())
                    break
            unresolved = []
            for r, h, T_dir, S_, dn, ser in pending:
                if crossing[r]:
                    continue  # excluded from the study (its row is not finite)
                d_float = self._d_float(F[r], weights, h, dtype)
                E = ab.arb(d_float) - g
                t_dir, e_dir = float(T_dir.mid()), float(T_dir.rad())
                row_scale = max(abs(float(E.mid())), abs(t_dir), abs(float(S_.mid())))
                T, e_T = T_dir, e_dir
                if not resolved(t_dir, e_dir, row_scale) and series_ok and ser is not None:
                    T, e_T = ser
                R = E - T - S_
                e_R = e_T + float(S_.rad()) + float(E.rad())
                vals = [(float(E.mid()), float(E.rad())), (float(T.mid()), e_T), (float(S_.mid()), float(S_.rad())),
                        (float(R.mid()), e_R)]
                if all(resolved(v, e, row_scale) for v, e in vals):
                    fy = [f0 + dz[r * S + k] + dyz[r * S + k] for k in range(S)]
                    nz = [abs(mpmath.mpf(float(F[r, k])) - to_mpf_ball(fy[k])) for k in range(S)]
                    with mpmath.workprec(prec):
                        noise = float(mpmath.sqrt(sum(v * v for v in nz) / len(nz)))
                    self.rows[r] = (tuple(0.0 if abs(v) <= e else v for v, e in vals), noise)
                else:
                    unresolved.append(r)
        if unresolved:
            self._exact_rows(model, point, dense, hp, offsets, weights, F, prec, dtype, unresolved, ys, exact_gstar)

    @staticmethod
    def _d_float(Fr, weights, h, dtype):
        np_dt = dtype.numpy
        with np.errstate(all="ignore"):
            acc = np_dt.type(0)
            for k, w in enumerate(weights):
                acc = acc + np_dt.type(float(w)) * Fr[k]
            return float(acc / np_dt.type(h))

    def _exact_rows(self, model, point, dense, hp, offsets, weights, F, prec, dtype, rows, ys, exact_gstar):
        """Rows the double-double balls do not resolve: whole exact evaluations in Arb (and g* to
        the working precision, ``exact_gstar()``) when the work is affordable, else left out with
        a note."""

        S = len(offsets)
        work = 2 * len(rows) * S * _arb_cost(model)
        if work > _DENSE_ARB_WORK:
            h_max = max(float(hp[r]) for r in rows)
            self.notes.append(
                f"{len(rows)} of {len(hp)} steps (up to h = {h_max:.1e}) need more than double-double precision "
                f"for their exact parts, which along a dense direction costs a whole Arb evaluation of the loss "
                f"per node ({work:,} ball operations here): they are left out; a coordinate direction "
                f"(--variable/--index) shows them")
            return
        point_np = {n: np.asarray(v) for n, v in point.items()}
        entries = [(n, i) for n, e in dense.e.items() for i in np.flatnonzero(e.reshape(-1))]
        ex, fl = [], []
        for r in rows:
            h = Fraction(float(hp[r]))
            for k, c in enumerate(offsets):
                ex.append({(n, int(i)): Fraction(float(point_np[n].reshape(-1)[i]))
                           + c * h * Fraction(float(dense.e[n].reshape(-1)[i])) for n, i in entries})
                fl.append({(n, int(i)): float(ys[r * S + k][n].reshape(-1)[i]) for n, i in entries})
        vals = _arb_losses(model, point, ex, fl, prec)
        if vals is None:
            vals = _mp_losses(model, point, ex, fl, prec, False)
        sub = _Absolute(*vals, prec, False)
        gstar = exact_gstar()
        for j, r in enumerate(rows):
            if not sub.in_domain(j, S):
                self.missing[r] = True
                continue
            d_float = self._d_float(F[r], weights, float(hp[r]), dtype)
            self.rows[r] = sub.parts(j, S, float(hp[r]), weights, F[r], d_float, gstar, None)

    def in_domain(self, r: int, S: int) -> bool:
        return not self.missing[r]

    def available(self, r: int) -> bool:
        return self.rows[r] is not None

    def parts(self, r, S, h, weights, F, d_float, gstar, g_ball):
        return self.rows[r]


def _arb_cost(model) -> int:
    """Ball operations of one whole Arb evaluation of the loss (entries, and m k p per matrix product)."""
    from verigrad.expr.graph import Op, topological

    total = 0
    for n in topological([model.loss]):
        total += n.size
        if n.op is Op.MATMUL:
            a = n.args[0]
            total += n.size * (a.shape[-1] if a.shape else 1)
    return total

#: whole Arb evaluations (rows x nodes x graph entries) the unresolved rows of a dense sweep may cost
_DENSE_ARB_WORK = 4_000_000


def _arb_ball(parts):
    from verigrad.engine import arb as ab

    hi, lo, rad = parts
    with ab.arb_precision(256):
        v = ab.arb(hi) + ab.arb(lo)
        return v + ab.arb(0, rad) if rad else v


def to_mpf_ball(v):
    from verigrad.engine.arb import to_mpf

    return to_mpf(v)
