"""The command line: the parser, the dispatch to one module per command, exit codes.

Only :mod:`verigrad.cli` reads argv, prints, or sets an exit code.  Each command is a
module with ``add_arguments(parser)`` and ``command(args, console, err) -> int``
(:mod:`~verigrad.cli.truth`, :mod:`~verigrad.cli.show`, :mod:`~verigrad.cli.run`,
:mod:`~verigrad.cli.study`, :mod:`~verigrad.cli.scheme`, :mod:`~verigrad.cli.new`); they import the machinery they
need when they run, so that ``verigrad --help`` starts fast.

Exit codes (docs/errors.md):

* 0 - success; for ``run``, every expectation held;
* 1 - ``run``: some expectation did not hold (a "pass" candidate failed, a
  "fail" candidate passed, or a candidate could not be run);
* 2 - bad input or usage: an invalid case file, an undefined loss at the point,
  an uncertifiable truth, a wrong option (one clear message, no traceback);
* 130 - interrupted (Ctrl-C); reports of finished work are still written;
* 143 - terminated (SIGTERM, what CI timeouts send): handled exactly like Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from verigrad.errors import VerigradError

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

#: command -> one-line help; the implementation is the module ``verigrad.cli.<command>``
COMMANDS = {
    "truth": "Print the loss and the certified exact gradient at each dtype's point.",
    "show": "Print the loss and its symbolic gradient.",
    "run": "Grade every candidate of every case in its dtypes (default float32 and float64).",
    "study": "Sweep finite-difference steps: error split into truncation, step and round-off.",
    "scheme": "Print a scheme's exact weights and leading truncation term (or a method's tableau).",
    "new": "Scaffold a commented case file and a candidate stub.",
}


#: what to do when a command runs out of memory (the message of exit 2)
_MEMORY_HINTS = {
    "study": "study one coordinate (--variable/--index) rather than a random direction, fewer schemes or "
             "dtypes, or fewer steps (--steps FROM:TO:COUNT); or raise the memory limit",
    "run": "run the large cases one at a time (--jobs 1), leave the finite-difference schemes out of their "
           "[check], or raise the memory limit",
    "truth": "ask for fewer digits (--digits) or one dtype (--dtype), or raise the memory limit",
}


def _command_module(name: str):
    return importlib.import_module(f"verigrad.cli.{name}")

_EPILOGS = {
    "truth": "examples:\n  verigrad truth cases/logistic-regression-l2.toml\n"
             "  verigrad truth cases/gradient-checking-3layer.toml --dtype float32 --digits 30 --json truth.json",
    "show": "examples:\n  verigrad show cases/gradient-checking-3layer.toml\n  verigrad show cases/squire-trapp.toml --latex",
    "run": "examples:\n  verigrad run cases/\n  verigrad run cases/gradient-checking-3layer.toml --json report.json --junit junit.xml\n"
           "  verigrad run cases/ -q --html report.html --jobs 2",
    "study": "examples:\n  verigrad study cases/squire-trapp.toml\n"
             "  verigrad study cases/gradient-checking-3layer.toml --variable W1 --index 1,2 --scheme central --scheme forward "
             "--steps 1e-12:1e-1:30 --plot v.png --json v.json\n"
             "  verigrad study cases/newton-logistic-regression.toml --second-order --entry 0,0 --scheme second3 "
             "--scheme grad-central --plot h.png",
    "scheme": "examples:\n  verigrad scheme central4\n  verigrad scheme \"stencil(offsets=[-1, 0, 1], deriv=2)\"\n"
              "  verigrad scheme 'richardson(base=\"central\", terms=3)' \"ridders(h0=0.1)\" \"numderiv()\"",
    "new": "examples:\n  verigrad new my-loss            # writes my-loss.toml and impl/my_loss.py",
}


def _console(args):
    from rich.console import Console

    no_color = getattr(args, "no_color", False)
    return Console(no_color=no_color, highlight=False, soft_wrap=False,
                   force_terminal=None if not no_color else False)


class _Version(argparse.Action):
    """``--version``, reading the installed version only when asked (importlib.metadata is slow to import)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0,
                         help=help or "show the version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        from verigrad import __version__

        parser._print_message(f"verigrad {__version__}\n", sys.stdout)
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="verigrad",
        description="Grade gradients against the exact, certified gradient of a symbolically declared loss.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands: truth, show, run, study, scheme, new; `verigrad COMMAND --help` for each.\n"
               "exit codes: 0 ok, 1 an expectation did not hold, 2 bad input or usage, 130 interrupted,\n"
               "143 terminated (SIGTERM)",
    )
    p.add_argument("--version", action=_Version)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help, epilog=_EPILOGS.get(name),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        sp.add_argument("--no-color", action="store_true", help="no colour codes (also when not a terminal)")
        return sp

    for name, help in COMMANDS.items():
        _command_module(name).add_arguments(add(name, help))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    console = _console(args)
    err = _err_console(args)
    from verigrad.cli.signals import EXIT_TERMINATED, terminate_like_interrupt

    import warnings

    with terminate_like_interrupt() as term, warnings.catch_warnings():
        # numpy's floating-point warnings from verigrad's own float evaluations (an overflowing
        # baseline, a step across a domain edge) are expected and reported as results, never on stderr;
        # candidates' warnings are captured in their worker process as their output
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"(verigrad|numpy)\.")
        try:
            code = _command_module(args.command).command(args, console, err)
        except VerigradError as exc:
            err.print(f"verigrad: error: {exc}", markup=False)
            code = exc.exit_code
        except KeyboardInterrupt:
            err.print("verigrad: terminated (SIGTERM)" if term.received else "verigrad: interrupted", markup=False)
            code = EXIT_INTERRUPTED
        except MemoryError:
            err.print(f"verigrad: error: out of memory: `verigrad {args.command}` needed more memory than this "
                      f"machine (or its memory limit) could give; "
                      f"{_MEMORY_HINTS.get(args.command, 'run fewer or smaller cases at a time')}", markup=False)
            code = EXIT_BAD_INPUT
    # a run stopped by SIGTERM says so in its exit code, after writing its reports
    return EXIT_TERMINATED if term.received and code == EXIT_INTERRUPTED else code


def _err_console(args):
    from rich.console import Console

    return Console(stderr=True, no_color=getattr(args, "no_color", False), highlight=False, soft_wrap=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
