"""``verigrad study``: a finite-difference sweep over steps, split into truncation, step and round-off."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from verigrad.errors import UsageError

__all__ = ["add_arguments", "command", "parse_steps"]

DEFAULT_SCHEMES = ("forward", "central", "central4", "complex-step")
#: the schemes of --one-sided: each tends to one one-sided derivative at a kink
ONE_SIDED_SCHEMES = ("forward", "backward", "forward2", "stencil(offsets=[-2, -1, 0])")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("case", help="a case file (.toml)")
    p.add_argument("--dtype", action="append", choices=["float16", "bfloat16", "float32", "float64"],
                   help="repeatable (default float32 and float64)")
    p.add_argument("--scheme", action="append", help="finite-difference scheme, repeatable (default: forward, "
                   "central, central4, complex-step when analytic); any scheme string: \"central(deriv=2)\", "
                   "\"stencil(offsets=[-2,-1,0,1,2])\", \"richardson(base=central, terms=3)\", \"ridders(h0=0.1)\", "
                   "\"numderiv()\" (verigrad scheme SPEC prints one)")
    p.add_argument("--variable", help="variable to perturb (default: the first)")
    p.add_argument("--index", help="entry of the variable, e.g. 1,2 (default: the first entry)")
    from verigrad.cli.directions import add_direction_arguments

    add_direction_arguments(p)
    p.add_argument("--one-sided", action="store_true", help="the certified one-sided derivatives d+ and d- along "
                   "the direction, and one-sided schemes measured against each (default: forward, backward, "
                   "forward2 and its mirror)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random direction (default 0)")
    p.add_argument("--steps", help="FROM:TO:COUNT (log-spaced, both ends included; a decade grid such as "
                   "1e-9:1e-1:9 gives exactly 1e-9, 1e-8, ...) or a list 1e-3,1e-5 (default: per dtype)")
    p.add_argument("--step-mode", choices=["absolute", "relative"], default="absolute",
                   help="absolute h, or h*max(1,|x_i|) (default absolute)")
    p.add_argument("--representable", action="store_true", help="use (x+h)-x so that the step error S vanishes")
    p.add_argument("--plot", metavar="FILE", help="write the error-vs-step figure (.png, .svg, .pdf)")
    p.add_argument("--json", metavar="FILE", help="write the study as JSON (docs/report-schema.md)")
    p.add_argument("--html", metavar="FILE", help="write the study as a self-contained HTML page with its figure")
    p.add_argument("-v", "--verbose", action="store_true", help="also print every step (E, T, S, R)")
    p.add_argument("--second-order", action="store_true", help="sweep a second-order scheme for one Hessian entry "
                   "(--entry I,J) or HVP entry (--hvp --entry I): --scheme second3, mixed4, grad-central, "
                   "richardson(...) (docs/second-order.md)")
    p.add_argument("--entry", help="with --second-order: the Hessian entry I,J (flattened indices or labels such "
                   "as w[0],b; default 0,0), or I with --hvp")
    p.add_argument("--hvp", action="store_true", help="with --second-order: an entry of H v along the case's "
                   "seeded HVP direction (central differences of the gradient)")


#: at most this many steps in one sweep
MAX_STEPS = 10_000


def _decimal(text: str, what: str, whole: str):
    """A positive finite step typed by the user, as an exact :class:`decimal.Decimal`."""
    from decimal import Decimal, InvalidOperation

    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise UsageError(f"--steps {whole!r}: {what} {text.strip()!r} is not a number; "
                         f"use e.g. 1e-12:1e-1:30 or 1e-3,1e-5") from None
    if not value.is_finite() or value <= 0:
        raise UsageError(f"--steps {whole!r}: {what} {text.strip()!r} must be a finite step > 0")
    return value


def parse_steps(text: str):
    """The nominal steps of ``--steps``, ascending, each exactly the decimal the user means.

    Two forms:

    * an explicit list ``1e-3,1e-5,1e-7``: those steps (in any order; sorted ascending;
      a step given twice is refused);
    * a grid ``FROM:TO:COUNT``: COUNT log-spaced steps, both ends included.  Every step that
      is a *decimal* point of the grid is that decimal, rounded once to float64: when FROM
      and TO have the same significand (``1e-9`` and ``1e-1``; ``2e-3`` and ``2e-1``), the
      k-th step's exponent is ``a + k (b - a) / (COUNT - 1)`` for FROM = m·10^a and
      TO = m·10^b, and where that is an integer the step is ``float("m e{exponent}")`` —
      ``1e-9:1e-1:9`` gives exactly 1e-9, 1e-8, ..., 1e-1 (``numpy.logspace`` gives
      9.999999999999999e-06 for 1e-5).  The other steps (e.g. the half decades of
      ``1e-12:1e-1:23``) are ``10 ** (log10 FROM + k (log10 TO - log10 FROM) / (COUNT - 1))``.
      FROM and TO are always exactly the typed decimals.

    Examples
    --------
    >>> [float(h) for h in parse_steps("1e-9:1e-1:9")][4]
    1e-05
    >>> [float(h) for h in parse_steps("1e-5, 1e-3")]
    [1e-05, 0.001]
    """
    import numpy as np

    text = text.strip()
    if ":" not in text:
        items = [t for t in text.split(",")]
        if any(not t.strip() for t in items):
            raise UsageError(f"--steps {text!r}: an empty step in the list; use e.g. 1e-3,1e-5,1e-7")
        values = sorted((_decimal(t, "step", text) for t in items))
        for a, b in zip(values, values[1:]):
            if a == b:
                raise UsageError(f"--steps {text!r}: the step {a} is given twice")
        if len(values) > MAX_STEPS:
            raise UsageError(f"--steps {text!r}: {len(values)} steps; at most {MAX_STEPS}")
        return np.array([float(v) for v in values], dtype=np.float64)
    parts = text.split(":")
    if len(parts) != 3:
        raise UsageError(f"--steps {text!r} must be FROM:TO:COUNT (e.g. 1e-12:1e-1:30) or a list (e.g. 1e-3,1e-5)")
    lo, hi = _decimal(parts[0], "FROM", text), _decimal(parts[1], "TO", text)
    try:
        count = int(parts[2])
    except ValueError:
        raise UsageError(f"--steps {text!r}: COUNT {parts[2].strip()!r} must be a whole number, e.g. 30") from None
    if not (lo < hi) or not 2 <= count <= MAX_STEPS:
        raise UsageError(f"--steps {text!r}: need 0 < FROM < TO and 2 <= COUNT <= {MAX_STEPS}")
    steps = np.logspace(math.log10(lo), math.log10(hi), count)
    (sig_lo, exp_lo), (sig_hi, exp_hi) = _significand(lo), _significand(hi)
    if sig_lo == sig_hi:
        from decimal import Decimal
        from fractions import Fraction

        for k in range(count):
            exponent = Fraction(exp_lo) + Fraction((exp_hi - exp_lo) * k, count - 1)
            if exponent.denominator == 1:
                steps[k] = float(Decimal((0, sig_lo, int(exponent))))
    steps[0], steps[-1] = float(lo), float(hi)
    return steps


def _significand(value) -> tuple[tuple[int, ...], int]:
    """``Decimal("2.50e-3")`` -> ``((2, 5), -4)``: the digits without trailing zeros, and the exponent."""
    t = value.normalize().as_tuple()
    return tuple(t.digits), int(t.exponent)


def command(args, console, err) -> int:
    """Sweep the schemes over steps for ``args.case``; print a table per study, write plot/JSON/HTML."""
    if getattr(args, "second_order", False):
        from verigrad.cli.secondstudy import command as second_command

        return second_command(args, console, err, steps=parse_steps(args.steps) if args.steps else None)
    if getattr(args, "entry", None) or getattr(args, "hvp", False):
        raise UsageError("--entry and --hvp choose a second-order entry", hint="add --second-order")
    from verigrad import __version__
    from verigrad.casefile.loader import load_case
    from verigrad.engine.model import compile_case
    from verigrad.runner.candidates import loss_code_evaluator
    from verigrad.schemes import StepMode, get_scheme
    from verigrad.spec import Dtype
    from verigrad.fd import non_analytic_sites
    from verigrad.studies import run_study
    from verigrad.report.jsonio import dumps, write_atomic
    from verigrad.report.plots import FIGURE_FORMATS
    from verigrad.report.studyreport import loss_code_line, study_document, study_summary, study_table

    from verigrad.cli.paths import check_output_paths

    check_output_paths(args, ("json", "html", "plot"))
    if args.plot and Path(args.plot).suffix.lower().lstrip(".") not in FIGURE_FORMATS:
        raise UsageError(f"--plot {args.plot}: the figure format is chosen by the suffix; use "
                         + ", ".join(f".{f}" for f in FIGURE_FORMATS), hint=f"e.g. --plot {Path(args.plot).stem}.png")
    case = load_case(args.case)
    model = compile_case(case)
    dtypes = [Dtype(d) for d in dict.fromkeys(args.dtype or ["float32", "float64"])]
    if args.scheme:
        for s in args.scheme:
            try:
                get_scheme(s)  # raises with the list of valid names
            except ValueError as exc:
                raise UsageError(f"--scheme: {exc}") from None
        schemes = list(dict.fromkeys(args.scheme))
    elif args.one_sided:
        schemes = list(ONE_SIDED_SCHEMES)
    else:
        schemes = [s for s in DEFAULT_SCHEMES if s != "complex-step" or not non_analytic_sites(model)]
    from verigrad.cli.directions import resolve_direction

    direction = resolve_direction(args, model, case)
    if args.one_sided:
        from verigrad.casefile.loader import point_in_dtype
        from verigrad.engine.truth import format_mp
        from verigrad.kinks.onesided import directional_one_sided

        for dt in dtypes:
            plus, minus = directional_one_sided(model, point_in_dtype(model.point, dt), direction)
            console.print(f"{case.name} › {direction.label} › {dt.value}: one-sided derivatives "
                          f"d- = {format_mp(minus, 20)}, d+ = {format_mp(plus, 20)}"
                          + (" (equal: no kink along the direction)" if plus == minus else ""),
                          markup=False, highlight=False, soft_wrap=True)
    steps = parse_steps(args.steps) if args.steps else None
    mode = StepMode(args.step_mode)
    loss_values = loss_code_evaluator(case) if case.loss_code is not None else None
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from verigrad.report.adaptivereport import adaptive_document, adaptive_summary, adaptive_table
    from verigrad.schemes import Scheme
    from verigrad.studies.adaptive import run_adaptive_study

    studies, adaptive = [], []
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        TimeElapsedColumn(), console=err, transient=True, disable=not console.is_terminal)
    with progress:
        task = progress.add_task("study", total=len(dtypes) * len(schemes))
        for dt in dtypes:
            for name in schemes:
                progress.update(task, description=f"{case.name} › {dt.value} › {name}")
                if dt.half and name == "complex-step" and not args.scheme:
                    progress.advance(task)  # the default list: no complex step in half precision (Dtype.complex)
                    continue
                if not isinstance(get_scheme(name), Scheme):  # Ridders, numDeriv: a sweep of first steps
                    adaptive.append(run_adaptive_study(model, dtype=dt, method=get_scheme(name), direction=direction,
                                                       steps=steps, step_mode=mode, loss_values=loss_values))
                    progress.advance(task)
                    if args.verbose:
                        console.print(adaptive_table(adaptive[-1]))
                    console.print(adaptive_summary(adaptive[-1]), markup=False, highlight=False, soft_wrap=True)
                    continue
                st = run_study(model, dtype=dt, scheme=name, direction=direction, steps=steps, step_mode=mode,
                               representable=args.representable, loss_values=loss_values)
                studies.append(st)
                progress.advance(task)
                if args.verbose:
                    console.print(study_table(st))
                console.print(study_summary(st))
    if loss_values is not None:
        from verigrad.casefile.loader import point_in_dtype
        from verigrad.runner.case import grade_loss_code
        from verigrad.engine.truth import certify

        records = [grade_loss_code(model, certify(model, point_in_dtype(model.point, dt), dt, digits=20))
                   for dt in dtypes]
        console.print(loss_code_line(str(case.loss_code), records))
    if args.plot and studies:
        from verigrad.report.studyplot import study_figure

        study_figure(studies, args.plot)
        console.print(f"figure written to {args.plot}")
    if adaptive and (args.plot or args.html):
        console.print("note: the figure and the HTML page show the linear schemes; Ridders and numDeriv sweeps "
                      "are in the printed tables and in --json")
    if not studies:  # only Ridders / numDeriv: their JSON document; no figure or HTML page to draw
        if args.json:
            write_atomic(args.json, dumps(adaptive_document(adaptive, version=__version__)))
    elif args.json or args.html:
        doc = study_document(studies, version=__version__)
        if adaptive:
            doc["adaptive_studies"] = adaptive_document(adaptive, version=__version__)["adaptive_studies"]
        if args.json:
            write_atomic(args.json, dumps(doc))
        if args.html:
            from verigrad.report.html import study_html

            write_atomic(args.html, study_html(doc, version=__version__))
    return 0
