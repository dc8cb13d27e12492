"""Grading second-order candidates: Hessians, Hessian-vector products, Hessian diagonals.

Every entry is graded by :func:`verigrad.grading.grade` with the gradient's tolerance rule
(the float baseline is the exact second-order graph evaluated naively in the dtype): a
Hessian is graded block by block, ``H[A,B] = d^2 L / dA dB`` of shape ``A.shape + B.shape``
(each block is one "variable" of the grade), an HVP and a diagonal variable by variable.

On top of the gradient's bug shapes (scaled, sign, zero, sub-block, missing term), a failing
Hessian is tested for the shapes second-order code gets wrong (:class:`SecondShape`):

* a missing symmetric half (only the upper or lower triangle filled in);
* a factor 2 (or 1/2) on the diagonal only (``d^2/dx^2 (x^2) = 2`` forgotten, or the
  off-diagonal ``2 x_i x_j`` convention applied to the diagonal);
* a transposed block (an off-diagonal block ``H[A,B]`` returned as ``H[B,A]`` laid out the
  wrong way, or a matrix variable flattened in column order).

An alternative explains the candidate when every entry of it is within that block's
tolerance ``tau_k`` of the candidate (the same absolute tolerance that decides the verdict).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from verigrad.grading.exact import DDTruth
from verigrad.grading.grader import grade
from verigrad.grading.records import Grade, Tolerances

__all__ = ["SecondShape", "SecondDiagnosis", "block_name", "hessian_blocks", "grade_hessian",
           "diagnose_hessian"]


class SecondShape(enum.Enum):
    MISSING_SYMMETRIC_HALF = "missing symmetric half"
    DIAGONAL_FACTOR = "factor on the diagonal"
    TRANSPOSED_BLOCK = "transposed block"


@dataclass(frozen=True)
class SecondDiagnosis:
    """A recognised second-order bug shape.

    Attributes
    ----------
    shape : SecondShape
    block : str
        ``H[A,B]`` or ``"H"`` for the whole matrix.
    message : str
        Breadcrumb, e.g. ``"logreg › newton-upper-only › H › float64: missing symmetric half
        (only the upper triangle is filled in)"``.
    """

    shape: SecondShape
    block: str
    message: str

    def to_json(self) -> dict:
        return {"shape": self.shape.value, "block": self.block, "message": self.message}


def block_name(a: str, b: str) -> str:
    """The name of the block ``d^2 L / dA dB`` in grades and reports."""
    return f"H[{a},{b}]"


def hessian_blocks(matrix: np.ndarray, offsets: Mapping[str, tuple[int, int]],
                   shapes: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Split an ``N x N`` matrix (flattened variables in declaration order) into named blocks."""
    out = {}
    for a, (ra, sa) in offsets.items():
        for b, (rb, sb) in offsets.items():
            out[block_name(a, b)] = matrix[ra:sa, rb:sb].reshape(tuple(shapes[a]) + tuple(shapes[b]))
    return out


def grade_hessian(*, truth, value: np.ndarray, baseline: np.ndarray, dtype, case: str, candidate: str,
                  tolerances: Tolerances = Tolerances(),
                  term_hessians: Mapping[str, np.ndarray] | None = None) -> tuple[Grade, list[SecondDiagnosis]]:
    """Grade a full Hessian returned by a candidate, block by block.

    Parameters
    ----------
    truth : verigrad.engine.hessian.HessianTruth
        The certified Hessian at the dtype's point.
    value : ndarray, shape (N, N)
        What the candidate returned (already checked for shape by the runner).
    baseline : ndarray of ``dtype``, shape (N, N)
        The float baseline (:func:`verigrad.engine.hessian.hessian_baseline`).
    dtype : numpy dtype
    term_hessians : mapping of str to ndarray (N, N), optional
        The Hessian of each signed term of the loss (float64), to recognise a missing term.

    Returns
    -------
    (Grade, list of SecondDiagnosis)
        The grade of every block, and the second-order bug shapes recognised when it fails.
    """
    offs, shapes = truth.offsets, truth.shapes
    tb = {k: DDTruth(h, l) for (k, h), l in zip(hessian_blocks(truth.hi, offs, shapes).items(),
                                                  hessian_blocks(truth.lo, offs, shapes).values())}
    vb = hessian_blocks(np.asarray(value), offs, shapes)
    bb = hessian_blocks(np.asarray(baseline), offs, shapes)
    terms = None
    if term_hessians:
        terms = {t: hessian_blocks(np.asarray(h, dtype=np.float64), offs, shapes) for t, h in term_hessians.items()}
    g = grade(truth=tb, value=vb, baseline=bb, dtype=dtype, case=case, candidate=candidate,
              tolerances=tolerances, term_gradients=terms)
    diags: list[SecondDiagnosis] = []
    if g.verdict.value == "fail":
        tau = {vg.variable: vg.tolerance for vg in g.variables}
        diags = diagnose_hessian(np.asarray(value, dtype=np.float64), truth.hi + truth.lo, offs, shapes, tau,
                                 label=case, dtype=np.dtype(dtype).name)
    return g, diags


