"""``verigrad truth CASE``: the loss and the certified exact gradient at each dtype's point."""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "command"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("case", help="a case file (.toml)")
    p.add_argument("--dtype", action="append", choices=["float16", "bfloat16", "float32", "float64"],
                   help="dtype whose representable point is used (repeatable; default both)")
    p.add_argument("--digits", type=int, default=None, help="certified significant digits (default 24)")
    p.add_argument("--json", metavar="FILE", help="also write the truth as JSON (docs/report-schema.md)")
    p.add_argument("--hessian", action="store_true",
                   help="also certify the exact Hessian (small cases: N certified Hessian-vector products; "
                        "docs/second-order.md)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print every entry (by default a large gradient is summarised; JSON has every entry)")


def command(args, console, err) -> int:
    """Certify and print the truth per dtype; write JSON on request; exit code 0."""
    from verigrad import __version__
    from verigrad.casefile.loader import load_case, point_in_dtype
    from verigrad.engine.model import compile_case
    from verigrad.engine.truth import certify
    from verigrad.errors import UsageError
    from verigrad.report.jsonio import SCHEMA_VERSION, Lazy, iterdumps, truth_record, write_atomic_stream
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
    truths = []
    hessians: dict = {}
    for dt in dtypes:
        truth = certify(model, point_in_dtype(model.point, dt), dt, digits=digits)
        console.print(truth_table(model, truth, verbose=args.verbose), soft_wrap=True)
        if args.json:
            truths.append(truth)
        if args.hessian:
            hessians[dt.value] = _print_hessian(model, point_in_dtype(model.point, dt), dt, digits, console,
                                                verbose=args.verbose)
    if args.json:
        # every entry as a decimal string, built only when asked for, and streamed to the file: the first
        # record (also the top level) is held, the others are built when the writer reaches them
        first = truth_record(truths[0])
        by_dtype = {first["dtype"]: first}
        by_dtype.update({t.dtype.value: Lazy(lambda t=t: truth_record(t)) for t in truths[1:]})
        doc = {"verigrad": __version__, "schema_version": SCHEMA_VERSION, **first,
               "seed": case.seed, "rng": case.rng.value, "by_dtype": by_dtype}
        if hessians:
            doc["hessian"] = hessians  # by dtype (docs/second-order.md)
        write_atomic_stream(args.json, _with_newline(iterdumps(doc)))
    return 0


def _with_newline(pieces):
    yield from pieces
    yield "\n"


def _print_hessian(model, point, dtype, digits: int, console, *, verbose: bool) -> dict:
    """Certify the exact Hessian at the dtype's point, print it, return its JSON record."""
    from verigrad.engine.hessian import certify_hessian
    from verigrad.report.second import hessian_lines, hessian_record

    from verigrad.runner.second import kink_note

    ht = certify_hessian(model, point, dtype, digits=digits)
    notes, _on = kink_note(model, point)
    for line in hessian_lines(ht, verbose=verbose) + notes:
        console.print(line, soft_wrap=True, highlight=False, markup=False)
    rec = hessian_record(ht)
    rec["kinks"] = notes
    return rec
