"""The command line: the only module that reads argv, prints, or exits.

Exit codes (docs/errors.md):

* 0 - success; for ``run``, every expectation held;
* 1 - ``run``: some expectation did not hold (a "pass" candidate failed, a
  "fail" candidate passed, or a candidate could not be run);
* 2 - bad input or usage: an invalid case file, an undefined loss at the point,
  an uncertifiable truth, a wrong option (one clear message, no traceback);
* 130 - interrupted (Ctrl-C); reports of finished work are still written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from verigrad import __version__
from verigrad.errors import UsageError, VerigradError

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

_EPILOGS = {
    "truth": "examples:\n  verigrad truth cases/logistic-regression-l2.toml\n"
             "  verigrad truth cases/gradient-checking-3layer.toml --dtype float32 --digits 30 --json truth.json",
    "show": "examples:\n  verigrad show cases/gradient-checking-3layer.toml\n  verigrad show cases/squire-trapp.toml --latex",
    "run": "examples:\n  verigrad run cases/\n  verigrad run cases/gradient-checking-3layer.toml --json report.json --junit junit.xml\n"
           "  verigrad run cases/ -q --html report.html --jobs 2",
    "study": "examples:\n  verigrad study cases/squire-trapp.toml\n"
             "  verigrad study cases/gradient-checking-3layer.toml --variable W1 --index 1,2 --scheme central --scheme forward "
             "--steps 1e-12:1e-1:30 --plot v.png --json v.json",
    "new": "examples:\n  verigrad new my-loss            # writes my-loss.toml and impl/my_loss.py",
}


def _console(args):
    from rich.console import Console

    no_color = getattr(args, "no_color", False)
    return Console(no_color=no_color, highlight=False, soft_wrap=False,
                   force_terminal=None if not no_color else False)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="verigrad",
        description="Grade gradients against the exact, certified gradient of a symbolically declared loss.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands: truth, show, run, study, new; `verigrad COMMAND --help` for each.\n"
               "exit codes: 0 ok, 1 an expectation did not hold, 2 bad input or usage, 130 interrupted",
    )
    p.add_argument("--version", action="version", version=f"verigrad {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help, epilog=_EPILOGS.get(name),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        sp.add_argument("--no-color", action="store_true", help="no colour codes (also when not a terminal)")
        return sp

    t = add("truth", "Print the loss and the certified exact gradient at each dtype's point.")
    t.add_argument("case", help="a case file (.toml)")
    t.add_argument("--dtype", action="append", choices=["float32", "float64"],
                   help="dtype whose representable point is used (repeatable; default both)")
    t.add_argument("--digits", type=int, default=None, help="certified significant digits (default 24)")
    t.add_argument("--json", metavar="FILE", help="also write the truth as JSON (docs/report-schema.md)")

    s = add("show", "Print the loss and its symbolic gradient.")
    s.add_argument("case", help="a case file (.toml)")
    s.add_argument("--latex", action="store_true", help="LaTeX instead of text")

    from verigrad.runner.case import add_run_arguments, add_study_arguments

    add_run_arguments(add("run", "Grade every candidate of every case, at float32 and float64."))
    add_study_arguments(add("study", "Sweep finite-difference steps: error split into truncation, step and round-off."))

    n = add("new", "Scaffold a commented case file and a candidate stub.")
    n.add_argument("name", help="case name (letters, digits, -)")
    n.add_argument("--dir", default=".", help="directory to write into (default: .)")
    n.add_argument("--force", action="store_true", help="overwrite existing files")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    console = _console(args)
    err = _err_console(args)
    try:
        if args.command == "truth":
            return _cmd_truth(args, console)
        if args.command == "show":
            return _cmd_show(args, console)
        if args.command == "run":
            from verigrad.runner.case import cmd_run

            return cmd_run(args, console, err)
        if args.command == "study":
            from verigrad.runner.case import cmd_study

            return cmd_study(args, console, err)
        if args.command == "new":
            from verigrad.casefile.scaffold import cmd_new

            return cmd_new(args, console)
    except VerigradError as exc:
        err.print(f"verigrad: error: {exc}", markup=False)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("verigrad: interrupted", markup=False)
        return EXIT_INTERRUPTED
    raise UsageError(f"unknown command {args.command}")  # pragma: no cover - argparse prevents it


def _err_console(args):
    from rich.console import Console

    return Console(stderr=True, no_color=getattr(args, "no_color", False), highlight=False, soft_wrap=True)


def _cmd_truth(args, console) -> int:
    from verigrad.casefile.loader import load_case, point_in_dtype
    from verigrad.engine.model import compile_case
    from verigrad.report.jsonio import SCHEMA_VERSION, dumps, truth_record, write_atomic
    from verigrad.report.terminal import truth_table
    from verigrad.spec import Dtype
    from verigrad.engine.truth import certify

    case = load_case(args.case)
    digits = args.digits if args.digits is not None else case.check.digits
    if not 1 <= digits <= 1000:
        raise UsageError(f"--digits={digits} is out of range; use 1 to 1000")
    dtypes = [Dtype(d) for d in dict.fromkeys(args.dtype or ["float32", "float64"])]
    model = compile_case(case)
    records = []
    for dt in dtypes:
        truth = certify(model, point_in_dtype(model.point, dt), dt, digits=digits)
        console.print(truth_table(model, truth))
        records.append(truth_record(truth))
    if args.json:
        doc = {"verigrad": __version__, "schema_version": SCHEMA_VERSION, **records[0],
               "seed": case.seed, "rng": case.rng.value, "by_dtype": {r["dtype"]: r for r in records}}
        write_atomic(args.json, dumps(doc))
    return EXIT_OK


def _cmd_show(args, console) -> int:
    from verigrad.casefile.loader import load_case
    from verigrad.engine.model import compile_case
    from verigrad.report.terminal import show_text

    model = compile_case(load_case(args.case))
    console.print(show_text(model, latex=args.latex), markup=False, highlight=False)
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
