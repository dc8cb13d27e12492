"""Running second-order candidates (``kind = "hessian"``, ``"hvp"``, ``"hessian_diag"``).

Calling conventions (docs/second-order.md), numpy arrays of the dtype under test:

* ``hessian``: ``f(**symbols)`` returns the ``N x N`` Hessian of the variables flattened in
  declaration order (C order within each variable); with one variable, an array of shape
  ``shape + shape`` is accepted too.
* ``hvp``: ``f(vector=..., **symbols)`` with ``vector`` a dict ``{variable: array}`` (the
  direction ``v``, drawn from the case's seed and rounded to the dtype) returns ``H v`` like a
  gradient (a dict by variable, or a sequence in declaration order).
* ``hessian_diag``: ``f(**symbols)`` returns the diagonal ``d^2 L / dx_i^2`` like a gradient.

The truth is exact at the dtype's point (:mod:`verigrad.engine.hessian`); grading reuses
:func:`verigrad.grading.grade` entry by entry (:mod:`verigrad.grading.second`).
"""

from __future__ import annotations

import numpy as np

from verigrad.engine.model import Model
from verigrad.errors import VerigradError
from verigrad.runner.records import Result
from verigrad.spec import CandidateKind, CandidateSpec, Dtype, Expect

__all__ = ["grade_second_candidate", "hvp_vector", "VECTOR_KEYWORD", "kink_note", "SecondCache"]

#: the keyword an ``hvp`` candidate receives the direction under
VECTOR_KEYWORD = "vector"


def hvp_vector(model: Model, dtype: Dtype) -> tuple[dict[str, np.ndarray], list[int]]:
    """The seeded direction ``v`` of the case's HVP candidates, rounded to ``dtype``.

    Standard normal entries from ``numpy.random.default_rng([seed, 22])`` (the case's seed), the
    same for every candidate of the case, so that their grades compare. Returns ``(v, seed)``.
    """
    seed = [int(model.case.seed), 22]
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(model.shape(n)).astype(dtype.numpy) for n in model.gradient}, seed


def kink_note(model: Model, point) -> tuple[list[str], bool]:
    """What the grade says about kinks: notes, and whether the point lies on one."""
    from verigrad.kinks import SiteKind, SiteRule, at_kink, find_sites

    # piecewise-linear kinks only: a 2-norm or std (SiteRule.NORM) is curved away from its kink
    sites = [s for s in find_sites(model) if s.kind is SiteKind.KINK and s.rule is not SiteRule.NORM]
    if not sites:
        return [], False
    names = sorted({s.name for s in sites})
    notes = [f"second derivatives of {', '.join(names)} are zero away from their kinks (used here) and "
             f"undefined on them"]
    on = at_kink(model, point, sites=sites)
    if on:
        where = "; ".join(f"{k.site.text} at {len(k.entries)} entr{'y' if len(k.entries) == 1 else 'ies'}"
                          for k in on[:3])
        notes.append(f"the point lies on a kink ({where}): the Hessian is undefined there; graded against the "
                     f"convention value (the second derivative 0 on the kink)")
    return notes, bool(on)


class SecondCache:
    """Truths shared by the second-order candidates of one case and dtype (certified once)."""

    def __init__(self):
        self._store: dict = {}

    def get(self, key, make):
        if key not in self._store:
            self._store[key] = make()
        return self._store[key]


