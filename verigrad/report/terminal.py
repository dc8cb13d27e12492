"""What ``verigrad run`` and ``verigrad truth`` print: short, legible at 80 columns, readable without colour.

``run`` prints one line per case (:func:`case_line`, under :func:`run_header`) and, only where
something needs a reader, a short block below it (:func:`case_details`):

* every unmet expectation: ``case › candidate › dtype`` (``› scheme h=…`` for a finite
  difference), what was expected and what happened, the bug shape of each failing variable,
  the worst entries, and for a finite difference its truncation / step / round-off split;
* a finite-difference estimate that is far from what its scheme can reach (informational: it
  carries no expectation), with its split;
* the case's forward pass (``loss_code``) when it disagrees with the declared loss.

``-v`` adds the table of every grade, every diagnosis and wrong entry, the classic-check
notes and the float baseline's warnings; ``-q`` keeps only the cases with unmet
expectations.  Every line is built from the records (:mod:`verigrad.runner.records`) and
wrapped here, with a hanging indent, at the console's width: nothing is cut with "…", and
nothing relies on colour.
"""

from __future__ import annotations

import heapq
import math
import textwrap

import numpy as np
from rich.table import Table
from rich.text import Text

from verigrad.report.words import plural

__all__ = ["truth_table", "TruthRows", "fmt_index", "plural", "Para", "run_header", "case_line", "case_details",
           "run_summary", "result_label", "diagnosis_text"]


def fmt_index(idx: tuple) -> str:
    return "" if not idx else "[" + ", ".join(str(int(i)) for i in idx) + "]"


class Para:
    """A paragraph wrapped at the console's width with a hanging indent, without trailing spaces.

    Rich wraps long lines back to column 0 and pads them; a report read in a CI log wants its
    indentation kept.  Words longer than a line are broken, never cut with an ellipsis.
    """

    def __init__(self, text: str, *, indent: int = 0, hang: int | None = None, style: str = "") -> None:
        self.text, self.indent, self.style = text, indent, style
        self.hang = indent + 4 if hang is None else hang

    def lines(self, width: int) -> list[str]:
        out = []
        for k, para in enumerate(self.text.split("\n")):
            lead = len(para) - len(para.lstrip(" "))
            first = " " * (self.indent + lead)
            out.extend(textwrap.wrap(para.strip(" "), width=max(width, 20), initial_indent=first,
                                     subsequent_indent=" " * (self.hang + lead), break_on_hyphens=False,
                                     break_long_words=True) or [""])
        return out

    def __rich_console__(self, console, options):
        for line in self.lines(options.max_width):
            yield Text(line, style=self.style)


# -- truth --------------------------------------------------------------------------------

#: a gradient with more entries than this is summarised (per variable, and its largest entries)
TRUTH_TABLE_ENTRIES = 40
#: how many of the largest entries a summarised truth shows
TRUTH_TOP_ENTRIES = 10


def _float_gradient(truth) -> dict:
    """The truth rounded to float64 per variable, without building per-entry objects when avoidable."""
    hi = getattr(truth, "gradient_hi", None)
    return dict(hi) if hi else truth.as_float64()


def _entry_row(rows: list, truth, name: str, idx: tuple) -> None:
    g = truth.gradient[name] if not hasattr(truth, "entry") else None
    value = truth.entry(name, idx) if g is None else g[idx]
    note = ""
    if truth.exact_zero[name][idx]:
        note = " (exact zero)"
    elif truth.absolute[name][idx]:
        note = f" (|g| < 1e-{truth.digits + 8}·scale)"
    rows.append((f"d loss/d {name}{fmt_index(idx)}", repr(truth.point[name][idx].item()), truth.decimal(value) + note))


