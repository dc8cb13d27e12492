"""The exact values of a sweep along one coordinate, from the line's cone.

A sweep along the coordinate e_i needs, exactly: the partial derivative g*_i, the changes of
the loss f(x_p + t e_i) - f(x_p) at the stencil nodes (exact and rounded), the loss f(x_p)
itself (for the round-off noise |F_k - f(y_k)|) and a few directional derivatives for the
truncation model. :class:`CoordinateLine` gets all of them from
:class:`verigrad.engine.cone.Cone`: the changes cost O(steps x the cone of e_i) and the base
values only the entries the cone reads (a whole forward pass where the cone meets everything,
as behind a softmax; two terms of a Rosenbrock sum), as proved Arb balls.

The loss f(x_p) of a large graph is taken from the vectorised double-double engine when its
ball is tight enough (:func:`_fast_loss`); the noise needs it only to a fraction of an ulp.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Sequence

import mpmath
import numpy as np

from verigrad.engine import arb as ab
from verigrad.engine.cone import Cone, ConeUnsupported, exact_ball
from verigrad.errors import LimitError
from verigrad.expr.graph import Op, topological

__all__ = ["CoordinateLine", "LineUnavailable"]

#: Arb evaluation of the whole loss (for f(x_p)) when its non-float entries are at most this many
_ARB_LOSS_ENTRIES = 300_000
#: highest precision a cone is retried at before the caller falls back to whole evaluations
_MAX_PREC = 6000


class LineUnavailable(Exception):
    """The cone cannot give this line's values (the caller evaluates the whole graph)."""


def _loss_entries(model) -> int:
    """Entries of the loss graph that are not floats of the point (what f(x_p) costs in Arb)."""
    total = 0
    for n in topological([model.loss]):
        if n.op not in (Op.LEAF, Op.CONST, Op.TRANSPOSE, Op.GETITEM, Op.RESHAPE, Op.BROADCAST):
            total += n.size
    return total


def _fast_loss(model, point):
    """f(x_p) as an mpf from the double-double engine, with its radius; None when unavailable."""
    try:
        from verigrad.engine import fastball as fb

        out = model.fast_eval([model.loss], point)[0]
    except Exception:  # FastPathUnavailable, Undecided, DomainError: the caller uses Arb
        return None
    hi, lo, rad = (float(np.asarray(a).reshape(-1)[0]) for a in (out.hi, out.lo, out.rad))
    del fb
    if not (math.isfinite(hi) and math.isfinite(rad)):
        return None
    with mpmath.workprec(200):
        return mpmath.mpf(hi) + mpmath.mpf(lo), rad