def grade_second_candidate(model: Model, cand: CandidateSpec, point: dict, dtype: Dtype, *, timeout: float,
                           digits: int, tolerances, cache: SecondCache | None = None, terms=()) -> Result:
    """Call one second-order candidate in isolation at the dtype's point and grade it; never raises
    for a problem of the candidate (an ``error`` verdict says what went wrong).

    ``terms``: ``(sign, node, text)`` per top-level term of a loss that is a sum (to recognise a
    missing term's Hessian); ``digits``: certified digits of the truth; ``tolerances``: the case's.
    """
    from verigrad.engine import hessian as eh
    from verigrad.grading import DDTruth, grade
    from verigrad.grading.second import grade_hessian
    from verigrad.runner.candidates import call_isolated, normalise_gradient

    cache = cache if cache is not None else SecondCache()
    case = model.case
    label = f"{case.name} › {cand.name} › {dtype.value}"
    kind = cand.kind
    kwargs = {k: np.array(v, copy=True) for k, v in point.items()}
    extra: dict = {"second_order": {"kind": kind.value}}
    so = extra["second_order"]
    vector = None
    if kind is CandidateKind.HVP:
        if VECTOR_KEYWORD in kwargs:
            return _result(cand, case, dtype, "error", f"{label}: the case has a symbol named "
                           f"{VECTOR_KEYWORD!r}, the keyword an hvp candidate receives the direction under", None,
                           extra=extra)
        vector, seed = hvp_vector(model, dtype)
        kwargs[VECTOR_KEYWORD] = {n: v.copy() for n, v in vector.items()}
        so.update(vector_seed=seed, vector_rng="numpy.random.default_rng(seed).standard_normal",
                  vector_norm=float(np.sqrt(sum(float(np.sum(np.asarray(v, dtype=np.float64) ** 2))
                                                for v in vector.values()))))
    call = call_isolated(cand.code, [kwargs], timeout=timeout)
    if not call.ok:
        return _result(cand, case, dtype, "error", call.error, None, call, extra)
    notes, on_kink = kink_note(model, point)
    if notes:
        so["kinks"] = notes
        so["at_kink"] = on_kink
    shapes = {n: model.shape(n) for n in model.gradient}
    terms = list(terms)
    try:
        if kind is CandidateKind.HVP:
            truth = cache.get(("hvp", dtype), lambda: eh.certify_hvp(model, point, vector, dtype, digits=digits))
            value, problems = normalise_gradient(call.values[0], shapes, label)
            if problems:
                return _result(cand, case, dtype, "error", _problems(problems, call.values[0], shapes, kind), None,
                               call, extra)
            base = eh.hvp_baseline(model, point, vector, dtype)
            so.update(backend=truth.backend, truth_seconds=truth.seconds)
            tv = {n: DDTruth(truth.gradient_hi[n], truth.gradient_lo[n]) for n in shapes}
            g = grade(truth=tv, value=value, baseline=base, dtype=dtype.numpy, case=case.name, candidate=cand.name,
                      tolerances=tolerances)
            if g.verdict.value == "fail" and terms:  # is one term's H v missing (or its sign flipped)?
                p64 = {k: np.asarray(x, dtype=np.float64) for k, x in point.items()}
                v64 = {k: np.asarray(x, dtype=np.float64) for k, x in vector.items()}
                term_vals = {t: {n: s * np.asarray(v, dtype=np.float64) for n, v in
                                 eh.hvp_baseline(model, p64, v64, Dtype.FLOAT64, term=node).items()}
                             for s, node, t in terms}
                g = grade(truth=tv, value=value, baseline=base, dtype=dtype.numpy, case=case.name,
                          candidate=cand.name, tolerances=tolerances, term_gradients=term_vals)
            diags = []
        elif kind is CandidateKind.HESSIAN_DIAG and _diagonal_only(model, cache, dtype):
            g, value = _grade_diagonal_only(model, cand, point, dtype, call, shapes, label, digits, tolerances,
                                            cache, terms, so)
            if g is None:
                return _result(cand, case, dtype, "error", value, None, call, extra)
            diags = []
        else:
            ht = cache.get(("hessian", dtype), lambda: eh.certify_hessian(model, point, dtype, digits=digits))
            so.update(backend=ht.backend, truth_seconds=ht.seconds, symmetric=ht.symmetric,
                      asymmetric_pairs=len(ht.asymmetric), exact_zeros=int(ht.exact_zero.sum()), n=ht.size)
            base = cache.get(("hessian-base", dtype), lambda: eh.hessian_baseline(model, point, dtype))
            p64 = {k: np.asarray(x, dtype=np.float64) for k, x in point.items()}

            def term_hessians():  # the Hessian of each signed term (float64), only for a failing candidate
                return cache.get(("terms", dtype), lambda: {
                    t: s * eh.hessian_baseline(model, p64, Dtype.FLOAT64, term=node) for s, node, t in terms})
            if kind is CandidateKind.HESSIAN_DIAG:
                value, problems = normalise_gradient(call.values[0], shapes, label)
                if problems:
                    return _result(cand, case, dtype, "error", _problems(problems, call.values[0], shapes, kind),
                                   None, call, extra)
                tv = {n: DDTruth(*ht.diagonal(n)) for n in shapes}
                bd = np.diag(base)
                bv = {n: bd[a:b].reshape(shapes[n]) for n, (a, b) in ht.offsets.items()}
                g = grade(truth=tv, value=value, baseline=bv, dtype=dtype.numpy, case=case.name,
                          candidate=cand.name, tolerances=tolerances)
                if g.verdict.value == "fail" and terms:
                    tg = {t: {n: np.diag(h)[a:b].reshape(shapes[n]) for n, (a, b) in ht.offsets.items()}
                          for t, h in term_hessians().items()}
                    g = grade(truth=tv, value=value, baseline=bv, dtype=dtype.numpy, case=case.name,
                              candidate=cand.name, tolerances=tolerances, term_gradients=tg)
                diags = []
            else:
                mat, problem = _hessian_matrix(call.values[0], ht.size, shapes, label)
                if problem:
                    return _result(cand, case, dtype, "error", problem, None, call, extra)
                value = {"H": mat}
                g, diags = grade_hessian(truth=ht, value=mat, baseline=base, dtype=dtype.numpy, case=case.name,
                                         candidate=cand.name, tolerances=tolerances)
                if g.verdict.value == "fail" and terms:
                    g, diags = grade_hessian(truth=ht, value=mat, baseline=base, dtype=dtype.numpy,
                                             case=case.name, candidate=cand.name, tolerances=tolerances,
                                             term_hessians=term_hessians())
    except VerigradError as exc:
        return _result(cand, case, dtype, "error", f"{label}: {exc}", None, call, extra)
    if diags:
        so["diagnosis"] = [d.to_json() for d in diags]
    g = _second_words(g)
    verdict = g.verdict.value.lower()
    if verdict in ("pass", "fail") and kind is not CandidateKind.HESSIAN_DIAG:
        try:
            classic = _classic_second(model, point, dtype, kind, value, vector, passed=verdict == "pass")
        except (ValueError, KeyError, TypeError, FloatingPointError):  # a note only: never blocks the grade
            classic = None
        if classic is not None:
            so["classic"] = classic
    msgs = [d.message for d in diags] + (g.messages() if hasattr(g, "messages") else [])
    first = msgs[0] if msgs else ""
    if notes and verdict != "pass":
        first = f"{first} ({notes[-1]})" if first else notes[-1]
    res = _result(cand, case, dtype, verdict, first, g, call, extra)
    return Result(**{**res.__dict__, "value": value})


