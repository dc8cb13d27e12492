"""Finite-difference Hessians and HVPs as informational rows of ``verigrad run``.

For a case with second-order candidates, or with ``[check] second_order_schemes``, each scheme
is evaluated at its default step in every dtype and graded against the exact truth like the
finite-difference gradient rows (:mod:`verigrad.runner.fdcheck`): no expectation; the verdict says
whether the estimate reached what the scheme can reach,

    normwise relative error <= min(1000 * eps^(p/(p+q)), 1/2)

(``p`` the order, ``q = 2`` for differences of the loss, ``1`` for differences of the gradient:
the optimum of ``A h^p + B eps / h^q``, as for the gradient rows). The rows:

=====================  ====================================================================
``second3``            the diagonal, ``[1, -2, 1]`` differences of the loss
``mixed4``             the full Hessian: ``[1, -2, 1]`` on the diagonal, the mixed 4-point rule
                       off it (:func:`verigrad.fd.second.fd_hessian`)
``grad-central``       ``H v`` along the case's seeded HVP direction, central differences of the
                       exact gradient graph evaluated in the dtype
``richardson(<one>)``  one Richardson step on any of them
=====================  ====================================================================

Default (no key, second-order candidates present): ``mixed4`` for a ``hessian`` candidate,
``second3`` for ``hessian_diag``, ``grad-central`` for ``hvp``. Each row carries the exact
``T + S + R`` split (:mod:`verigrad.fd.second`) of its worst entries (at most
:data:`SPLIT_ENTRIES`), as norms in ``extra["split"]`` and in its message.
"""

from __future__ import annotations

import math

import numpy as np

from verigrad.engine.model import Model
from verigrad.errors import VerigradError
from verigrad.runner.records import Result
from verigrad.spec import CandidateKind, Dtype

__all__ = ["default_second_schemes", "grade_second_schemes", "second_fd_tolerance", "SPLIT_ENTRIES",
           "MAX_FD_HESSIAN_ENTRIES"]

#: the exact split is computed for at most this many entries of a row (its worst ones)
SPLIT_ENTRIES = 8
#: the full FD Hessian costs N(N+1)/2 stencils; beyond this many variable entries the row is left out
MAX_FD_HESSIAN_ENTRIES = 400
FD_FACTOR = 1000.0
FD_MAX_RELATIVE = 0.5


def default_second_schemes(case) -> tuple[str, ...]:
    """The schemes of ``[check] second_order_schemes``, or the defaults for the case's candidates."""
    given = getattr(case.check, "second_order_schemes", None)
    if given is not None:
        return tuple(given)
    kinds = {c.kind for c in case.candidates}
    out = []
    if CandidateKind.HESSIAN in kinds:
        out.append("mixed4")
    if CandidateKind.HESSIAN_DIAG in kinds:
        out.append("second3")
    if CandidateKind.HVP in kinds:
        out.append("grad-central")
    return tuple(out)


def second_fd_tolerance(scheme, dtype: Dtype) -> float:
    """``min(1000 eps^(p/(p+q)), 1/2)`` for a :class:`verigrad.fd.second.SecondScheme`."""
    from verigrad.fd.second import SecondKind

    q = 2 if scheme.kind is SecondKind.LOSS else 1
    p = scheme.order
    return min(FD_FACTOR * dtype.eps ** (p / (p + q)), FD_MAX_RELATIVE)