class TruthRows:
    """The rows of a truth: a table where it fits; where it does not, folded cells on a terminal and
    plain lines (one per entry, every digit on one line) when piped into a file or another program.

    Never an ellipsis: a 60-digit value keeps every digit either way.
    """

    COLUMNS = ("quantity", "value at x_p", "exact gradient")

    def __init__(self, title: str, rows: list[tuple[str, str, str]]) -> None:
        self.title, self.rows = title, rows

    def table(self) -> Table:
        t = Table(title=self.title, title_justify="left", expand=False)
        t.add_column(self.COLUMNS[0], no_wrap=True)
        t.add_column(self.COLUMNS[1], overflow="fold")
        t.add_column(self.COLUMNS[2], overflow="fold")
        for row in self.rows:
            t.add_row(*row)
        return t

    def plain(self) -> list[str]:
        w = max((len(q) for q, _, _ in self.rows), default=0)
        return [self.title] + [f"  {q:<{w}}  {g}" + (f"   (x_p = {x})" if x else "") for q, x, g in self.rows]

    def __rich_console__(self, console, options):
        from rich.measure import Measurement

        table = self.table()
        natural = Measurement.get(console, options.update(width=100_000), table).maximum
        if console.is_terminal or natural <= options.max_width:
            yield table
        else:
            for line in self.plain():
                yield Text(line, no_wrap=True, overflow="ignore")


def truth_table(model, truth, *, verbose: bool = False):
    """Loss and certified gradient entries of one dtype's point.

    Every entry when the gradient has at most :data:`TRUTH_TABLE_ENTRIES` entries (or with
    ``verbose``); otherwise a row per variable (shape, exact zeros, largest |g|) and the
    :data:`TRUTH_TOP_ENTRIES` largest entries, so that rendering never grows with the size
    of the gradient (every entry is in the JSON).  No digit is ever replaced by an ellipsis
    (:class:`TruthRows`; print it with ``soft_wrap=True`` so that plain lines are not cropped).
    """
    from rich.console import Group

    total = sum(g.size for g in truth.exact_zero.values())
    title = (f"{truth.case} · {truth.dtype.value} point · {truth.digits} certified digits "
             f"({truth.precision} bits)")
    rows: list = [("loss", "", truth.decimal(truth.loss[()]))]
    if verbose or total <= TRUTH_TABLE_ENTRIES:
        for name, zeros in truth.exact_zero.items():
            for idx in np.ndindex(*zeros.shape):
                _entry_row(rows, truth, name, idx)
        return TruthRows(title, rows)
    floats = _float_gradient(truth)
    s = Table(title=f"{total:,} gradient entries: a summary per variable (every entry: -v or --json)",
              title_justify="left", expand=False)
    for col in ("variable", "shape", "exact zeros", "max |g|", "at"):
        s.add_column(col, overflow="fold", justify="left" if col in ("variable", "at") else "right")
    for name, g in floats.items():
        a = np.abs(g)
        i = np.unravel_index(int(np.argmax(a)), g.shape) if g.size else ()
        s.add_row(name, "×".join(map(str, g.shape)) or "scalar", f"{int(truth.exact_zero[name].sum()):,}",
                  f"{float(a[i]) if g.size else 0.0:.3e}", f"{name}{fmt_index(i)}")
    flat = [(float(v), name, j) for name, g in floats.items()
            for j, v in zip(*_top(np.abs(g).ravel(), TRUTH_TOP_ENTRIES))]
    flat.sort(key=lambda r: -r[0])
    for _, name, j in flat[:TRUTH_TOP_ENTRIES]:
        _entry_row(rows, truth, name, tuple(int(k) for k in np.unravel_index(j, floats[name].shape)))
    title += f" · the {min(TRUTH_TOP_ENTRIES, total)} largest of {total:,} entries"
    return Group(TruthRows(title, rows), s)