#: what ``torch.autograd.gradgradcheck`` does by default: central differences of the (analytical) gradient
#: with ``eps = 1e-6``, compared with ``allclose(rtol=1e-3, atol=1e-5)``
CLASSIC_SECOND = {"eps": 1e-6, "rtol": 1e-3, "atol": 1e-5}
#: the classic second-order note differences the gradient 2N times; beyond this many entries it is left out
CLASSIC_SECOND_MAX_ENTRIES = 200


def _classic_second(model: Model, point, dtype: Dtype, kind: CandidateKind, value, vector, *, passed: bool):
    """What a gradgradcheck-style check would have said about this candidate (a note; never the verdict).

    The oracle is central differences, at ``eps = 1e-6``, of the exact gradient evaluated in the dtype
    (the best a gradient code can do), compared with the candidate by ``allclose(rtol=1e-3, atol=1e-5)``.
    Returns the note, or None for more than :data:`CLASSIC_SECOND_MAX_ENTRIES` variable entries.
    """
    from verigrad.engine.hessian import flat_offsets
    from verigrad.fd.second import fd_hvp

    offs = flat_offsets(model)
    n = sum(b - a for a, b in offs.values())
    if kind is CandidateKind.HESSIAN and n > CLASSIC_SECOND_MAX_ENTRIES:
        return None
    names = list(model.gradient)

    def grad(q):
        return dict(zip(names, model.float_eval([model.gradient[k] for k in names], q, dtype.numpy)))

    eps = CLASSIC_SECOND["eps"]
    with np.errstate(all="ignore"):
        if kind is CandidateKind.HVP:
            est = fd_hvp(grad, point, vector, dtype, step=eps)
            fd = np.concatenate([np.asarray(est[k], dtype=np.float64).reshape(-1) for k in names])
            got = np.concatenate([np.asarray(value[k], dtype=np.float64).reshape(-1) for k in names])
        else:
            cols = []
            for name, (a, _b) in offs.items():
                for k in range(int(np.prod(model.shape(name), dtype=np.int64))):
                    e = {m: np.zeros(model.shape(m), dtype=dtype.numpy) for m in names}
                    e[name].reshape(-1)[k] = 1
                    est = fd_hvp(grad, point, e, dtype, step=eps)
                    cols.append(np.concatenate([np.asarray(est[m], dtype=np.float64).reshape(-1) for m in names]))
            fd = np.stack(cols, axis=1)
            got = np.asarray(value["H"], dtype=np.float64)
        ok = bool(np.all(np.abs(got - fd) <= CLASSIC_SECOND["atol"] + CLASSIC_SECOND["rtol"] * np.abs(fd)))
    outcome = "agree" if ok == passed else ("false alarm" if passed else "missed bug")
    return {**CLASSIC_SECOND, "oracle": "central differences of the exact gradient in the dtype",
            "classic_pass": ok, "truth_pass": passed, "outcome": outcome}


