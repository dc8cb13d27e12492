"""The exact values of a sweep along a dense direction, on the vectorised double-double engine.

A seeded random direction moves every entry: its cone is the whole graph, so every stencil
node costs a whole evaluation. :class:`DenseLine` makes that evaluation the fast engine's
(:mod:`verigrad.engine.fastball`: double-double balls, batches of nodes, no Python object per
entry) and takes from the loss's power series along the line (:mod:`verigrad.studies.series`)
what double-double differences cannot resolve:

* g* = a_1, the directional derivative, and the derivatives of the study's model (a_j j!);
* T at small steps, sum_(j>=2) a_j m_j h^(j-1) (m_j = sum_k w_k c_k^j), without the
  cancellation of f(x + c h e) - f(x) (the omitted terms are estimated from the last ones, and
  the series is dropped if it disagrees with the direct value where both are resolved);
* T at large steps, S and R from the changes f(x + c h e) - f(x) and f(y) - f(x + c h e) at
  the rounded nodes y = fl(x + c h e) (floats, rounded once, exactly), propagated as pairs
  (value, change) so that they are resolved relative to themselves, not to f
  (:mod:`verigrad.studies.delta`); for a polynomial along the line the first from the series.

A part is used when its ball resolves it to :data:`RESOLUTION` of itself (or of the row's
scale when it is negligible); rows left unresolved are evaluated in Arb by the caller when
that is affordable, else reported as not finite, with a note.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Sequence

import mpmath
import numpy as np

from verigrad.studies.series import SeriesUnsupported, line_series

__all__ = ["DenseLine", "DenseUnavailable", "RESOLUTION"]

#: a part is resolved when its error bound is below this fraction of it (12 significant digits)
RESOLUTION = 2.0 ** -40
#: ... or below this fraction of the row's largest part (a part that is negligible, or exactly 0)
NEGLIGIBLE = 2.0 ** -100
#: floats of leaves one batch of the fast engine holds (x 3 arrays x the live nodes)
_BATCH_FLOATS = 3_000_000


class DenseUnavailable(Exception):
    """The fast engine cannot evaluate this graph at this point (the caller evaluates in Arb)."""


def _fb():
    from verigrad.engine import fastball as fb

    return fb


def _arb_of_parts(hi: float, lo: float, rad: float):
    from verigrad.engine import arb as ab

    with ab.arb_precision(256):
        v = ab.arb(hi) + ab.arb(lo)
        return v + ab.arb(0, rad) if rad else v


class DenseLine:
    """Exact values along x_p + t e for a sweep along a dense direction (see module docstring).

    Parameters
    ----------
    model : Model
    point : mapping of str to ndarray
        x_p in the dtype's values.
    direction : Direction
    length : int
        Coefficients of the power series (the leading derivative of the scheme and a few more).

    Raises
    ------
    DenseUnavailable
        Something the fast engine cannot prove at the point (values out of range, a kink
        exactly at the point, a complex value).
    """

    def __init__(self, model, point, direction, *, length: int):
        from verigrad.engine.fastball import FastPathUnavailable
        from verigrad.engine.arb import Undecided

        self.model, self.point = model, point
        self.e = {n: np.asarray(v, dtype=np.float64) for n, v in direction.vector.items()}
        self.length = int(length)
        try:
            self.series, self.degree = line_series(model, point, self.e, self.length, with_degree=True)
            self.f0 = self._evaluate([{}])[0]
        except (SeriesUnsupported, FastPathUnavailable, Undecided, ArithmeticError, NotImplementedError) as exc:
            raise DenseUnavailable(str(exc)) from None
        self.gstar = _arb_of_parts(*self.series[1])

    def coefficient(self, j: int):
        """a_j as an Arb ball (0 beyond the computed length)."""
        from verigrad.engine import arb as ab

        return _arb_of_parts(*self.series[j]) if j < self.length else ab.arb(0)

    def derivative(self, j: int):
        """d^j/dt^j f(x_p + t e) at 0 as an mpf (the midpoint of a_j j!)."""
        hi, lo, _ = self.series[j] if j < self.length else (0.0, 0.0, 0.0)
        with mpmath.workprec(256):
            return (mpmath.mpf(hi) + mpmath.mpf(lo)) * mpmath.factorial(j)

    # -- values at points ----------------------------------------------------------------------

    def _leaves(self, rows: list[dict]):
        """Ball leaves of a batch: per row either {} (the point), {"t": Fraction} (x + t e exactly,
        enclosed in double-double) or {"y": {name: float array}} (a float point)."""
        fb = _fb()
        out = {}
        B = len(rows)
        for name in self.model.leaves:
            x = np.asarray(self.point[name], dtype=np.float64)
            e = self.e.get(name)
            if e is None or not any(rows) or not np.any(e):
                out[name] = fb.from_float(x[None, ...])
                continue
            hi = np.empty((B,) + x.shape)
            lo = np.zeros((B,) + x.shape)
            rad = np.zeros((B,) + x.shape)
            for b, row in enumerate(rows):
                if "y" in row:
                    hi[b] = row["y"][name]
                elif "t" in row:
                    z = self._node_ball(name, row["t"])
                    hi[b], lo[b], rad[b] = (np.broadcast_to(a, x.shape) for a in (z.hi, z.lo, z.rad))
                else:
                    hi[b] = x
            out[name] = fb.Ball(hi, lo, rad)
        return out

    def _node_ball(self, name: str, t: Fraction):
        """A ball containing x + t e entrywise (t exact: a double-double, e and x floats)."""
        fb = _fb()
        x = np.asarray(self.point[name], dtype=np.float64)
        tb = fb.from_fraction(Fraction(t))
        prod = fb.ball_mul(tb.map(lambda a: np.broadcast_to(np.asarray(a, dtype=np.float64), x.shape)),
                           fb.from_float(self.e[name]))
        return fb.ball_add(fb.from_float(x), prod)

    def float_nodes(self, t: Fraction, dtype) -> dict[str, np.ndarray]:
        """y = fl_p(x + t e) per variable (float64 arrays holding dtype values)."""
        from verigrad.fd.nodes import rounded_line_nodes

        return {name: rounded_line_nodes(np.asarray(self.point[name], dtype=np.float64), e, Fraction(t), dtype)
                for name, e in self.e.items()}

    def _evaluate(self, rows: list[dict]) -> list:
        """f at each row as (hi, lo, rad), in batches of bounded size."""
        fb = _fb()
        width = max(1, sum(int(np.asarray(self.point[n]).size) for n in self.e))
        per = max(1, _BATCH_FLOATS // width)
        out = []
        for s in range(0, len(rows), per):
            chunk = rows[s:s + per]
            f = fb.evaluate([self.model.loss], self._leaves(chunk))[0]
            hi, lo, rad = (np.broadcast_to(a, f.shape).reshape(-1) for a in (f.hi, f.lo, f.rad))
            if f.shape[0] == 1 and len(chunk) > 1:
                hi, lo, rad = (np.repeat(a, len(chunk)) for a in (hi, lo, rad))
            out.extend(zip(hi.tolist(), lo.tolist(), rad.tolist()))
        return out

    def polynomial_changes(self, ts: list) -> list | None:
        """f(x + t e) - f(x) = sum_(j>=1) a_j t^j per t when phi is a polynomial the series holds
        whole (:func:`verigrad.studies.series.line_series`, ``with_degree``); None otherwise."""
        from verigrad.engine import arb as ab

        if self.degree is None:
            return None
        coeffs = [self.coefficient(j) for j in range(1, self.length)]
        out = []
        with ab.arb_precision(256):
            for t in ts:
                tb = ab.arb(t.numerator) / t.denominator
                acc, p = ab.arb(0), ab.arb(1)
                for c in coeffs:
                    p = p * tb
                    acc = acc + c * p
                out.append(acc)
        return out

    def changes(self, ts: list, ys: list | None = None) -> list:
        """Per t: f(x + t e) - f(x) (``ys`` None), or f(y) - f(x + t e) for the float point ``y``
        of each t, as Arb balls, from :func:`verigrad.studies.delta.loss_changes` (resolved
        relative to the changes, not to f); None where the fast engine cannot prove a row."""
        width = max(1, 2 * sum(int(np.asarray(self.point[n]).size) for n in self.e))
        per = max(1, _BATCH_FLOATS // width)
        out: list = []
        for s in range(0, len(ts), per):
            idx = list(range(s, min(len(ts), s + per)))
            got = self._changes(ts, ys, idx)
            if got is None and len(idx) > 1:  # one row outside the domain (or undecided): row by row
                got = []
                for i in idx:
                    one = self._changes(ts, ys, [i])
                    got.extend([None] if one is None else one)
            out.extend([None] * len(idx) if got is None else got)
        return out

    def _changes(self, ts, ys, idx):
        """:meth:`changes` for the rows ``idx`` in one batch; None if the fast engine cannot prove it."""
        from verigrad.engine.arb import Undecided
        from verigrad.engine.fastball import FastPathUnavailable
        from verigrad.studies.delta import loss_changes

        fb = _fb()
        try:
            lb, ld = {}, {}
            for name in self.model.leaves:
                x = np.asarray(self.point[name], dtype=np.float64)
                if name not in self.e or not np.any(self.e[name]):
                    lb[name] = fb.from_float(x[None, ...])
                    continue
                zs = [self._node_ball(name, ts[i]) for i in idx]
                if ys is None:
                    lb[name] = fb.from_float(x[None, ...])
                    ld[name] = _stack([fb.ball_sub(z, fb.from_float(x)) for z in zs])
                else:
                    lb[name] = _stack(zs)
                    ld[name] = _stack([fb.ball_sub(fb.from_float(ys[i][name]), z) for i, z in zip(idx, zs)])
            hi, lo, rad = loss_changes(self.model, lb, ld)
        except (FastPathUnavailable, Undecided, ArithmeticError):
            return None
        if hi.size == 1 and len(idx) > 1:
            hi, lo, rad = (np.repeat(a, len(idx)) for a in (hi, lo, rad))
        return [_arb_of_parts(*v) for v in zip(hi.tolist(), lo.tolist(), rad.tolist())]


def _stack(balls):
    fb = _fb()
    shape = balls[0].shape
    return fb.Ball(*(np.stack([np.broadcast_to(getattr(b, k), shape) for b in balls]) for k in ("hi", "lo", "rad")))


def moments(offsets: Sequence[Fraction], weights: Sequence[Fraction], top: int) -> list[Fraction]:
    """m_j = sum_k w_k c_k^j for j = 0..top."""
    return [sum((w * c ** j for c, w in zip(offsets, weights)), Fraction(0)) for j in range(top + 1)]


def series_truncation(line: DenseLine, h: float, mom: list[Fraction]):
    """T(h) = sum_(j>=2) a_j m_j h^(j-1) from the series, with a bound on its error (the balls'
    radii and the omitted terms, estimated from the last two), or None when the last terms do
    not decrease fast enough for the estimate to mean anything."""
    from verigrad.engine import arb as ab

    L = line.length
    with ab.arb_precision(256):
        hb = ab.arb(h)
        terms = []  # the terms whose moment is not 0 (a symmetric stencil has no even ones)
        for j in range(2, L):
            m = mom[j]
            if m:
                terms.append(line.coefficient(j) * (ab.arb(m.numerator) / m.denominator) * hb ** (j - 1))
        if len(terms) < 2:
            return None
        T = sum(terms, ab.arb(0))
        mags = [abs(float(t.mid())) + float(t.rad()) for t in terms]
        last, prev = mags[-1], mags[-2] if len(mags) > 1 else 0.0
        if last == 0.0 and prev == 0.0:
            tail = 0.0  # the series has ended (a polynomial along the line)
        elif prev == 0.0 or last / prev > 0.5:
            return None
        else:
            ratio = last / prev
            tail = 2.0 * last * ratio / (1 - ratio)
        return T, float(T.rad()) + tail


def resolved(value: float, err: float, scale: float) -> bool:
    """Whether an error bound resolves a part (see :data:`RESOLUTION`)."""
    return math.isfinite(err) and err <= RESOLUTION * max(abs(value), NEGLIGIBLE * scale)