def _top(a: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k largest entries of a 1-D array, largest first (O(n))."""
    if a.size > k:
        idx = np.argpartition(-a, k - 1)[:k]
    else:
        idx = np.arange(a.size)
    idx = idx[np.argsort(-a[idx], kind="stable")]
    return idx, a[idx]


# -- run ------------------------------------------------------------------------------------

#: width of the case-name column of the one-line summaries (longer names push the line)
NAME_WIDTH = 28
#: wrong entries shown per unmet expectation (``-v``: :data:`VERBOSE_ENTRIES`)
WORST_ENTRIES = 3
#: wrong entries listed per grade with ``-v`` before "… and N more (--json has every one)"
VERBOSE_ENTRIES = 20

_MARK = {"ok": ("✓", "green"), "unmet": ("✗", "red bold")}


def _fmt(x, spec: str = ".2e") -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "—"
    if math.isnan(x):
        return "—"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return format(x, spec)


def result_label(r) -> str:
    """The breadcrumb of a result: ``case › candidate › dtype`` or ``case › scheme h=STEP › dtype``."""
    name = r.candidate if r.kind == "code" else f"{r.scheme} h={_fmt(r.step, '.1e')}"
    return f"{r.case} › {name} › {r.dtype}"


def _counts(rep) -> dict:
    code = [r for r in rep.results if r.kind == "code"]
    fd = [r for r in rep.results if r.kind != "code"]
    return {"passed": sum(1 for r in code if r.met is True and r.expect == "pass"),
            "caught": sum(1 for r in code if r.met is True and r.expect == "fail"),
            "unmet": sum(1 for r in rep.results if r.met is False),
            "fd_ok": sum(1 for r in fd if r.verdict == "pass"), "fd": len(fd)}


def run_header() -> Text:
    """The column titles of :func:`case_line` (printed once, above the first case)."""
    return Text(f"  {'case':<{NAME_WIDTH}}{'params':>7}{'passed':>8}{'caught':>8}{'not met':>9}{'fd ok':>7}"
                f"{'time':>8}", style="bold")


def case_line(rep) -> Text:
    """One line for a case: mark, name, parameters, expectations held and not, fd estimates in reach, time."""
    if rep.error:
        return Text(f"✗ {rep.name:<{NAME_WIDTH}} case error", style="red bold")
    c = _counts(rep)
    mark, style = _MARK["ok" if rep.ok else "unmet"]
    fd = f"{c['fd_ok']}/{c['fd']}" if c["fd"] else "—"
    line = Text()
    line.append(f"{mark} ", style=style)
    line.append(f"{rep.name:<{NAME_WIDTH}}", style="bold" if not rep.ok else "")
    line.append(f"{rep.parameters:>7,}{c['passed']:>8}{c['caught']:>8}")
    line.append(f"{c['unmet']:>9}", style="red bold" if c["unmet"] else "")
    line.append(f"{fd:>7}", style="yellow" if c["fd_ok"] < c["fd"] else "")
    line.append(f"{rep.seconds:>6.2f} s")
    return line


def _strip_crumb(message: str, case: str, dtype: str) -> str:
    """``"case › W2[2, :] › float64: scaled by 2 (…)"`` -> ``"W2[2, :]: scaled by 2 (…)"``."""
    head, sep, text = message.partition(": ")
    parts = head.split(" › ")
    if sep and len(parts) >= 3 and parts[0] == case and parts[-1] == dtype:
        return f"{' › '.join(parts[1:-1])}: {text}"
    return message


def diagnosis_text(r) -> list[str]:
    """The bug shape of every failing variable of a grade, without the ``case › … › dtype`` crumb."""
    g = r.grade
    return [_strip_crumb(d.message, r.case, r.dtype) for d in (getattr(g, "diagnosis", ()) or ())]


def _ulps_key(e) -> float:
    u = e.ulps
    return math.inf if u != u else u


def _entry_text(e) -> str:
    return (f"{e.variable}{fmt_index(e.index)}: truth {_fmt(e.truth, '.8g')}, got {_fmt(e.value, '.8g')} "
            f"(err {_fmt(e.abs_error, '.1e')} > tol {_fmt(e.tolerance, '.1e')})")


def _worst_entries(r, k: int | None) -> list[str]:
    wrong = getattr(r.grade, "wrong", ()) or ()
    if not wrong:
        return []
    picked = list(wrong) if k is None or len(wrong) <= k else heapq.nlargest(k, wrong, key=_ulps_key)
    if k is not None:
        picked.sort(key=_ulps_key, reverse=True)
    lines = [_entry_text(e) for e in picked]
    rest = len(wrong) - len(picked)
    if rest:
        lines.append(f"… and {plural(rest, 'more wrong entry', 'more wrong entries')} "
                     f"({'-v lists them' if k is not None and k < VERBOSE_ENTRIES else '--json has every one'})")
    return lines


def fd_split_text(r) -> str:
    """``"truncation dominates (T 4.4e-01, S 4.9e-06, R 4.7e-05)"`` from the result's exact split."""
    split = (r.extra or {}).get("split") if r.kind != "code" else None
    if not split:
        return ""
    parts = {k: split.get(k) for k in ("truncation", "step", "roundoff")}
    finite = {k: float(v) for k, v in parts.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    if not finite:
        return ""
    top = max(finite, key=finite.get)
    names = {"truncation": "truncation", "step": "step", "roundoff": "round-off"}
    return (f"{names[top]} dominates (‖T‖ {_fmt(parts['truncation'], '.1e')}, "
            f"‖S‖ {_fmt(parts['step'], '.1e')}, ‖R‖ {_fmt(parts['roundoff'], '.1e')})")


def _fd_reach(r) -> str:
    """What an informational finite difference reached, against what its scheme can reach."""
    errors = getattr(r.grade, "errors", None)
    rel = getattr(errors, "normwise_relative", math.nan)
    tol = (r.extra or {}).get("tolerance")
    if r.verdict == "nonfinite":
        return "non-finite estimate"
    if r.verdict == "no estimate":
        return _strip_crumb(r.message, r.case, r.dtype).split(": ", 1)[-1].split("; use a smaller step")[0]
    if r.verdict == "error":
        return r.message or "could not be computed"
    if tol is None:
        return f"normwise relative error {_fmt(rel)}"
    rel_word = "within" if r.verdict == "pass" else "beyond"
    return f"normwise relative error {_fmt(rel)}, {rel_word} the {_fmt(tol, '.1e')} the scheme can reach"


def _expectation_text(r) -> str:
    if r.verdict == "pass" and r.expect == "fail":
        ulps = getattr(getattr(r.grade, "errors", None), "max_ulps", None)
        return (f"expected fail, got pass: every entry is within tolerance (max {_fmt(ulps, '.3g')} ulps), so the "
                "bug was not caught (or the candidate is correct and its expectation is wrong)")
    if r.verdict == "error":
        return f"expected {r.expect}, but it could not be graded"
    if r.verdict == "not exercised":
        wider = getattr(r.grade, "returned_dtype", None) or "a wider type"
        return (f"expected {r.expect}, got not exercised: it returned {wider} for {r.dtype} inputs, so {r.dtype} "
                "never ran (add allow_upcast = true to the candidate if that is intended)")
    return f"expected {r.expect}, got {r.verdict}"


def _second_order_lines(r) -> list[str]:
    """Hessian / HVP results: the kind, the seeded direction, symmetry, second-order bug shapes, kinks."""
    from verigrad.report.second import second_order_lines

    return [_strip_crumb(line, r.case, r.dtype) for line in second_order_lines(r.extra)]


def _unmet_block(r, *, verbose: bool) -> list:
    """The short block of one unmet expectation (longer with ``-v``)."""
    out: list = [Para(f"✗ {result_label(r)}: {_expectation_text(r)}", indent=2, hang=4, style="red bold")]
    body: list[str] = []
    g = r.grade
    if r.verdict == "error" or g is None:
        if r.message:
            body.append(r.message)
    else:
        body.extend(_strip_crumb(w, r.case, r.dtype) for w in getattr(g, "warnings", ()) or ())
        body.extend(_second_order_lines(r))
        body.extend(diagnosis_text(r))
        if r.kind != "code":
            body.append(_fd_reach(r))
            split = fd_split_text(r)
            if split:
                body.append(split)
        body.extend(_worst_entries(r, VERBOSE_ENTRIES if verbose else WORST_ENTRIES))
    if r.stdout:
        n = len(r.stdout.splitlines())
        body.append(f"the candidate printed {plural(n, 'line')}" + (":" if verbose else " (-v shows them)"))
        if verbose:
            body.extend("| " + line for line in r.stdout.splitlines()[:200])
    out.extend(Para(line, indent=4, hang=6) for line in body)
    return out


def _fd_note(r) -> list:
    """An informational finite difference that did not reach what its scheme can: one short note."""
    text = f"! {result_label(r)}: {_fd_reach(r)}"
    split = fd_split_text(r)
    if split:
        text += f"; {split}"
    return [Para(text, indent=2, hang=4, style="yellow")]


def _loss_code_notes(rep, *, verbose: bool) -> list:
    out = []
    for dt, lc in (rep.loss_code or {}).items():
        if "error_message" in lc:
            out.append(Para(f"! {rep.name} › loss_code › {dt}: {lc['error_message']}", indent=2, hang=6,
                            style="red"))
        elif lc.get("verdict") in ("fail", "nonfinite"):
            # the declared loss is not what the user's forward pass computes: the case fails
            out.append(Para(f"✗ {lc['message']}", indent=2, hang=4, style="red bold"))
        elif verbose or lc.get("ulps", 0) > 64:
            warn = lc.get("ulps", 0) > 64
            out.append(Para(f"{'! ' if warn else ''}{rep.name} › loss_code › {dt}: {lc['value']:.9g}, "
                            f"{lc['ulps']:.3g} ulps from the exact loss", indent=2, hang=6,
                            style="yellow" if warn else "dim"))
    return out


def _classic_text(r) -> str:
    classic = (r.extra or {}).get("classic")
    if not classic:
        return ""
    cov = classic.get("coverage") or {}
    where = (f", on {cov['coordinates']:,} of {cov['of']:,} coordinates and "
             f"{plural(cov['directions'], 'random direction')}, seed {cov['seed']}"
             if cov.get("mode") == "sample" else "")
    return (f"the classic check (central, eps={classic['eps']:g}{where}: relative difference "
            f"{classic['relative_difference']:.1e} vs {classic['threshold']:g}) would say "
            f"{'pass' if classic['classic_pass'] else 'fail'}: "
            + ("not comparable: it differenced loss_code, which is not the declared loss"
               if classic["outcome"] == "other loss" else classic["outcome"]))


def grade_table(rep) -> Table:
    """Every grade of a case (``-v``): candidate, dtype, verdict, max ulps, norm-wise error, expectation.

    The dtype, verdict and figures never wrap; a long candidate name folds inside its column.
    """
    from rich import box

    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, expand=False, show_edge=False)
    t.add_column("candidate", overflow="fold", min_width=12)
    t.add_column("dtype", no_wrap=True, min_width=7)
    t.add_column("verdict", no_wrap=True)
    t.add_column("max ulps", justify="right", no_wrap=True)
    t.add_column("rel err", justify="right", no_wrap=True)
    t.add_column("expect", no_wrap=True)
    style = {"pass": "green", "fail": "red", "nonfinite": "magenta", "error": "red bold",
             "not exercised": "yellow", "no estimate": "yellow", "unresolved": "yellow"}
    for r in rep.results:
        errors = getattr(r.grade, "errors", None)
        name = r.candidate if r.kind == "code" else f"{r.scheme} h={_fmt(r.step, '.1e')}"
        exp = {True: "✓ " + (r.expect or ""), False: "✗ " + (r.expect or ""), None: "info"}[r.met]
        t.add_row(name, r.dtype, Text(r.verdict, style=style.get(r.verdict, "")),
                  _fmt(getattr(errors, "max_ulps", None), ".3g"),
                  _fmt(getattr(errors, "normwise_relative", None)),
                  Text(exp, style="green" if r.met else ("red" if r.met is False else "dim")))
    return t


def _verbose_details(r) -> list:
    """Everything about one met or informational result (``-v``)."""
    lines: list[str] = []
    g = r.grade
    if g is not None and r.kind == "code":
        lines.extend(_strip_crumb(w, r.case, r.dtype) for w in getattr(g, "warnings", ()) or ())
        lines.extend(_second_order_lines(r))
        lines.extend(diagnosis_text(r))
        lines.extend(_worst_entries(r, VERBOSE_ENTRIES))
        # detection power: tolerance / scale per variable (an error of that fraction of its largest entry)
        power = [f"{v.detection_threshold:.1e} ({v.variable})" for v in getattr(g, "variables", ()) or ()
                 if math.isfinite(getattr(v, "detection_threshold", math.nan))]
        if power:
            lines.append(f"would catch relative errors above {', '.join(power)} here")
    elif g is None and r.message:
        lines.append(r.message)
    if r.kind != "code":
        # a finite difference is never exact: its wrong entries say nothing a reader needs; its split does
        lines.append(_fd_reach(r))
        split = fd_split_text(r)
        if split:
            lines.append(split)
        lines.extend((r.extra or {}).get("kinks") or [])
    classic = _classic_text(r)
    if classic:
        lines.append(classic)
    if not lines:
        return []
    return [Para(result_label(r), indent=2, hang=6, style="bold"),
            *(Para(line, indent=4, hang=6, style="dim") for line in lines)]


def case_details(rep, *, verbose: bool = False, quiet: bool = False):
    """One case: its line, then what needs a reader (see the module docstring)."""
    from rich.console import Group

    parts: list = [case_line(rep)]
    if rep.error:
        parts.append(Para(rep.error, indent=4, hang=6, style="red"))
        return Group(*parts)
    if verbose and rep.results:
        parts.append(grade_table(rep))
    for r in rep.results:
        if r.met is False:
            parts.extend(_unmet_block(r, verbose=verbose))
        elif verbose:
            parts.extend(_verbose_details(r))
        elif not quiet and r.kind != "code" and r.verdict != "pass":
            parts.extend(_fd_note(r))
    if not quiet:
        parts.extend(_skipped_notes(rep))
        parts.extend(Para(f"- unresolved: {r.message or result_label(r)}", indent=2, hang=4, style="yellow")
                     for r in rep.results if r.verdict == "unresolved" and not verbose)
    if not quiet or not rep.ok:
        parts.extend(_loss_code_notes(rep, verbose=verbose))
    return Group(*parts)


def _skipped_notes(rep) -> list:
    """One line per reason candidates were skipped (a framework not installed: docs/frameworks.md)."""
    by_reason: dict[str, list[str]] = {}
    for r in rep.results:
        if r.verdict == "skipped":
            reason = r.message.split("skipped: ", 1)[-1].split(" (", 1)[0]  # "torch is not installed: pip ..."
            by_reason.setdefault(reason, []).append(r.candidate)
    return [Para(f"- skipped {plural(len(dict.fromkeys(names)), 'candidate')} "
                 f"({', '.join(dict.fromkeys(names))}): {reason}", indent=2, hang=4, style="yellow")
            for reason, names in by_reason.items()]


def _classic_counts(run) -> dict:
    counts = {"false alarm": 0, "missed bug": 0, "agree": 0}
    for r in run.results:
        classic = (r.extra or {}).get("classic")
        if classic and classic.get("outcome") in counts:
            counts[classic["outcome"]] += 1
    return counts


def run_summary(run, *, quiet: bool = False):
    """The closing lines: OK / FAILED / INTERRUPTED with the counts, and what the classic check would have said."""
    from rich.console import Group

    s = run.summary()
    style = "green bold" if s["ok"] else "red bold"
    head = "INTERRUPTED" if s.get("interrupted") else ("OK" if s["ok"] else "FAILED")
    words = (f"{head}  {plural(s['cases'], 'case')}: {plural(s['expectations_met'], 'expectation')} met, "
             f"{s['expectations_not_met']:,} not met"
             + (f", {s['informational']:,} informational" if s["informational"] else "")
             + (f", {plural(s['case_errors'], 'case error')}" if s["case_errors"] else "")
             + (f", {plural(s['loss_code_mismatches'], 'loss_code mismatch', 'loss_code mismatches')}"
                if s.get("loss_code_mismatches") else "")
             + f" ({run.seconds:.1f} s)")
    parts: list = [Para(words, indent=0, hang=4, style=style)]
    classic = _classic_counts(run)
    if not quiet and sum(classic.values()):
        parts.append(Para(f"the classic check (central differences, eps = 1e-7, threshold 2e-7) on the same "
                          f"candidates: {plural(classic['false alarm'], 'false alarm')}, "
                          f"{plural(classic['missed bug'], 'missed bug')} (-v: each one)",
                          indent=0, hang=4, style="dim"))
    return Group(*parts)


def lines_of(renderable, *, width: int = 80) -> list[str]:
    """The plain lines a renderable shows at ``width`` without colour (as in a CI log), right-stripped."""
    from rich.console import Console

    console = Console(width=width, no_color=True, force_terminal=False, highlight=False, color_system=None)
    lines = console.render_lines(renderable, console.options.update(width=width), pad=False)
    return ["".join(seg.text for seg in line).rstrip() for line in lines]
