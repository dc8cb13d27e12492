"""``verigrad study``: a finite-difference sweep over steps, split into truncation, step and round-off."""

from __future__ import annotations

import argparse
import math

from verigrad.errors import UsageError

__all__ = ["add_arguments", "command", "parse_steps"]

DEFAULT_SCHEMES = ("forward", "central", "central4", "complex-step")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("case", help="a case file (.toml)")
    p.add_argument("--dtype", action="append", choices=["float32", "float64"], help="repeatable (default both)")
    p.add_argument("--scheme", action="append", help="finite-difference scheme, repeatable (default: forward, "
                   "central, central4, complex-step when analytic)")
    p.add_argument("--variable", help="variable to perturb (default: the first)")
    p.add_argument("--index", help="entry of the variable, e.g. 1,2 (default: the first entry)")
    p.add_argument("--direction", choices=["random"], help="a seeded random unit direction instead of one entry")
    p.add_argument("--seed", type=int, default=0, help="seed of the random direction (default 0)")
    p.add_argument("--steps", help="FROM:TO:COUNT, log-spaced, both ends included (default: per dtype)")
    p.add_argument("--step-mode", choices=["absolute", "relative"], default="absolute",
                   help="absolute h, or h*max(1,|x_i|) (default absolute)")
    p.add_argument("--representable", action="store_true", help="use (x+h)-x so that the step error S vanishes")
    p.add_argument("--plot", metavar="FILE", help="write the error-vs-step figure (.png, .svg, .pdf)")
    p.add_argument("--json", metavar="FILE", help="write the study as JSON (docs/report-schema.md)")
    p.add_argument("--html", metavar="FILE", help="write the study as a self-contained HTML page with its figure")


def parse_steps(text: str):
    """``FROM:TO:COUNT`` -> COUNT log-spaced steps, both ends included."""
    parts = text.split(":")
    try:
        if len(parts) != 3:
            raise ValueError
        lo, hi, count = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        raise UsageError(f"--steps {text!r} must be FROM:TO:COUNT, e.g. 1e-12:1e-1:30") from None
    if not (0 < lo < hi < math.inf) or not 2 <= count <= 10_000:
        raise UsageError(f"--steps {text!r}: need 0 < FROM < TO and 2 <= COUNT <= 10000")
    import numpy as np

    return np.logspace(math.log10(lo), math.log10(hi), count)


def command(args, console, err) -> int:
    """Sweep the schemes over steps for ``args.case``; print a table per study, write plot/JSON/HTML."""
    from verigrad import __version__
    from verigrad.casefile.loader import load_case
    from verigrad.engine.model import compile_case
    from verigrad.runner.candidates import loss_code_evaluator
    from verigrad.schemes import StepMode, get_scheme
    from verigrad.spec import Dtype
    from verigrad.fd import coordinate_direction, non_analytic_sites, random_direction
    from verigrad.studies import run_study
    from verigrad.report.jsonio import dumps, write_atomic
    from verigrad.report.studyreport import loss_code_line, study_document, study_table

    from verigrad.cli.paths import check_output_paths

    check_output_paths(args, ("json", "html", "plot"))
    case = load_case(args.case)
    model = compile_case(case)
    dtypes = [Dtype(d) for d in dict.fromkeys(args.dtype or ["float32", "float64"])]
    if args.scheme:
        for s in args.scheme:
            get_scheme(s)  # raises with the list of valid names
        schemes = list(dict.fromkeys(args.scheme))
    else:
        schemes = [s for s in DEFAULT_SCHEMES if s != "complex-step" or not non_analytic_sites(model)]
    if args.direction == "random":
        if args.variable or args.index:
            raise UsageError("--direction random cannot be combined with --variable/--index")
        direction = random_direction(model, args.seed)
    else:
        index = None
        if args.index:
            try:
                index = tuple(int(i) for i in args.index.split(","))
            except ValueError:
                raise UsageError(f"--index {args.index!r} must be integers separated by commas, e.g. 1,2") from None
        direction = coordinate_direction(model, args.variable, index)
    steps = parse_steps(args.steps) if args.steps else None
    mode = StepMode(args.step_mode)
    loss_values = loss_code_evaluator(case) if case.loss_code is not None else None
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    studies = []
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        TimeElapsedColumn(), console=err, transient=True, disable=not console.is_terminal)
    with progress:
        task = progress.add_task("study", total=len(dtypes) * len(schemes))
        for dt in dtypes:
            for name in schemes:
                progress.update(task, description=f"{case.name} › {dt.value} › {name}")
                st = run_study(model, dtype=dt, scheme=name, direction=direction, steps=steps, step_mode=mode,
                               representable=args.representable, loss_values=loss_values)
                studies.append(st)
                progress.advance(task)
                console.print(study_table(st))
    if loss_values is not None:
        from verigrad.casefile.loader import point_in_dtype
        from verigrad.runner.case import grade_loss_code
        from verigrad.engine.truth import certify

        records = [grade_loss_code(model, certify(model, point_in_dtype(model.point, dt), dt, digits=20))
                   for dt in dtypes]
        console.print(loss_code_line(str(case.loss_code), records))
    if args.plot:
        from verigrad.report.studyplot import study_figure

        study_figure(studies, args.plot)
        console.print(f"figure written to {args.plot}")
    if args.json or args.html:
        doc = study_document(studies, version=__version__)
        if args.json:
            write_atomic(args.json, dumps(doc))
        if args.html:
            from verigrad.report.html import study_html

            write_atomic(args.html, study_html(doc, version=__version__))
    return 0
