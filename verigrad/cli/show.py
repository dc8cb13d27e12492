"""``verigrad show CASE``: the loss and its symbolic gradient."""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "command"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("case", help="a case file (.toml)")
    p.add_argument("--latex", action="store_true", help="LaTeX instead of text")


def command(args, console, err) -> int:
    """Print the loss and each partial derivative (text or LaTeX); exit code 0."""
    from verigrad.casefile.loader import load_case
    from verigrad.engine.model import compile_case
    from verigrad.report.terminal import show_text

    model = compile_case(load_case(args.case))
    console.print(show_text(model, latex=args.latex), markup=False, highlight=False)
    return 0