def _row(model: Model, name: str, point, dtype: Dtype, cache):
    """``(scheme, value by block, truth by block (DDTruth), baseline by block, split entries, splitter)``."""
    from verigrad.engine import hessian as eh
    from verigrad.fd import second as fs
    from verigrad.grading import DDTruth
    from verigrad.grading.second import hessian_blocks
    from verigrad.runner.second import hvp_vector
    from verigrad.studies.second import resolve_second_scheme

    shapes = {n: model.shape(n) for n in model.gradient}
    offs = eh.flat_offsets(model)
    n = sum(b - a for a, b in offs.values())
    base_name = name[len("richardson("):-1] if name.startswith("richardson(") else name
    rich = base_name != name
    scheme = resolve_second_scheme(name, diagonal=base_name != "mixed4")
    if base_name in ("grad-central", "gradient-central"):
        vector, _seed = hvp_vector(model, dtype)
        truth = cache.get(("hvp", dtype), lambda: eh.certify_hvp(model, point, vector, dtype))

        def gradient(p):
            vals = model.float_eval(list(model.gradient.values()), {k: p[k] for k in model.leaves}, dtype.numpy)
            return dict(zip(model.gradient, vals))

        with np.errstate(all="ignore"):
            value = fs.fd_hvp(gradient, point, vector, dtype, richardson=rich)
        tv = {k: DDTruth(truth.gradient_hi[k], truth.gradient_lo[k]) for k in shapes}
        base = eh.hvp_baseline(model, point, vector, dtype)

        def split(entries):
            sp = fs.hvp_split(model, gradient, point, vector, dtype, truth, richardson=rich)
            return [sp[k] for k in entries]

        flat_truth = np.concatenate([np.asarray(truth.gradient_hi[k], dtype=np.float64).reshape(-1) for k in shapes])
        flat_value = np.concatenate([np.asarray(value[k], dtype=np.float64).reshape(-1) for k in shapes])
        worst = np.argsort(-np.nan_to_num(np.abs(flat_value - flat_truth), nan=np.inf))[:SPLIT_ENTRIES]
        return scheme, value, tv, base, split, worst.tolist()
    if n > MAX_FD_HESSIAN_ENTRIES:
        raise VerigradError(f"the finite-difference Hessian rows need at most {MAX_FD_HESSIAN_ENTRIES} variable "
                            f"entries; this case has {n:,}")
    ht = cache.get(("hessian", dtype), lambda: eh.certify_hessian(model, point, dtype))
    if base_name in ("second3", "second-difference"):
        hi = np.diag(ht.hi)
        with np.errstate(all="ignore"):
            d = np.array([fs.fd_hessian_entry(model, point, dtype, i, i, richardson=rich) for i in range(n)],
                         dtype=dtype.numpy)
        value = {k: d[a:b].reshape(shapes[k]) for k, (a, b) in offs.items()}
        tv = {k: DDTruth(*ht.diagonal(k)) for k in shapes}
        bd = np.diag(cache.get(("hessian-base", dtype), lambda: eh.hessian_baseline(model, point, dtype)))
        base = {k: bd[a:b].reshape(shapes[k]) for k, (a, b) in offs.items()}
        worst = np.argsort(-np.nan_to_num(np.abs(d.astype(np.float64) - hi), nan=np.inf))[:SPLIT_ENTRIES]
        pairs = [(int(i), int(i)) for i in worst]
    else:
        with np.errstate(all="ignore"):
            mat = fs.fd_hessian(model, point, dtype, richardson=rich)
        value = hessian_blocks(mat, offs, shapes)
        tv = {k: DDTruth(h, lo) for (k, h), lo in zip(hessian_blocks(ht.hi, offs, shapes).items(),
                                                      hessian_blocks(ht.lo, offs, shapes).values())}
        base = hessian_blocks(cache.get(("hessian-base", dtype), lambda: eh.hessian_baseline(model, point, dtype)),
                              offs, shapes)
        err = np.triu(np.nan_to_num(np.abs(mat.astype(np.float64) - ht.hi), nan=np.inf))
        flat = np.argsort(-err, axis=None)[:SPLIT_ENTRIES]
        pairs = [(int(k // n), int(k % n)) for k in flat]

    def split(entries):
        return fs.hessian_entry_splits(model, point, dtype, ht, entries, richardson=rich)

    return scheme, value, tv, base, split, pairs


def grade_second_schemes(model: Model, point, dtype: Dtype, cache=None) -> list[Result]:
    """One informational Result per second-order scheme (:func:`default_second_schemes`) at ``dtype``.

    ``cache`` is the :class:`verigrad.runner.second.SecondCache` of the dtype (the truths the
    candidates certified are reused). Never raises for a problem of one row: it becomes an
    ``error`` row.
    """
    from verigrad.grading import grade
    from verigrad.runner.second import SecondCache

    cache = cache if cache is not None else SecondCache()
    case = model.case
    out = []
    for name in default_second_schemes(case):
        label = f"{name} (second order)"
        crumb = f"{case.name} › {label} › {dtype.value}"
        try:
            scheme, value, tv, base, split, worst = _row(model, name, point, dtype, cache)
        except VerigradError as exc:
            out.append(Result(case.name, label, "fd", dtype.value, None, "error", None, None, f"{crumb}: {exc}",
                              scheme=name, step=None, extra={"second_order_scheme": name}))
            continue
        tol = second_fd_tolerance(scheme, dtype)
        t64 = [np.asarray(t.hi, dtype=np.float64) + np.asarray(t.lo, dtype=np.float64) for t in tv.values()]
        norm = math.sqrt(sum(float(np.sum(a * a)) for a in t64))
        thr = tol * (norm if norm > 0 and math.isfinite(norm) else 1.0)
        g = grade(truth=tv, value=value, baseline=base, dtype=dtype.numpy, case=case.name, candidate=label,
                  entry_tolerance=thr, label=label)
        rel = g.errors.normwise_relative
        if rel is None or not math.isfinite(rel):
            verdict = "nonfinite"
            msg = f"{crumb}: non-finite estimate"
        else:
            verdict = "pass" if rel <= tol and not g.wrong else "fail"
            q = 1 if scheme.kind.value == "gradient" else 2
            msg = (f"{crumb}: normwise relative error {rel:.2e} {'<=' if verdict == 'pass' else '>'} {tol:.1e} "
                   f"(1000 x eps^({scheme.order}/{scheme.order + q}), what {scheme.name} can reach)")
        split_rec = None
        try:
            parts = split(worst)
            norms = {k: math.sqrt(sum(float(getattr(s, a)) ** 2 for s in parts))
                     for k, a in (("truncation", "truncation"), ("step", "step_error"), ("roundoff", "roundoff"))}
            top = max(norms, key=norms.get)
            w = max(parts, key=lambda s: abs(float(s.error)))
            split_rec = {**norms, "entries": len(parts), "h": w.h,
                         "worst": {"entry": list(w.entry), "error": float(w.error), "truncation": float(w.truncation),
                                   "step": float(w.step_error), "roundoff": float(w.roundoff)}}
            msg += (f"; over its {len(parts)} worst entr{'y' if len(parts) == 1 else 'ies'}: "
                    f"{top.replace('roundoff', 'round-off')} dominates (norms: T {norms['truncation']:.1e}, "
                    f"S {norms['step']:.1e}, R {norms['roundoff']:.1e}; worst E = T + S + R = "
                    f"{float(w.error):+.2e} = {float(w.truncation):+.2e} {float(w.step_error):+.2e} "
                    f"{float(w.roundoff):+.2e} at h = {w.h:.2e})")
        except (VerigradError, ValueError, ArithmeticError):
            split_rec = None
        from verigrad.fd.second import default_step
        from verigrad.runner.second import kink_note

        kinks, _on = kink_note(model, point)
        if kinks:  # stencils across a kink difference a piecewise loss: the row says so, it is not excluded
            kinks = [*kinks, "a stencil that crosses a kink estimates no second derivative: expect this row to be "
                             "far off where the point is within a step of a kink"]
        h0 = float(dtype.numpy.type(default_step(scheme, dtype)))
        msg += (f"; step h = {h0:.2e}" + (" max(1, |x_i|)" if scheme.kind.value == "loss" else "")
                + f" (u^{scheme.step_exponent}, u the unit round-off)")
        out.append(Result(case.name, label, "fd", dtype.value, None, verdict, None, g, msg, scheme=name,
                          step=h0, extra={"tolerance": tol, "source": "expression", "split": split_rec, "kinks": kinks,
                                            "second_order_scheme": scheme.name}))
    return out