class CoordinateLine:
    """Exact values along x_p + t e_i for a sweep (see module docstring).

    Parameters
    ----------
    model : Model
    point : mapping of str to ndarray
        x_p, in the dtype's values.
    variable : str
    index : int
        Flat index of the coordinate.
    prec : int
        Working precision of the changes and the partial derivative (bits).
    need_loss : bool
        Whether f(x_p) is wanted (the noise of real schemes).

    Raises
    ------
    LineUnavailable
        The cone cannot evaluate this graph, or the point is on the edge of a domain or a
        kink that balls cannot decide up to the highest precision.
    """

    def __init__(self, model, point, variable: str, index: int, *, prec: int, need_loss: bool = True):
        if not ab.available():
            raise LineUnavailable("python-flint is not installed")
        self.model, self.point, self.variable, self.index = model, point, variable, int(index)
        self.prec = int(prec)
        self.x0 = float(np.asarray(point[variable], dtype=np.float64).reshape(-1)[self.index])
        grad = model.gradient[variable]
        arb_loss = need_loss and _loss_entries(model) <= _ARB_LOSS_ENTRIES
        self.loss_value = None
        self.loss_radius = 0.0
        if need_loss and not arb_loss:
            fast = _fast_loss(model, point)
            if fast is None:
                arb_loss = True
            else:
                self.loss_value, self.loss_radius = fast
        base = {grad: [self.index]}
        if arb_loss:
            base[model.loss] = [0]
        self.cone = self._build(deltas=[model.loss], base=base)
        with ab.arb_precision(self.cone.prec + 64):
            self.gstar = self.cone.base(grad, [self.index])[0]
        if arb_loss:
            self.loss_value = ab.to_mpf(self.cone.base(model.loss, [0])[0])

    def _build(self, **kw) -> Cone:
        """A cone at the line's precision, raised while a ball cannot decide a kink or domain edge."""
        prec = self.prec
        while True:
            try:
                cone = Cone(self.model, self.point, self.variable, self.index, prec=prec, **kw)
            except ab.Undecided:
                if prec >= _MAX_PREC:
                    raise LineUnavailable("a kink or domain edge undecided at the highest precision") from None
                prec = min(_MAX_PREC, 2 * prec)
                continue
            except (ConeUnsupported, ArithmeticError, LimitError) as exc:  # DomainError is an ArithmeticError
                raise LineUnavailable(str(exc)) from None
            if kw.get("base"):
                g = [cone.base(n, pos)[0] for n, pos in kw["base"].items()]
                if not all(v.is_finite() for v in g):
                    raise LineUnavailable("a base value is not finite")
            return cone

    # -- the changes of the loss ---------------------------------------------------------------

    def deltas(self, values: Sequence[Fraction]) -> list:
        """f(x_p + (q - x_i) e_i) - f(x_p) as balls per value q of the entry (None: outside the domain)."""
        uniq = list(dict.fromkeys(values))
        with ab.arb_precision(self.cone.prec):
            new = [exact_ball(q) for q in uniq]
        try:
            run = self.cone.run(new)
        except ab.Undecided:
            return self._retry(values)
        except (ConeUnsupported, LimitError) as exc:
            raise LineUnavailable(str(exc)) from None
        found = dict(zip(uniq, run.scalar_delta(self.model.loss)))
        return [found[q] for q in values]

    def _retry(self, values):
        if self.cone.prec >= _MAX_PREC:
            raise LineUnavailable("a stencil node on a kink undecided at the highest precision")
        self.prec = min(_MAX_PREC, 2 * self.cone.prec)
        grad = self.model.gradient[self.variable]
        self.cone = self._build(deltas=[self.model.loss], base={grad: [self.index]})
        return self.deltas(values)

    def complex_deltas(self, steps: Sequence[Fraction]) -> list:
        """f(x_p + i s e_i) - f(x_p) (mpc) per imaginary step s, exactly to the working precision
        (None outside the domain); the base values are this line's."""
        cone = self._complex_cone()
        with mpmath.workprec(cone.prec):
            new = [mpmath.mpc(self.x0, mpmath.mpf(s.numerator) / s.denominator) for s in steps]
        try:
            run = cone.run(new)
        except (ConeUnsupported, LimitError, TypeError) as exc:
            raise LineUnavailable(str(exc)) from None
        return run.scalar_delta(self.model.loss)

    def _complex_cone(self) -> Cone:
        try:
            return Cone(self.model, self.point, self.variable, self.index, prec=self.cone.prec,
                        deltas=[self.model.loss], complex=True)
        except (ab.Undecided, ConeUnsupported, ArithmeticError, LimitError) as exc:
            raise LineUnavailable(str(exc)) from None

    # -- Taylor coefficients -------------------------------------------------------------------

    def derivatives(self, top: int, *, scale: float) -> list:
        """Exact directional derivatives d^j/dt^j f(x_p + t e_i) at 0, j = 0..top (mpf).

        From one power series of the loss along the line (the cone in Taylor mode), at a
        precision raised until every coefficient that is not negligible (1e-40 of ``scale``)
        has 100 bits; a kink on the line's cone at the point raises :class:`LineUnavailable`.
        """
        from verigrad.engine.lines import coefficients

        prec = 256
        while True:
            try:
                cone = Cone(self.model, self.point, self.variable, self.index, prec=prec,
                            deltas=[self.model.loss], series=top + 1)
                with ab.arb_precision(prec):
                    t = ab.flint.arb_series([exact_ball(Fraction(self.x0)), ab.arb(1)])
                run = cone.run([t])
            except ab.Undecided:
                if prec >= _MAX_PREC:
                    raise LineUnavailable("a kink undecided at the highest precision") from None
                prec *= 2
                continue
            except (ConeUnsupported, ArithmeticError, LimitError) as exc:
                raise LineUnavailable(str(exc)) from None
            if run.failed:
                raise LineUnavailable(next(iter(run.failed.values())))
            s = run.scalar_delta(self.model.loss)[0]
            with ab.arb_precision(prec):
                cs = coefficients(s, top + 1)
            floor = 1e-40 * (abs(scale) + 1e-300)
            if all(c.is_finite() and float(c.rad()) <= 2.0 ** -100 * max(abs(float(c.mid())), floor) for c in cs[1:]) \
                    or prec >= _MAX_PREC:
                out = []
                for j, c in enumerate(cs):
                    with mpmath.workprec(prec):
                        out.append(ab.to_mpf(c) * mpmath.factorial(j))
                return out
            prec *= 2