def _within(value: np.ndarray, alt: np.ndarray, offs, shapes, tau: Mapping[str, float]) -> bool:
    vb = hessian_blocks(value, offs, shapes)
    ab = hessian_blocks(alt, offs, shapes)
    for k in vb:
        t = tau.get(k, np.nan)
        if not np.isfinite(t) or not np.all(np.abs(vb[k] - ab[k]) <= t):
            return False
    return True


def diagnose_hessian(value: np.ndarray, truth: np.ndarray, offsets, shapes, tau: Mapping[str, float], *,
                     label: str = "", dtype: str = "") -> list[SecondDiagnosis]:
    """Second-order bug shapes that explain ``value`` (float64 ``N x N``) against ``truth`` (float64).

    ``tau`` is the absolute tolerance per block (``H[A,B]``). Returns an empty list when no shape
    explains the candidate (the gradient's shapes per block still apply).
    """
    out: list[SecondDiagnosis] = []
    crumb = f"{label} › H › {dtype}"
    if not np.all(np.isfinite(value)):
        return out
    off = truth - np.diag(np.diag(truth))
    if np.any(off != 0):
        for part, alt in (("upper", np.triu(truth)), ("lower", np.tril(truth))):
            if _within(value, alt, offsets, shapes, tau):
                out.append(SecondDiagnosis(SecondShape.MISSING_SYMMETRIC_HALF, "H",
                                           f"{crumb}: missing symmetric half (only the {part} triangle is filled "
                                           f"in; the Hessian is symmetric, H_ji = H_ij)"))
                return out
    d = np.diag(truth)
    if np.any(d != 0):
        for factor, text in ((2.0, "2"), (0.5, "1/2"), (0.0, "0")):
            alt = truth + np.diag((factor - 1.0) * d)
            if _within(value, alt, offsets, shapes, tau):
                out.append(SecondDiagnosis(SecondShape.DIAGONAL_FACTOR, "H",
                                           f"{crumb}: the diagonal is scaled by {text} (off-diagonal entries are "
                                           f"right)"))
                return out
    names = list(offsets)
    for a in names:
        for b in names:
            (ra, sa), (rb, sb) = offsets[a], offsets[b]
            blk = truth[ra:sa, rb:sb]
            got = value[ra:sa, rb:sb]
            t = tau.get(block_name(a, b), np.nan)
            if not np.isfinite(t) or np.all(np.abs(got - blk) <= t):
                continue
            alts = []
            if blk.shape[0] == blk.shape[1] and a != b:
                alts.append((blk.T, f"its transpose (the block H[{b},{a}] laid out as H[{a},{b}])"))
            sha, shb = tuple(shapes[a]), tuple(shapes[b])
            full = blk.reshape(sha + shb)
            if len(sha) == 2:
                alts.append((np.transpose(full, (1, 0) + tuple(range(2, full.ndim))).reshape(blk.shape),
                             f"{a} flattened in column order"))
            if len(shb) == 2:
                k = len(sha)
                alts.append((np.transpose(full, tuple(range(k)) + (k + 1, k)).reshape(blk.shape),
                             f"{b} flattened in column order"))
            for alt, why in alts:
                if np.any(np.abs(alt - blk) > t) and np.all(np.abs(got - alt) <= t):
                    out.append(SecondDiagnosis(SecondShape.TRANSPOSED_BLOCK, block_name(a, b),
                                               f"{label} › {block_name(a, b)} › {dtype}: transposed block: equals "
                                               f"{why}"))
                    break
    return out
