"""``verigrad show CASE``: the loss and its symbolic gradient."""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "command"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("case", help="a case file (.toml)")
    p.add_argument("--latex", action="store_true",
                   help="a LaTeX document (article, amsmath) that compiles as is, instead of text")


def command(args, console, err) -> int:
    """Print the loss and each partial derivative as textbook maths (text or LaTeX); exit code 0.

    Printed as is: never wrapped by the console (a LaTeX line or a two-dimensional formula
    broken by the terminal would no longer be either); the text form fits the console's width.
    """
    from verigrad.casefile.loader import load_case
    from verigrad.engine.model import compile_case
    from verigrad.report.formulas import show_text

    model = compile_case(load_case(args.case))
    console.print(show_text(model, latex=args.latex, width=console.width), markup=False, highlight=False,
                  soft_wrap=True)
    return 0
