"""``verigrad new NAME``: scaffold a commented case file and a candidate stub."""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "command"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="case name (letters, digits, -)")
    p.add_argument("--dir", default=".", help="directory to write into (default: .)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")


def command(args, console, err) -> int:
    """Write ``NAME.toml`` and ``impl/NAME.py`` (:func:`verigrad.casefile.scaffold.scaffold`); exit code 0."""
    from verigrad.casefile.scaffold import scaffold

    out = scaffold(args.name, args.dir, force=args.force)
    console.print(f"wrote {out.case_file}", markup=False, highlight=False)
    console.print(f"wrote {out.module}", markup=False, highlight=False)
    console.print(f"next: edit both files, then run `verigrad run {out.case_file}`", markup=False,
                  highlight=False)
    return 0
