"""The command line: the only place that reads argv, prints, or sets an exit code."""

from verigrad.cli.main import main

__all__ = ["main"]
