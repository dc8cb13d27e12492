"""``verigrad study``: argument handling around :func:`verigrad.studies.run_study` (CLI layer)."""

from __future__ import annotations

import math

import numpy as np

from verigrad.runner.candidates import loss_code_evaluator
from verigrad.casefile.loader import load_case
from verigrad.errors import UsageError
from verigrad.engine.model import compile_case
from verigrad.schemes import SCHEME_NAMES, StepMode, get_scheme
from verigrad.spec import Dtype
from verigrad.studies import coordinate_direction, non_analytic_sites, random_direction, run_study

__all__ = ["run_study_command", "parse_steps"]

DEFAULT_SCHEMES = ("forward", "central", "central4", "complex-step")


def parse_steps(text: str) -> np.ndarray:
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
    return np.logspace(math.log10(lo), math.log10(hi), count)


def run_study_command(args, console, err) -> int:
    from verigrad import __version__
    from verigrad.report.jsonio import dumps, write_atomic
    from verigrad.report.studyreport import loss_code_line, study_document, study_table

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
