"""grade(): candidate + truth + float baseline -> Grade.

Validates the caller's truth and baseline (ValueError), reads the untrusted candidate return
(anything unusable is an ERROR verdict, never an exception), derives each variable's
tolerance ``tau_k`` from the baseline, marks the wrong entries, diagnoses the failing
variables (:mod:`verigrad.grading.shapes`) and writes the verdict and its breadcrumbs.  The
rule is specified in the Notes of :mod:`verigrad.grading`.

The per-entry work is done on numpy arrays (:mod:`verigrad.grading.entries`): every figure and
decision equals its exact definition (:func:`verigrad.grading.metrics._exact_entry`), which is
evaluated in mpmath only for the entries the float64 bounds cannot decide and for the wrong
entries' breadcrumbs.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import mpmath
import numpy as np
from mpmath import libmp

from verigrad.grading.entries import EntryErrors, TruthVar, Values, truth_var
from verigrad.grading.exact import (
    _FZERO,
    _PREC,
    _RN,
    _fmt_of,
    _raw_max,
    _to_float,
    _ulp_exp,
)
from verigrad.grading.metrics import ErrorSummary, _Sums
from verigrad.grading.records import (
    BugShape,
    Diagnosis,
    EntryError,
    Grade,
    ToleranceSource,
    Tolerances,
    VariableGrade,
    Verdict,
    WrongReason,
)
from verigrad.grading.shapes import _diagnose, _idx_str, _num, _unravel

__all__ = ["grade"]

# ---------------------------------------------------------------------------
# grade
# ---------------------------------------------------------------------------


def _validated_truth(truth: Mapping[str, Any]) -> dict[str, TruthVar]:
    if not isinstance(truth, Mapping) or not truth:
        raise ValueError(f"truth must be a non-empty mapping of variable name to array, "
                         f"got {type(truth).__name__}")
    return {name: truth_var(name, arr) for name, arr in truth.items()}


def _validated_baseline(baseline: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]
                        ) -> dict[str, Values]:
    if not isinstance(baseline, Mapping):
        raise ValueError(f"baseline must be a mapping of variable name to array, "
                         f"got {type(baseline).__name__}")
    missing = [k for k in shapes if k not in baseline]
    extra = [k for k in baseline if k not in shapes]
    if missing or extra:
        raise ValueError(f"baseline variables {list(baseline)} do not match the truth's "
                         f"{list(shapes)} (missing {missing}, extra {extra})")
    out = {}
    for name, shape in shapes.items():
        b = np.asarray(baseline[name])
        if b.shape != shape:
            raise ValueError(f"baseline[{name!r}] has shape {b.shape}, "
                             f"the truth has {shape}")
        try:
            out[name] = Values(b)
        except TypeError as exc:
            raise ValueError(f"baseline[{name!r}]: {exc.args[0]}") from None
    return out


def _read_candidate(value: Any, shapes: Mapping[str, tuple[int, ...]]
                    ) -> tuple[dict[str, Values], dict[str, str], list[str], dict[str, str]]:
    """Read the untrusted return: (usable variables, per-variable errors, all error
    messages in order, returned dtype names)."""
    names = list(shapes)
    errors_msgs: list[str] = []
    cand: dict[str, Values] = {}
    var_error: dict[str, str] = {}
    returned: dict[str, str] = {}
    if not isinstance(value, Mapping):
        errors_msgs.append(f"the candidate returned {type(value).__name__}, "
                           f"expected a mapping of variables {names}")
        value = {}
    else:
        for extra in (k for k in value if k not in shapes):
            errors_msgs.append(f"unexpected variable {extra!r} returned; "
                               f"expected variables: {', '.join(names)}")
    for name in names:
        if name not in value:
            var_error[name] = f"{name}: missing from the returned gradient"
            continue
        try:
            arr = np.asarray(value[name])
        except Exception as exc:  # noqa: BLE001 - untrusted object
            var_error[name] = f"{name}: cannot be read as an array ({exc})"
            continue
        returned[name] = arr.dtype.name
        if arr.shape != shapes[name]:
            var_error[name] = f"{name}: expected shape {shapes[name]}, got {arr.shape}"
            continue
        try:
            cand[name] = Values(arr)
        except TypeError as exc:
            var_error[name] = f"{name}: {exc.args[0]}"
            continue
    errors_msgs.extend(var_error[n] for n in names if n in var_error)
    return cand, var_error, errors_msgs, returned


def grade(
    *,
    truth: Mapping[str, np.ndarray],
    value: Mapping[str, np.ndarray],
    baseline: Mapping[str, np.ndarray],
    dtype: Any,
    case: str,
    candidate: str,
    tolerances: Tolerances = Tolerances(),
    entry_tolerance: float | None = None,
    label: str | None = None,
    term_gradients: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    error_model: Mapping[str, np.ndarray] | None = None,
) -> Grade:
    """Grade a candidate gradient against the certified truth.

    Parameters
    ----------
    truth : mapping of str to ndarray of mpmath.mpf, or to DDTruth
        Per variable, the exact gradient at the dtype's point, in the
        variable's shape (0-d for scalars): an object array of exact numbers
        (mpmath.mpf, ints, floats), or a :class:`~verigrad.grading.exact.DDTruth`
        whose entries are exactly ``hi + lo`` (no Python object per entry).
        The mapping order is the variable order of the report.  Must be finite.
    value : mapping of str to array_like
        What the candidate returned.  Not trusted: a missing or extra variable,
        a wrong shape, complex, boolean or non-numeric data give
        :attr:`Verdict.ERROR`; NaN/inf give :attr:`Verdict.NONFINITE`.  Any real
        dtype is graded exactly as returned.
    baseline : mapping of str to ndarray of ``dtype``
        The float baseline: the exact gradient expression evaluated naively in
        ``dtype``.  Same variables and shapes as ``truth`` (ValueError
        otherwise).  Non-finite entries are allowed and give no allowance.
    dtype : numpy.float32 or numpy.float64
        The dtype under test.
    case, candidate : str
        Names, for breadcrumbs.
    tolerances : Tolerances
        Parameters of the rule (the Notes of :mod:`verigrad.grading`).
    entry_tolerance : float, optional
        An absolute tolerance for every entry, replacing ``tau_k`` (source
        :attr:`ToleranceSource.GIVEN`), with the relative guard off: an entry is
        wrong exactly when ``|v_i - g_i| > entry_tolerance`` or it is not finite.
        The finite-difference rows use it so that their wrong entries follow the
        row's own rule.
    term_gradients : mapping of str to mapping of str to ndarray, optional
        Per term of the loss (keyed by its text, e.g. ``"0.01*sum(W1**2)"``), the gradient of
        that signed term per variable (float64).  Failing variables are then also tested for a
        missing term (``v = g - d``) and a term with its sign flipped (``v = g - 2 d``).
    error_model : mapping of str to ndarray, optional
        Per variable, per entry, the error model of the baseline: a first-order bound ``m_i``
        of the rounding error of the gradient expression evaluated in ``dtype`` in any order
        (:func:`verigrad.grading.baseline_error_model`).  Where the baseline's own error is
        within it (``|b_i - g_i| <= m_i``) and ``g_i`` is a nonzero normal number, entry ``i``
        gets its own tolerance ``min(tau_k, max(entry_lambda m_i, 2 ulp_p(g_i)))``.  Ignored
        with ``entry_tolerance``.
    label : str, optional
        Named in every breadcrumb after the case (``case › label › W[0] ›
        float32``); the finite-difference rows pass ``"central h=1.0e-03"``.

    Returns
    -------
    Grade

    Raises
    ------
    ValueError
        For invalid ``truth``, ``baseline`` or ``dtype`` (the caller's inputs,
        not the candidate's).

    Notes
    -----
    Per variable ``k``: ``A_k = max |b_i - g_i|`` over finite baseline
    entries, ``S_k = max |g_i|``, ``S = max_k S_k`` and
    ``tau_k = max(min(factor A_k, cap S_k), factor floor_ulps ulp_p(S))``.
    Entry ``i`` is wrong if ``v_i`` is not finite, if ``|v_i - g_i| > tau_k``,
    or if ``g_i`` is a nonzero normal number, ``|b_i - g_i| <= guard_ulps
    ulp_p(g_i)`` and ``|v_i - g_i| > guard_relative |g_i|``.  All comparisons
    are exact; see the Notes of :mod:`verigrad.grading` for the metrics and the reasons.

    Examples
    --------
    >>> import mpmath, numpy as np
    >>> t = {"b": np.array(mpmath.mpf(1) / 3, dtype=object)}
    >>> g = grade(truth=t, value={"b": np.float32(1 / 3)}, baseline={"b": np.float32(1 / 3)},
    ...           dtype=np.float32, case="c", candidate="x")
    >>> g.verdict, round(g.max_ulps, 3)
    (<Verdict.PASS: 'pass'>, 0.333)
    """
    fmt = _fmt_of(dtype)
    if not isinstance(tolerances, Tolerances):
        raise ValueError(f"tolerances={tolerances!r} must be a verigrad Tolerances record")
    tv = _validated_truth(truth)
    shapes = {k: t.shape for k, t in tv.items()}
    bv = _validated_baseline(baseline, shapes)
    case, candidate = str(case), str(candidate)
    crumb = case if label is None else f"{case} › {label}"
    if entry_tolerance is not None:
        entry_tolerance = float(entry_tolerance)
        if not entry_tolerance >= 0:
            raise ValueError(f"entry_tolerance={entry_tolerance!r} must be a number >= 0 (or inf)")
    names = list(tv)

    cand, var_error, errors_msgs, returned = _read_candidate(value, shapes)

    rdt = sorted(set(returned.values()))
    returned_dtype = rdt[0] if len(rdt) == 1 else ("?" if not rdt else
                                                    f"mixed({','.join(rdt)})")
    dtype_mismatch = any(d != fmt.name for d in returned.values())
    upcast = [n for n, d in returned.items() if _wider(d, fmt.bits)]
    warnings: list[str] = []
    if dtype_mismatch:
        odd = [f"{n} as {d}" for n, d in returned.items() if d != fmt.name]
        warnings.append(f"{case} › {label or candidate} › {fmt.name}: dtype mismatch, returned "
                        f"{', '.join(odd)} for {fmt.name} inputs "
                        f"({fmt.name} not exercised; graded as returned)")

    # --- scales and tolerances ----------------------------------------------
    s_k = {k: tv[k].max_abs() for k in names}
    s_all = _raw_max(s_k.values())
    tol = tolerances
    f_factor = libmp.from_float(tol.factor)
    floor = libmp.mpf_mul(libmp.mpf_mul(f_factor, libmp.from_float(tol.floor_ulps)),
                          libmp.mpf_shift(libmp.fone, _ulp_exp(s_all, fmt)))
    guard_rel = libmp.from_float(tol.guard_relative)
    guard_ulps = libmp.from_float(tol.guard_ulps)

    variables: list[VariableGrade] = []
    wrong: list[EntryError] = []
    entry_msgs: list[str] = []
    cand_sums, base_sums = _Sums.zero(), _Sums.zero()
    cand_sum_ok = True
    pending: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, float]] = []
    unresolved_msgs: list[str] = []  # per variable with entries within the noise the dtype cannot resolve
    g64s: dict[str, np.ndarray] = {}
    taus: dict[str, float] = {}
    var_parts: dict[str, dict[str, Any]] = {}

    for name in names:
        tr = tv[name]
        shape, n = tr.shape, tr.n
        zero_ref = s_k[name] if s_k[name] != _FZERO else s_all
        zero_kulp = _ulp_exp(zero_ref, fmt)
        # ulp_p(|g_i|) = 2**kulp_i (the exact zeros of the truth use the reference's)
        kulp_nz = np.maximum(tr.kexp, fmt.emin) - fmt.bits + 1
        kulp = np.where(tr.zero, zero_kulp, kulp_nz)
        g64 = tr.g64
        g64s[name] = g64
        braw = bv[name]
        base = EntryErrors(tr, braw, kulp=kulp, zero_ref=zero_ref, zero_kulp=zero_kulp)
        g_sums = tr.sumsq()
        b_sums = base.sums(g_sums)
        base_sums += b_sums
        bad_base = np.flatnonzero(~braw.finite)
        if bad_base.size and entry_tolerance is None:
            n_inf = int(np.count_nonzero(np.isinf(braw.disp[bad_base])))  # inf: overflow; nan: inf - inf, ...
            warnings.append(f"{crumb} › {name} › {fmt.name}: the float baseline is not finite "
                            f"at {bad_base.size} entr{'y' if bad_base.size == 1 else 'ies'} "
                            f"(first {name}{_idx_str(_unravel(int(bad_base[0]), shape))}; {n_inf} inf, "
                            f"{bad_base.size - n_inf} nan: the gradient expression as written overflows "
                            f"{fmt.name} (largest {float(np.finfo(np.dtype(dtype)).max):.6g}) or leaves its "
                            "domain there, e.g. log(1 - sigmoid(z)) at a saturated sigmoid); "
                            "they give no allowance")
        # entries where the baseline itself has no correct digit: the expression is ill-conditioned
        # as written in this dtype there, and a candidate as poor as the baseline still passes
        with np.errstate(all="ignore"):
            rel_b = np.abs(braw.rounded - g64) / np.abs(g64)
        lost_mask = braw.finite & (g64 != 0) & (rel_b >= 0.5)
        lost = np.flatnonzero(lost_mask)
        if lost.size and entry_tolerance is None:
            worst = rel_b[lost].max()
            i = int(lost[rel_b[lost] == worst][-1])
            warnings.append(f"{crumb} › {name} › {fmt.name}: the float baseline has no correct digit at "
                            f"{lost.size} entr{'y' if lost.size == 1 else 'ies'} (worst "
                            f"{name}{_idx_str(_unravel(i, shape))}: relative error {float(worst):.2g}): the gradient "
                            f"expression is ill-conditioned as written in {fmt.name}; only at those entries is "
                            "the tolerance that poor, and a stable formulation does far better")
        # the variable's tolerance comes from the entries where the baseline has correct digits, so
        # one ill-conditioned entry cannot loosen the others; the lost entries get their own below
        kept = braw.finite & ~lost_mask
        a_k = base.max_diff(kept if kept.any() else braw.finite)
        base_part = libmp.mpf_mul(f_factor, a_k)
        cap = libmp.mpf_mul(libmp.from_float(tol.cap), s_k[name])
        source = ToleranceSource.BASELINE
        poor = libmp.mpf_gt(base_part, cap)
        # the tolerance the rounding noise asks for, before the cap: an error within it, beyond
        # the capped tolerance, is neither right nor wrong (the dtype cannot resolve the gradient)
        noise = base_part if libmp.mpf_gt(base_part, floor) else floor
        if poor:
            base_part, source = cap, ToleranceSource.CAP
        tau = base_part
        if libmp.mpf_ge(floor, tau):
            tau, source = floor, ToleranceSource.FLOOR
        if entry_tolerance is not None:
            # the caller's own rule (finite-difference rows): one absolute tolerance, nothing lost
            tau = libmp.finf if math.isinf(entry_tolerance) else libmp.from_float(entry_tolerance)
            source, poor = ToleranceSource.GIVEN, False
            lost_mask = np.zeros_like(lost_mask)
            lost = lost[:0]
        tau_f = _to_float(tau)
        taus[name] = tau_f

        own_tol = None  # the entries with their own tolerance from the error model, and it
        if error_model is not None and entry_tolerance is None and name in error_model:
            own_tol = _model_tolerances(name, error_model[name], shape, tr=tr, base=base, baseline=braw,
                                        lost_mask=lost_mask, kulp=kulp_nz, fmt=fmt, tau_f=tau_f, lam=tol.entry_lambda)
            if (own_tol[0] & (own_tol[1] < tau_f)).any():
                source = ToleranceSource.ENTRY  # some entry is held to less than tau_k

        def tau_at(i: int, base: EntryErrors = base, lost_mask: np.ndarray = lost_mask,
                   tau: tuple = tau, cap: tuple = cap, own_tol: tuple | None = own_tol) -> tuple:
            """The exact tolerance of entry i: its own at a lost entry or from the error model, tau_k elsewhere."""
            if own_tol is not None and own_tol[0][i]:
                return libmp.from_float(float(own_tol[1][i]))
            if not lost_mask[i]:
                return tau
            t_i = libmp.mpf_mul(f_factor, base.diff(i))
            if libmp.mpf_gt(t_i, cap):
                t_i = cap
            return t_i if libmp.mpf_gt(t_i, tau) else tau

        if poor:
            warnings.append(f"{crumb} › {name} › {fmt.name}: the float baseline is poor (max "
                            f"error {_num(_to_float(a_k))} vs scale "
                            f"{_num(_to_float(s_k[name]))}): ill-conditioned in {fmt.name}; "
                            f"tolerance limited to {tau_f:.2g} (cap {tol.cap:g} x scale)")

        if name not in cand:
            variables.append(VariableGrade(
                variable=name, shape=shape, verdict=Verdict.ERROR,
                returned_dtype=returned.get(name, "?"), errors=ErrorSummary.unknown(),
                baseline=_summary(base, b_sums), scale=_to_float(s_k[name]),
                tolerance=tau_f, tolerance_source=source, n_entries=n, n_wrong=0,
                diagnosis=None, message=var_error.get(name, "")))
            cand_sum_ok = False
            continue

        vals = cand[name]
        ce = EntryErrors(tr, vals, kulp=kulp, zero_ref=zero_ref, zero_kulp=zero_kulp)
        c_sums = ce.sums(g_sums)
        cand_sums += c_sums
        finite = vals.finite
        # |v - g| > tau_i (tau_k, or a lost entry's own tolerance)
        thr = np.full(n, tau_f)
        thr_ok = np.full(n, tau == _FZERO or abs(tau_f) >= 2.0 ** -1000)
        if lost.size:
            cap_f = _to_float(cap)
            with np.errstate(all="ignore"):
                own = np.maximum(np.minimum(tol.factor * base.a, cap_f), tau_f)
                sure = ~base.resolved & ((np.abs(base.al) + base.eps) * 2.0 ** 45 <= base.a)
            thr[lost] = own[lost]
            thr_ok[lost] = sure[lost]
        if own_tol is not None:
            thr = np.where(own_tol[0], own_tol[1], thr)
            thr_ok |= own_tol[0]
        tol_wrong = ce.gt(thr, tau_at, finite, thr_ok)
        unresolved = np.zeros(n, dtype=bool)
        noise_arr = np.full(n, np.nan)
        unresolvable = False
        if entry_tolerance is None:
            # a variable whose rounding noise reaches half its scale (as near a stationary point in
            # a short dtype, where the gradient is a small difference of large terms) cannot be
            # resolved by the dtype: an entry off by more than its tolerance but within the noise
            # there is what a correct candidate gives, and what a sign slip gives too: unresolved,
            # not wrong; beyond the noise it is wrong.  The variable's noise: factor x A_k (its
            # tolerance before the cap), or, asked only when some entry is beyond its tolerance,
            # the noise of its reductions from the error model (entry_lambda x SPREAD_SIGMAS x the
            # spread with only sums and products perturbed, over the entries the baseline gets
            # right): a few lucky baseline entries are not the noise, and elementwise cancellation
            # (1 - s at a saturated sigmoid, 1 - cos x near 0) is the formula's, which a stable
            # formulation removes -- it never makes a variable unresolvable.
            noise_arr[:] = _to_float(noise)
            cap_f = _to_float(cap)
            unresolvable = bool(poor)
            reduction = getattr(error_model, "reduction_noise", None)
            rn = reduction(name) if not unresolvable and tol_wrong.any() and reduction is not None else None
            if rn is not None:
                rn = rn.reshape(-1)
                sure = (kept if kept.any() else braw.finite) & np.isfinite(rn)
                v = tol.entry_lambda * float(np.max(rn[sure])) if sure.any() else -math.inf
                if v >= cap_f:
                    unresolvable = True
                    noise_arr = np.maximum(noise_arr, v)
            check = np.zeros(n, dtype=bool)
            if unresolvable and tol_wrong.any():
                with np.errstate(all="ignore"):
                    if error_model is not None and name in error_model:  # an entry's own noise, if larger
                        m_all = np.asarray(error_model[name], dtype=np.float64).reshape(-1)
                        noise_arr = np.where(np.isfinite(m_all), np.fmax(noise_arr, tol.entry_lambda * m_all),
                                             noise_arr)
                    if lost.size:
                        noise_arr[lost] = np.maximum(tol.factor * base.a, noise_arr)[lost]
                check = tol_wrong & (noise_arr > thr)
            if check.any():
                beyond = ce.gt(noise_arr, lambda i: libmp.from_float(float(noise_arr[i])), check,
                               noise_arr >= 2.0 ** -1000)
                unresolved = check & ~beyond
                tol_wrong = tol_wrong & ~unresolved
        # the relative guard: a nonzero true entry, normal in the dtype, that the baseline gets
        # within guard_ulps ulps, and on which the candidate is off by more than guard_relative
        guarded = finite & ~tol_wrong & ~unresolved & ~tr.zero & (tr.kexp >= fmt.emin) & braw.finite
        if entry_tolerance is not None or unresolvable:  # (in the noise a baseline within 8 ulps is luck)
            guarded &= False
        with np.errstate(all="ignore"):
            rel_thr = tol.guard_relative * np.abs(tr.g0)
            ulp_thr = np.ldexp(tol.guard_ulps, kulp_nz)
        far = ce.gt(rel_thr, lambda i: libmp.mpf_mul(guard_rel, tr.gabs(i)), guarded,
                    tr.fast & (rel_thr >= 2.0 ** -1000))
        base_off = base.gt(ulp_thr, lambda i: libmp.mpf_shift(guard_ulps, int(kulp_nz[i])), far,
                           ulp_thr >= 2.0 ** -1000)
        rel_wrong = far & ~base_off
        wmask = ~finite | tol_wrong | rel_wrong
        vdisp = vals.disp
        at = np.flatnonzero(wmask)
        figs = ce.figures_of(at)
        where = (list(zip(*(c.tolist() for c in np.unravel_index(at, shape)))) if shape
                 else [()] * at.size)
        for j, i in enumerate(at.tolist()):
            if not finite[i]:
                reason = WrongReason.NONFINITE
            elif tol_wrong[i]:
                reason = WrongReason.TOLERANCE
            else:
                reason = WrongReason.RELATIVE
            abs_e, rel_e, ulps_e = figs[j]
            idx = where[j]
            graw = tr.raw(i)
            tstr = mpmath.nstr(mpmath.mp.make_mpf(graw), 17)
            value_i = float(vdisp[i])
            wrong.append(EntryError(
                variable=name, index=idx, truth=tstr, value=value_i,
                abs_error=abs_e, rel_error=rel_e, ulps=ulps_e, tolerance=float(thr[i]),
                reason=reason))
            entry_msgs.append(_entry_message(
                case=crumb, where=f"{name}{_idx_str(idx)}", dtype=fmt.name, reason=reason,
                truth=graw, value=value_i, abs_err=abs_e, rel_err=rel_e,
                tau=float(thr[i]), gabs=libmp.mpf_abs(graw), tol=tol))
        n_wrong = int(wmask.sum())
        if not finite.all():
            verdict = Verdict.NONFINITE
        elif n_wrong:
            verdict = Verdict.FAIL
        elif unresolved.any():
            verdict = Verdict.UNRESOLVED
            n_unres = int(unresolved.sum())
            first = int(np.flatnonzero(unresolved)[0])
            abs_first = ce.figures_of(np.array([first]))[0][0]
            unresolved_msgs.append(
                f"{name}: {n_unres} of {n} entr{'y' if n == 1 else 'ies'} off by more than the tolerance "
                f"(at most {tol.cap:g} x the scale {_num(_to_float(s_k[name]))}) but within the rounding "
                f"noise of {fmt.name} here (first {name}{_idx_str(_unravel(first, shape))}: error "
                f"{abs_first:.2g}, tolerance {float(thr[first]):.2g}, noise {float(noise_arr[first]):.2g})")
        else:
            verdict = Verdict.PASS
        var_parts[name] = dict(
            variable=name, shape=shape, verdict=verdict, returned_dtype=vals.dtype_name,
            errors=_summary(ce, c_sums), baseline=_summary(base, b_sums),
            scale=_to_float(s_k[name]), tolerance=tau_f, tolerance_source=source,
            n_entries=n, n_wrong=n_wrong, detection=_detection(tr.g64, thr))
        det = var_parts[name]["detection"]
        if verdict is Verdict.PASS and unresolvable and not (det == det and det >= 1.0):
            # within the capped tolerance, but another correct evaluation may not be
            warnings.append(f"{crumb} › {name} › {fmt.name}: the rounding noise of {fmt.name} here "
                            f"({float(np.nanmax(noise_arr)):.2g}) reaches half the gradient's scale "
                            f"({_num(_to_float(s_k[name]))}): this pass is within {tau_f:.2g}, but another "
                            f"correct {fmt.name} evaluation may come out unresolved; grade it at another point "
                            "or in a wider dtype")
        if verdict is Verdict.PASS and det == det and det >= 1.0:
            # a pass that even a zero or sign-flipped gradient would get says nothing: say so
            # (a gradient below the dtype's normal range, or a baseline with no correct digit)
            warnings.append(f"{crumb} › {name} › {fmt.name}: {fmt.name} cannot resolve this gradient: the "
                            f"tolerance is {det:.2g} times its largest entry, so even a zero or "
                            f"sign-flipped gradient would pass; grade it in a wider dtype")
        if verdict in (Verdict.FAIL, Verdict.NONFINITE):
            pending.append((name, vdisp, wmask, finite, tau_f))
        variables.append(None)  # type: ignore[arg-type]  # filled below

    # --- diagnosis -------------------------------------------------------------
    diagnoses: dict[str, Diagnosis] = {}
    for name, vdisp, wmask, finite, tau_f in pending:
        others = {o: (g64s[o], taus[o]) for o in names
                  if o != name and tv[o].shape == tv[name].shape}
        terms = [(text, np.asarray(d[name], dtype=np.float64).reshape(-1))
                 for text, d in (term_gradients or {}).items() if name in d]
        diagnoses[name] = _diagnose(
            name=name, shape=tv[name].shape, g=g64s[name], v=vdisp, wrong=wmask,
            finite=finite, tau=tau_f, others=others, dtype=fmt.name, case=crumb, terms=terms)
    for j, name in enumerate(names):
        if variables[j] is None:
            parts = var_parts[name]
            diag = diagnoses.get(name)
            msg = "" if diag is None else diag.message
            variables[j] = VariableGrade(**parts, diagnosis=diag, message=msg)

    # --- verdict ---------------------------------------------------------------
    n_entries = sum(tv[n].n for n in names)
    if errors_msgs:
        verdict = Verdict.ERROR
        reason = "; ".join(errors_msgs)
    elif any(v.verdict is Verdict.NONFINITE for v in variables):
        verdict = Verdict.NONFINITE
        bad = [w for w in wrong if w.reason is WrongReason.NONFINITE]
        listed = ", ".join(f"{w.variable}{_idx_str(w.index)}={w.value}" for w in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        reason = f"non-finite values at {len(bad)} of {n_entries} entr{'y' if n_entries == 1 else 'ies'}: {listed}{more}"
    elif wrong:
        verdict = Verdict.FAIL
        failing = [v for v in variables if v.verdict is Verdict.FAIL]
        parts_s = ", ".join(f"{v.variable} ({_shape_phrase(v.diagnosis)})" for v in failing)
        reason = (f"{len(wrong)} of {n_entries} entr{'y' if n_entries == 1 else 'ies'} wrong in {len(failing)} "
                  f"variable{'s' if len(failing) != 1 else ''}: {parts_s}")
    elif unresolved_msgs:
        verdict = Verdict.UNRESOLVED
        reason = (f"{fmt.name} cannot resolve the gradient at this point, neither pass nor fail: "
                  + "; ".join(unresolved_msgs) + f". A correct {fmt.name} gradient and a sign-flipped one "
                  "are alike there (a point near a stationary point, where the terms cancel); grade it at "
                  "another point or in a wider dtype")
    else:
        verdict = Verdict.PASS
        reason = ("the only entry is within tolerance" if n_entries == 1 else f"all {n_entries} entries within tolerance")
    errors = (ErrorSummary(
        normwise_relative=cand_sums.normwise(), symmetric=cand_sums.symmetric(),
        max_ulps=max((v.errors.max_ulps for v in variables), default=0.0),
        max_abs=max((v.errors.max_abs for v in variables), default=0.0),
        max_rel=max((v.errors.max_rel for v in variables), default=0.0))
        if cand_sum_ok and not errors_msgs else ErrorSummary.unknown())
    if verdict is Verdict.PASS:
        reason += (f" (max {_num(errors.max_ulps)} ulps, norm-wise relative "
                   f"{errors.normwise_relative:.2e})")
        if upcast:
            # within tolerance, but computed in a wider type: the dtype under test never ran
            verdict = Verdict.NOT_EXERCISED
            reason = (f"{fmt.name} not exercised: returned "
                      f"{', '.join(f'{n} as {returned[n]}' for n in upcast)} for {fmt.name} inputs; "
                      + reason)
    base_summary = ErrorSummary(
        normwise_relative=base_sums.normwise(), symmetric=base_sums.symmetric(),
        max_ulps=max((v.baseline.max_ulps for v in variables), default=0.0),
        max_abs=max((v.baseline.max_abs for v in variables), default=0.0),
        max_rel=max((v.baseline.max_rel for v in variables), default=0.0))
    return Grade(
        case=case, candidate=candidate, dtype=fmt.name, verdict=verdict,
        returned_dtype=returned_dtype, dtype_mismatch=dtype_mismatch, errors=errors,
        baseline=base_summary, scale=_to_float(s_all), variables=tuple(variables),
        wrong=tuple(wrong), diagnosis=tuple(diagnoses[n] for n in names if n in diagnoses),
        reason=reason, warnings=tuple(warnings), tolerances=tolerances,
        entry_messages=tuple(entry_msgs))


def _model_tolerances(name: str, model: Any, shape: tuple[int, ...], *, tr: TruthVar, base: EntryErrors,
                      baseline: Values, lost_mask: np.ndarray, kulp: np.ndarray, fmt: Any, tau_f: float,
                      lam: float) -> tuple[np.ndarray, np.ndarray]:
    """(where, tolerance) of the entries that get their own tolerance from the baseline's error model.

    Entry ``i`` qualifies when ``g_i`` is a nonzero normal number of the dtype, the baseline is
    finite there and not a lost entry, the model's bound ``m_i`` is finite, and the baseline's
    own error ``|b_i - g_i|`` (``base.a``, its float64 rounding) is within ``m_i``: the model
    explains the baseline at that entry.  Its tolerance is ``min(tau_k, max(lam m_i, 2 ulp_p(g_i)))``,
    computed in float64 (an exact float64 number: the decisions against it are exact).
    """
    m = np.asarray(model, dtype=np.float64)
    if m.shape != shape:
        raise ValueError(f"error_model[{name!r}] has shape {m.shape}, the truth has {shape}")
    m = m.reshape(-1)
    with np.errstate(all="ignore"):
        ok = (~tr.zero & (tr.kexp >= fmt.emin) & baseline.finite & ~lost_mask & np.isfinite(m) & (m >= 0)
              & (base.a <= m))
        own = np.minimum(tau_f, np.maximum(lam * m, np.ldexp(2.0, kulp)))
    own = np.where(ok, own, tau_f)
    return ok, own


def _detection(g64: np.ndarray, thr: np.ndarray) -> float:
    """The tolerance of the largest true entry over its magnitude (inf for an all-zero truth)."""
    if g64.size == 0:
        return math.nan
    i = int(np.argmax(np.abs(g64)))
    s = abs(float(g64[i]))
    return float(thr[i]) / s if s > 0 else math.inf


def _wider(dtype_name: str, bits: int) -> bool:
    """A real float type with more significand bits than the dtype under test (an upcast)."""
    try:
        dt = np.dtype(dtype_name)
    except TypeError:
        return False
    return dt.kind == "f" and np.finfo(dt).nmant + 1 > bits


def _summary(errs: EntryErrors, sums: _Sums) -> ErrorSummary:
    return ErrorSummary(normwise_relative=sums.normwise(), symmetric=sums.symmetric(),
                        max_ulps=errs.max("ulps"), max_abs=errs.max("abs"), max_rel=errs.max("rel"))


def _shape_phrase(d: Diagnosis | None) -> str:
    if d is None:
        return "?"
    if d.shape is BugShape.SCALED:
        return f"scaled by {d.factor_text or _num(d.factor or math.nan)}"
    if d.shape is BugShape.SWAPPED:
        return f"swapped with {d.other}"
    if d.shape is BugShape.BLOCK:
        return f"block {d.region}"
    if d.shape is BugShape.MISSING_TERM:
        return f"missing the gradient of {d.term}"
    if d.shape is BugShape.TERM_SIGN:
        return f"sign of the gradient of {d.term} flipped"
    if d.shape is BugShape.REVERSED:
        return f"reversed: {d.region}"
    if d.shape is BugShape.OFFSET:
        return f"offset by {d.factor_text}"
    if d.shape is BugShape.WRONG_AXIS:
        return d.region or "wrong axis"
    return d.shape.value.replace("_", " ")


def _entry_message(*, case: str, where: str, dtype: str, reason: WrongReason, truth: tuple,
                   value: float, abs_err: float, rel_err: float, tau: float, gabs: tuple,
                   tol: Tolerances) -> str:
    ts = mpmath.nstr(mpmath.mp.make_mpf(truth), 10)
    got = f"{value:.7g}"
    if abs_err > 0 and math.isfinite(value) and got == f"{_to_float(truth):.7g}":
        got = f"{value:.10g}"  # a few-ulp error (per-entry tolerances): show the digits that differ
    head = f"{case} › {where} › {dtype}: "
    if reason is WrongReason.NONFINITE:
        return head + f"non-finite value (truth {ts}, got {got})"
    if reason is WrongReason.RELATIVE:
        return head + (f"rel err {rel_err:.1e} > {tol.guard_relative:.1e} on a nonzero entry "
                       f"the float baseline gets within {tol.guard_ulps:g} ulps "
                       f"(truth {ts}, got {got})")
    if gabs == _FZERO:
        return head + f"abs err {abs_err:.1e} > tol {tau:.1e} (truth 0, got {got})"
    # tau / |g| at _PREC bits, rounded to float (libmp directly: it is per wrong entry)
    rtol = _to_float(libmp.mpf_div(libmp.from_float(tau), gabs, _PREC, _RN))
    return head + f"rel err {rel_err:.1e} > tol {rtol:.1e} (truth {ts}, got {got})"
