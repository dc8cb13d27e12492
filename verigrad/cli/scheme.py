"""``verigrad scheme SPEC``: print a scheme's exact weights and leading truncation term (or a method's tableau)."""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "command"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", nargs="+", help='a scheme string, e.g. central4, "stencil(offsets=[-1, 0, 1], deriv=2)", '
                   '"richardson(base=\\"central\\", terms=3)", "ridders(h0=0.1)", "numderiv()" (repeatable)')
    p.add_argument("--json", metavar="FILE", help="also write the schemes as JSON (exact numbers as p/q strings)")


def command(args, console, err) -> int:
    """Print each scheme: formula, exact offsets and weights, order, truncation series, round-off, steps."""
    from verigrad.errors import UsageError
    from verigrad.report.schemetext import scheme_document, scheme_text
    from verigrad.schemes import get_scheme

    methods = []
    for spec in args.spec:
        try:
            methods.append(get_scheme(spec))
        except (ValueError, TypeError) as exc:
            raise UsageError(str(exc)) from None
    for i, m in enumerate(methods):
        if i:
            console.print()
        console.print(scheme_text(m), markup=False, highlight=False, soft_wrap=True)
    if args.json:
        from verigrad.cli.paths import check_output_paths
        from verigrad.report.jsonio import dumps, write_atomic

        check_output_paths(args, ("json",))
        write_atomic(args.json, dumps({"schemes": [scheme_document(m) for m in methods]}))
    return 0