def _words(text: str) -> str:
    return (text.replace("got the gradient of ", "got ").replace("that term's gradient", "that term's second derivative")
            .replace("the gradient of", "the second derivative of"))


def _second_words(g):
    """The grade's diagnoses speak of gradients (a missing term's gradient); here they are second derivatives."""
    import dataclasses

    def diag(d):
        return None if d is None else dataclasses.replace(d, message=_words(d.message))

    try:
        variables = tuple(dataclasses.replace(v, message=_words(v.message), diagnosis=diag(v.diagnosis))
                          for v in g.variables)
        return dataclasses.replace(g, variables=variables, diagnosis=tuple(diag(d) for d in g.diagnosis),
                                   reason=_words(g.reason))
    except (TypeError, AttributeError):  # not a dataclass grade: keep its words
        return g


def _problems(problems: list, value, shapes: dict, kind: CandidateKind) -> str:
    """The normaliser's problems, with the fix when one bare array came back for several variables."""
    text = "; ".join(problems)
    if isinstance(value, np.ndarray) and len(shapes) > 1:
        want = ", ".join(f"'{n}': array of shape {list(sh)}" for n, sh in shapes.items())
        text += (f"; a {kind.value} candidate returns one array per variable, like a gradient: {{{want}}} "
                 f"(got one array of shape {list(value.shape)})")
    return text


def _diagonal_only(model: Model, cache: SecondCache, dtype: Dtype) -> bool:
    """Whether a ``hessian_diag`` candidate is graded against the diagonal alone (too many entries for the
    full Hessian, and no full Hessian certified for this dtype already)."""
    from verigrad.engine.hessian import MAX_HESSIAN_ENTRIES, flat_offsets

    n = sum(b - a for a, b in flat_offsets(model).values())
    return n > MAX_HESSIAN_ENTRIES and ("hessian", dtype) not in cache._store


