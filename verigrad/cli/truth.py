"""``verigrad truth CASE``: the loss and the certified exact gradient at each dtype's point."""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "command"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("case", help="a case file (.toml)")
    p.add_argument("--dtype", action="append", choices=["float32", "float64"],
                   help="dtype whose representable point is used (repeatable; default both)")
    p.add_argument("--digits", type=int, default=None, help="certified significant digits (default 24)")
    p.add_argument("--json", metavar="FILE", help="also write the truth as JSON (docs/report-schema.md)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print every entry (by default a large gradient is summarised; JSON has every entry)")


def command(args, console, err) -> int:
    """Certify and print the truth per dtype; write JSON on request; exit code 0."""
    from verigrad import __version__
    from verigrad.casefile.loader import load_case, point_in_dtype
    from verigrad.engine.model import compile_case
    from verigrad.engine.truth import certify
    from verigrad.errors import UsageError
    from verigrad.report.jsonio import SCHEMA_VERSION, dumps, truth_record, write_atomic
    from verigrad.report.terminal import truth_table
    from verigrad.spec import Dtype

    from verigrad.cli.paths import check_output_paths

    check_output_paths(args, ("json",))
    case = load_case(args.case)
    digits = args.digits if args.digits is not None else case.check.digits
    if not 1 <= digits <= 1000:
        raise UsageError(f"--digits={digits} is out of range; use 1 to 1000")
    dtypes = [Dtype(d) for d in dict.fromkeys(args.dtype or ["float32", "float64"])]
    model = compile_case(case)
    records = []
    for dt in dtypes:
        truth = certify(model, point_in_dtype(model.point, dt), dt, digits=digits)
        console.print(truth_table(model, truth, verbose=args.verbose), soft_wrap=True)
        if args.json:  # every entry as a decimal string: built only when asked for
            records.append(truth_record(truth))
    if args.json:
        doc = {"verigrad": __version__, "schema_version": SCHEMA_VERSION, **records[0],
               "seed": case.seed, "rng": case.rng.value, "by_dtype": {r["dtype"]: r for r in records}}
        write_atomic(args.json, dumps(doc))
    return 0
