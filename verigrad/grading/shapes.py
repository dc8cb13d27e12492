"""Bug shapes: recognising how a failing variable is wrong, and saying where.

``_diagnose`` turns the wrong entries of one variable into a
:class:`~verigrad.grading.records.Diagnosis`: zero, swapped with another variable,
transposed, sign flipped, scaled by a recognisable constant (2, 1/2, -1, m, 1/m), missing one
term's gradient or with that term's sign flipped (given the terms' gradients), reversed along
some axes, one value broadcast to every entry, constant along some axes (the truth reduced over
the wrong axis, or one slice broadcast where a sum was meant), offset by a constant, wrong in a sub-block (rows,
columns, a contiguous region), or scattered.  The helpers spell indices,
ranges (``"0:4"``, ``":"``, ``"{1, 3, 5:8}"``) and factors for the breadcrumbs.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from typing import Mapping, Sequence

import numpy as np

from verigrad.grading.records import BugShape, Diagnosis

__all__: list[str] = []  # private to verigrad.grading (the records are in records.py)

# ---------------------------------------------------------------------------
# formatting helpers
# ---------------------------------------------------------------------------


def _idx_str(index: tuple[int, ...]) -> str:
    return "" if not index else "[" + ", ".join(str(i) for i in index) + "]"


def _ranges(indices: Sequence[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for i in indices:
        if out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


def _axis_spec(indices: Sequence[int], n: int) -> str:
    if len(indices) == n and n > 1:
        return ":"
    parts = [str(a) if b == a + 1 else f"{a}:{b}" for a, b in _ranges(indices)]
    return parts[0] if len(parts) == 1 else "{" + ", ".join(parts) + "}"


def _fraction_text(fr: Fraction) -> str:
    return str(fr.numerator) if fr.denominator == 1 else f"{fr.numerator}/{fr.denominator}"


def _num(x: float) -> str:
    return f"{x:.4g}"


# ---------------------------------------------------------------------------
# diagnosis
# ---------------------------------------------------------------------------


def _recognisable(fr: Fraction) -> bool:
    p, q = abs(fr.numerator), fr.denominator
    return q == 1 or p == 1 or (p <= 16 and q <= 16)


def _factor_candidates(c: float) -> list[Fraction]:
    """Recognisable fractions near ``c``: integers, 1/n, p/q with p, q <= 16."""
    if not math.isfinite(c):
        return []
    cands = {Fraction(0)}
    if abs(c) >= 0.5:
        for n in (math.floor(c), math.ceil(c)):
            if abs(n) < 2**62:
                cands.add(Fraction(n))
    r = 1 / c if c != 0 and abs(c) <= 2 else math.inf
    if math.isfinite(r):  # (1 / c overflows for a subnormal c)
        for n in (math.floor(r), math.ceil(r)):
            if n != 0 and abs(n) < 2**62:
                cands.add(Fraction(1, n))
    for q in range(1, 17):
        p = round(c * q)
        if abs(p) <= 16:
            cands.add(Fraction(p, q))
    return sorted((f for f in cands if _recognisable(f)),
                  key=lambda f: (abs(float(f) - c), f.denominator))


def _fits(v: np.ndarray, g: np.ndarray, c: float, tau: float) -> bool:
    return bool(np.all(np.abs(v - c * g) <= max(1.0, abs(c)) * tau))


def _fit_factor(v: np.ndarray, g: np.ndarray, tau: float,
                *, require_recognised: bool) -> tuple[float, Fraction | None] | None:
    """Constant c with |v - c g| <= max(1, |c|) tau everywhere, or None.

    The least-squares ``c = v.g / g.g`` is rounded to the closest recognisable
    fraction that still fits; if none fits, ``c`` itself is returned (unless
    ``require_recognised``) when it fits.
    """
    # scaled by max|g| first: the squares of gradients near 1e200 must not overflow the fit
    s = float(np.max(np.abs(g))) if g.size else 0.0
    if s == 0.0 or not math.isfinite(s):
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        gs = g / s
        gg = float(np.dot(gs, gs))
        c = float(np.dot(v / s, gs)) / gg
    if not math.isfinite(c):
        return None
    for fr in _factor_candidates(c):
        if _fits(v, g, float(fr), tau):
            return float(fr), fr
    if not require_recognised and _fits(v, g, c, tau):
        return c, None
    return None


def _largest(g: np.ndarray, mask: np.ndarray | None = None) -> int:
    a = np.abs(g) if mask is None else np.where(mask, np.abs(g), -1.0)
    return int(np.argmax(a))


def _diagnose(*, name: str, shape: tuple[int, ...], g: np.ndarray, v: np.ndarray,
              wrong: np.ndarray, finite: np.ndarray, tau: float,
              others: Mapping[str, tuple[np.ndarray, float]], dtype: str,
              case: str, terms: Sequence[tuple[str, np.ndarray]] = ()) -> Diagnosis:
    """Recognise the bug shape of one failing variable (flat float64 arrays).

    ``terms``: ``(text, d_j)`` per term of the loss, ``d_j`` (flat float64) the gradient of that
    signed term with respect to this variable; tested for a missing term (``v = g - d_j``) and
    a term whose sign is flipped (``v = g - 2 d_j``).
    """

    def crumb(loc: str, text: str) -> str:
        return f"{case} › {loc} › {dtype}: {text}"

    def at(i: int) -> str:
        return f"truth {_num(g[i])}, got {_num(v[i])}"

    def at_precise(i: int) -> str:
        # scattered errors can be tiny relative ones: show enough digits to see them
        return f"truth {float(g[i]):.10g}, got {float(v[i]):.10g}"

    def make(shape_: BugShape, text: str, *, factor: float | None = None,
             ftext: str | None = None, loc: str = name, rows: str | None = None,
             cols: str | None = None, region: str | None = None,
             other: str | None = None, term: str | None = None) -> Diagnosis:
        return Diagnosis(name, shape_, factor, ftext, rows, cols, region, other,
                         crumb(loc, text), term)

    if not finite.all():
        bad = np.flatnonzero(~finite)
        listed = ", ".join(f"{name}{_idx_str(_unravel(int(i), shape))}={v[i]}"
                           for i in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        return make(BugShape.UNKNOWN,
                    f"non-finite values in {len(bad)} of {v.size} entries: {listed}{more}")

    def worst() -> int:
        return _largest(np.abs(v - g), wrong) if wrong.any() else _largest(np.abs(v - g))

    n_nonzero = int(np.count_nonzero(g))
    imax = _largest(g)
    # MISSING_TERM / TERM_SIGN: the truth without one term's gradient, or with its sign flipped.
    # Only a term that is part, not all, of this variable's gradient (else ZERO / SIGN_FLIP say it)
    for k, shape_, verb in ((1, BugShape.MISSING_TERM, "missing the gradient of"),
                            (2, BugShape.TERM_SIGN, "the gradient of")):
        for text, d in terms:
            if d.shape != g.shape or not np.all(np.isfinite(d)):
                continue
            if not np.any(np.abs(d) > tau) or not np.any(np.abs(g - d) > tau):
                continue
            if np.all(np.abs(v - (g - k * d)) <= tau):
                iw = worst()
                what = (f"missing the gradient of {text}" if k == 1
                        else f"the gradient of {text} has its sign flipped")
                return make(shape_, f"{what} ({name}{_idx_str(_unravel(iw, shape))}: {at(iw)}, "
                                    f"that term's gradient {_num(d[iw])})", term=text)
    # ZERO (and not merely within a tolerance as large as the gradient itself, as in bfloat16, where
    # -g is within tau of 0 too: the shapes below name it)
    if np.all(np.abs(v) <= tau) and n_nonzero and np.max(np.abs(v)) <= 0.5 * np.max(np.abs(g)):
        return make(BugShape.ZERO,
                    f"all zero (largest truth {name}{_idx_str(_unravel(imax, shape))} = "
                    f"{_num(g[imax])})", factor=0.0, ftext="0")
    # SWAPPED
    for oname, (og, otau) in others.items():
        if og.shape == g.shape and np.count_nonzero(og) and \
                np.all(np.abs(v - og) <= max(tau, otau)):
            iw = worst()
            return make(BugShape.SWAPPED,
                        f"swapped with {oname} (got the gradient of {oname}; "
                        f"{name}{_idx_str(_unravel(iw, shape))}: {at(iw)})", other=oname)
    # TRANSPOSED
    if len(shape) == 2 and n_nonzero:
        gt = g.reshape(shape).T
        iw = worst()
        where_w = f"{name}{_idx_str(_unravel(iw, shape))}: {at(iw)}"
        if shape[0] == shape[1]:
            if not np.array_equal(gt, g.reshape(shape)) and \
                    np.all(np.abs(v - gt.reshape(-1)) <= tau):
                i, j = _unravel(iw, shape)
                return make(BugShape.TRANSPOSED,
                            f"transposed ({where_w} = truth of {name}[{j}, {i}])")
        elif np.all(np.abs(v - gt.reshape(-1)) <= tau):
            return make(BugShape.TRANSPOSED,
                        f"transposed and reshaped to {shape} ({where_w})")
    # SIGN_FLIP / SCALED
    fit = _fit_factor(v, g, tau, require_recognised=n_nonzero < 3)
    if fit is not None and fit[0] != 1.0:
        c, fr = fit
        if fr == -1:
            return make(BugShape.SIGN_FLIP, f"sign flipped ({at(imax)})",
                        factor=-1.0, ftext="-1")
        if fr is not None:
            text = _fraction_text(fr)
            shown = text if fr.denominator == 1 else f"{text} = {_num(c)}"
            return make(BugShape.SCALED, f"scaled by {shown} ({at(imax)})",
                        factor=c, ftext=text)
        if c != 0.0:
            return make(BugShape.SCALED,
                        f"scaled by {_num(c)} (least squares; not a simple fraction; "
                        f"{at(imax)})", factor=c)
    # REVERSED: the truth flipped along some axes (a reversed convolution kernel, a reversed block)
    if len(shape) >= 1 and n_nonzero and v.size > 1:
        gs = g.reshape(shape)
        for r in range(1, len(shape) + 1):
            for axes in itertools.combinations(range(len(shape)), r):
                if any(shape[a] < 2 for a in axes):
                    continue
                flipped = np.flip(gs, axis=axes).reshape(-1)
                if np.array_equal(flipped, g) or not np.all(np.abs(v - flipped) <= tau):
                    continue
                spec = ", ".join("::-1" if a in axes else ":" for a in range(len(shape)))
                iw = worst()
                return make(BugShape.REVERSED,
                            f"reversed along axis {', '.join(str(a) for a in axes)}: got {name}[{spec}] "
                            f"({name}{_idx_str(_unravel(iw, shape))}: {at(iw)})", region=f"{name}[{spec}]")
    # BROADCAST: one value everywhere where the truth varies
    if v.size > 1 and n_nonzero and np.ptp(g) > 2 * tau and np.ptp(v) <= tau:
        c = float(v[0])
        total = float(np.sum(g))
        how = (" = the sum of every true entry: a reduction over every axis broadcast back"
               if abs(c - total) <= tau else
               " = the mean of the true entries" if abs(c - total / g.size) <= tau else "")
        return make(BugShape.BROADCAST, f"the same value {_num(c)} in every entry{how} (truth from "
                                        f"{_num(float(np.min(g)))} to {_num(float(np.max(g)))})",
                    factor=c, ftext=_num(c))
    # WRONG_AXIS: constant along some (not all) axes where the truth varies
    axis_diag = _axis_broadcast(name, shape, g, v, tau)
    if axis_diag is not None:
        region, text = axis_diag
        iw = worst()
        return make(BugShape.WRONG_AXIS, f"{text} ({name}{_idx_str(_unravel(iw, shape))}: {at(iw)})", region=region)
    # OFFSET: the truth plus a constant
    if v.size > 1 and n_nonzero >= 2 and np.ptp(g) > 2 * tau:
        off = v - g
        c = float(np.median(off))
        if abs(c) > tau and np.all(np.abs(off - c) <= tau):
            return make(BugShape.OFFSET, f"offset by {_num(c)} in every entry ({at(imax)})", factor=c,
                        ftext=_num(c))
    # BLOCK
    if len(shape) >= 1 and wrong.any():
        w = wrong.reshape(shape)
        axes = [sorted(set(np.flatnonzero(w.any(axis=tuple(j for j in range(len(shape))
                                                            if j != a))).tolist()))
                for a in range(len(shape))]
        size = math.prod(len(ix) for ix in axes)
        proper = any(len(ix) < n for ix, n in zip(axes, shape))
        fill = int(wrong.sum()) / size
        contiguous = all(ix[-1] - ix[0] + 1 == len(ix) for ix in axes)
        if proper and (fill == 1.0 or (contiguous and fill >= 0.5)):
            specs = [_axis_spec(ix, n) for ix, n in zip(axes, shape)]
            region = f"{name}[{', '.join(specs)}]"
            rows = specs[0]
            cols = specs[1] if len(shape) >= 2 else None
            iw = _largest(g, wrong)
            bfit = _fit_factor(v[wrong], g[wrong], tau, require_recognised=True)
            if bfit is not None and bfit[0] != 1.0:
                c, fr = bfit
                text = _fraction_text(fr)  # type: ignore[arg-type]
                if c == 0.0:
                    what = "zero"
                elif c == -1.0:
                    what = "sign flipped"
                else:
                    what = f"scaled by {text if fr.denominator == 1 else f'{text} = {_num(c)}'}"
                return make(BugShape.BLOCK, f"{what} ({at(iw)})", factor=c, ftext=text,
                            loc=region, rows=rows, cols=cols, region=region)
            n_w = int(wrong.sum())
            return make(BugShape.BLOCK,
                        f"{n_w} wrong entr{'y' if n_w == 1 else 'ies'}, all in this block "
                        f"({at(iw)})", loc=region, rows=rows, cols=cols, region=region)
    iw = worst()
    n_w = int(wrong.sum())
    return make(BugShape.SCATTERED,
                f"{n_w} of {v.size} entr{'y' if v.size == 1 else 'ies'} wrong, no recognised pattern (worst "
                f"{name}{_idx_str(_unravel(iw, shape))}: {at_precise(iw)})")


def _axis_broadcast(name: str, shape: tuple[int, ...], g: np.ndarray, v: np.ndarray,
                    tau: float) -> tuple[str, str] | None:
    """(region, text) when ``v`` is constant along a proper subset of the axes along which ``g`` varies.

    Explained, in this order, as the truth summed along those axes and broadcast back (a
    reduction over the wrong axis), as their mean, or (one axis) as one slice of the truth
    broadcast along it (a broadcast where a sum was meant); otherwise "constant along".
    """
    nd = len(shape)
    if nd < 2 or v.size < 2:
        return None
    gs, vs = g.reshape(shape), v.reshape(shape)

    def flat_along(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
        return x[tuple(slice(0, 1) if a in axes else slice(None) for a in range(nd))]

    # the axes along which v is constant (then it is constant along all of them together)
    axes = tuple(a for a in range(nd) if shape[a] >= 2 and np.all(np.abs(vs - flat_along(vs, (a,))) <= tau))
    if not axes or len(axes) == sum(1 for n_a in shape if n_a >= 2):
        return None  # varies everywhere, or constant everywhere (BROADCAST)
    if np.all(np.ptp(gs, axis=axes) <= 2 * tau):
        return None  # the truth is constant along them too: nothing to say
    first = flat_along(vs, axes)
    r = len(axes)
    ax = ", ".join(str(a) for a in axes)
    word = "axis" if r == 1 else "axes"
    total = np.sum(gs, axis=axes, keepdims=True)
    if np.all(np.abs(first - total) <= tau):
        return (f"sum over {word} {ax}, broadcast back",
                f"the truth summed over {word} {ax} and broadcast back along {'it' if r == 1 else 'them'}: "
                "a reduction over the wrong axis")
    if np.all(np.abs(first - total / math.prod(shape[a] for a in axes)) <= tau):
        return (f"mean over {word} {ax}, broadcast back",
                f"the truth averaged over {word} {ax} and broadcast back: a reduction over the wrong axis")
    if r == 1:
        (a,) = axes
        for k in range(shape[a]):
            if np.all(np.abs(first - np.take(gs, [k], axis=a)) <= tau):
                spec = ", ".join(str(k) if j == a else ":" for j in range(nd))
                return (f"{name}[{spec}] broadcast along axis {a}",
                        f"every slice along axis {a} is the truth's {name}[{spec}]: one slice broadcast "
                        "where a sum was meant")
    return f"constant along {word} {ax}", f"constant along {word} {ax}, where the truth varies"


def _unravel(i: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(j) for j in np.unravel_index(i, shape)) if shape else ()
