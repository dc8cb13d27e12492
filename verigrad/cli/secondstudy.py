"""``verigrad study CASE --second-order``: step sweeps of second-order finite differences.

One Hessian entry (``--entry I,J``, default the first diagonal entry) or one entry of the HVP
along the case's seeded direction (``--hvp --entry I``), for each scheme (``--scheme second3``,
``mixed4``, ``grad-central``, ``richardson(...)``; default: the loss scheme of the entry and
``grad-central``) and dtype, with the exact T/S/R split per step, the measured and modelled
optimum, a figure (``--plot``) and JSON (``--json``; ``verigrad/schemas/second-study.schema.json``).
"""

from __future__ import annotations

import re
from pathlib import Path

from verigrad.errors import UsageError

__all__ = ["command", "parse_entry", "SECOND_STUDY_SCHEMA_VERSION"]

#: version of the ``second_order`` block of the study document (second-study.schema.json)
SECOND_STUDY_SCHEMA_VERSION = 1

_TOKEN = re.compile(r"\s*(\d+|[A-Za-z_]\w*(?:\s*\[[\d,\s]*\])?)\s*(?:,|$)")


def parse_entry(text: str, model) -> tuple[int, int | None]:
    """``"3,5"``, ``"w[0],b"`` or ``"2"`` -> flattened ``(row, column)`` (column None when one is given).

    Indices are in declaration order, C order within each variable (``verigrad truth --hessian``
    prints the labels).
    """
    from verigrad.engine.hessian import flat_offsets
    from verigrad.studies.second import entry_label

    n = sum(b - a for a, b in flat_offsets(model).values())
    pos, found = 0, []
    t = text.strip()
    while pos < len(t):
        m = _TOKEN.match(t, pos)
        if not m or m.end() == pos:
            raise UsageError(f"--entry {text!r}: expected I,J (flattened indices) or labels such as w[0],b",
                             hint="verigrad truth CASE --hessian prints the labels")
        found.append(m.group(1).replace(" ", ""))
        pos = m.end()
    if not 1 <= len(found) <= 2:
        raise UsageError(f"--entry {text!r}: give one or two entries, e.g. 0,1")
    labels = {entry_label(model, k).replace(" ", ""): k for k in range(n)} if n <= 1_000_000 else {}
    out = []
    for tok in found:
        if tok.isdigit():
            k = int(tok)
            if k >= n:
                raise UsageError(f"--entry {text!r}: index {k} is outside the {n} variable entries (0 … {n - 1})")
        elif tok in labels:
            k = labels[tok]
        else:
            raise UsageError(f"--entry {text!r}: {tok!r} is not a variable entry of {model.case.name}",
                             hint="entries: " + ", ".join(list(labels)[:8]) + (" …" if len(labels) > 8 else ""))
        out.append(k)
    return out[0], (out[1] if len(out) == 2 else None)


def command(args, console, err, *, steps=None) -> int:
    """Run the second-order sweeps of ``args`` (``steps``: the parsed ``--steps``, or None for the default grid);
    print a summary per study, write plot/JSON/HTML."""
    from verigrad import __version__
    from verigrad.casefile.loader import load_case
    from verigrad.cli.paths import check_output_paths
    from verigrad.engine.model import compile_case
    from verigrad.report.jsonio import dumps, write_atomic
    from verigrad.report.plots import FIGURE_FORMATS
    from verigrad.report.studyreport import study_document, study_summary, study_table
    from verigrad.spec import Dtype
    from verigrad.studies.second import resolve_second_scheme, run_second_study, second_target

    check_output_paths(args, ("json", "html", "plot"))
    if args.plot and Path(args.plot).suffix.lower().lstrip(".") not in FIGURE_FORMATS:
        raise UsageError(f"--plot {args.plot}: the figure format is chosen by the suffix; use "
                         + ", ".join(f".{f}" for f in FIGURE_FORMATS))
    for flag in ("one_sided", "representable", "direction", "direction_file", "variable", "index"):
        if getattr(args, flag, None):
            raise UsageError(f"--{flag.replace('_', '-')} is for first-order studies; with --second-order choose "
                             f"the entry with --entry I,J (or --hvp --entry I)")
    if getattr(args, "step_mode", "absolute") != "absolute":
        raise UsageError("--step-mode relative is for first-order studies; second-order steps are absolute (h_p = "
                         "fl_p(h))", hint="scale --steps by |x_i| yourself")
    case = load_case(args.case)
    model = compile_case(case)
    row, col = parse_entry(args.entry, model) if args.entry else (0, None)
    hvp = bool(args.hvp)
    if hvp and col is not None:
        raise UsageError(f"--hvp --entry {args.entry}: an HVP entry is one index (the row of H v), e.g. --entry 0")
    if not hvp and col is None:
        col = row  # a diagonal entry
    diagonal = row == col
    if args.scheme:
        names = list(dict.fromkeys(args.scheme))
    elif hvp:
        names = ["grad-central"]
    else:
        names = ["second3" if diagonal else "mixed4", "grad-central"]
    for s in names:
        resolve_second_scheme(s, diagonal=diagonal)  # raises with the allowed names
    dtypes = [Dtype(d) for d in dict.fromkeys(args.dtype or ["float32", "float64"])]
    studies = []
    for name in names:
        for dt in dtypes:
            target = second_target(model, dt, entry=(row, col), hvp=hvp)
            st = run_second_study(model, dtype=dt, scheme=name, target=target, steps=steps)
            studies.append(st)
            if args.verbose:
                console.print(study_table(st))
            console.print(study_summary(st))
    if args.plot:
        from verigrad.report.studyplot import study_figure

        study_figure(studies, args.plot)
        console.print(f"figure written to {args.plot}")
    if args.json or args.html:
        doc = study_document(studies, version=__version__)
        target = second_target(model, dtypes[0], entry=(row, col), hvp=hvp)
        doc["second_order"] = {
            "schema_version": SECOND_STUDY_SCHEMA_VERSION,
            "entry": target.to_dict(),
            "kind": "hvp" if hvp else "hessian",
            "schemes": [{"scheme": s.scheme.name, "dtype": s.dtype.value, "order": s.scheme.order,
                         "divided_by_power": s.scheme.derivative,
                         "step_exponent": str(s.scheme.second.step_exponent) if s.scheme.second else None}
                        for s in studies],
        }
        if args.json:
            write_atomic(args.json, dumps(doc))
        if args.html:
            from verigrad.report.html import study_html

            write_atomic(args.html, study_html(doc, version=__version__))
    return 0