def _grade_diagonal_only(model, cand, point, dtype, call, shapes, label, digits, tolerances, cache, terms, so):
    """Grade a diagonal against :func:`~verigrad.engine.hessian.certify_hessian_diagonal` (O(N) memory);
    returns ``(grade, value)`` or ``(None, message)``."""
    from verigrad.engine import hessian as eh
    from verigrad.grading import DDTruth, grade
    from verigrad.runner.candidates import normalise_gradient

    case = model.case
    value, problems = normalise_gradient(call.values[0], shapes, label)
    if problems:
        return None, _problems(problems, call.values[0], shapes, CandidateKind.HESSIAN_DIAG)
    dt = cache.get(("diagonal", dtype), lambda: eh.certify_hessian_diagonal(model, point, dtype, digits=digits))
    so.update(backend=dt.backend, truth_seconds=dt.seconds, n=dt.size, exact_zeros=int(dt.exact_zero.sum()),
              diagonal_only=True, symmetric=True)
    bd = cache.get(("diagonal-base", dtype), lambda: eh.hessian_diagonal_baseline(model, point, dtype))
    tv = {n: DDTruth(*dt.diagonal(n)) for n in shapes}
    bv = {n: bd[a:b].reshape(shapes[n]) for n, (a, b) in dt.offsets.items()}
    g = grade(truth=tv, value=value, baseline=bv, dtype=dtype.numpy, case=case.name, candidate=cand.name,
              tolerances=tolerances)
    if g.verdict.value == "fail" and terms:
        p64 = {k: np.asarray(x, dtype=np.float64) for k, x in point.items()}
        tg = {}
        for s, node, t in terms:
            d = s * eh.hessian_diagonal_baseline(model, p64, Dtype.FLOAT64, term=node)
            tg[t] = {n: d[a:b].reshape(shapes[n]) for n, (a, b) in dt.offsets.items()}
        g = grade(truth=tv, value=value, baseline=bv, dtype=dtype.numpy, case=case.name, candidate=cand.name,
                  tolerances=tolerances, term_gradients=tg)
    return g, value


def _hessian_matrix(raw, n: int, shapes: dict, label: str) -> tuple[np.ndarray | None, str]:
    """The returned Hessian as a float ``N x N`` array (its dtype kept), or a message why not."""
    if isinstance(raw, str):
        return None, f"{label}: the Hessian must be an array, got {raw[:80]}"
    arr = np.asarray(raw)
    if arr.dtype.kind not in "fiu":
        return None, f"{label}: the Hessian must be a real array, got dtype {arr.dtype}"
    if arr.shape == (n, n):
        return arr, ""
    if len(shapes) == 1:
        (shape,) = shapes.values()
        if arr.shape == tuple(shape) + tuple(shape):
            return arr.reshape(n, n), ""
    return None, (f"{label}: the Hessian has shape {arr.shape}, expected ({n}, {n}) (the variables "
                  f"{', '.join(shapes)} flattened in declaration order)")


def _result(cand: CandidateSpec, case, dtype: Dtype, verdict: str, message: str, g, call=None,
            extra: dict | None = None) -> Result:
    expect = cand.expectation(dtype)
    if expect is Expect.PASS:
        met = verdict == "pass" or (verdict == "not exercised" and cand.allow_upcast)
    else:
        met = verdict in ("fail", "nonfinite")
    if verdict == "unresolved":
        met = None  # the dtype cannot resolve the derivative at this point: informational
    return Result(case.name, cand.name, "code", dtype.value, expect.value, verdict, met, g, message,
                  call.stdout if call is not None else "", call.seconds if call is not None else 0.0,
                  extra=extra or {})
