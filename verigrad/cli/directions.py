"""The direction of a ``verigrad study``: one entry, a seeded random one, or one the user gives.

``--direction`` takes ``random``, the name of a direction of the case file's ``[directions]``,
or values per variable: ``--direction "x=[1, -1]"`` (several variables separated by ``;``:
``"W=[[1, 0], [0, 1]]; b=[0.5, 0]"``); ``--direction-file x=dir.npy`` reads one variable's
entries from a ``.npy`` file (the variable may be left out when the case has one variable);
``--normalize`` divides by the 2-norm (numdifftools' ``directionaldiff`` does).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from verigrad.errors import UsageError

__all__ = ["add_direction_arguments", "resolve_direction"]

#: characters of an inline --direction at most
_MAX_TEXT = 100_000


def add_direction_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--direction", metavar="DIR",
                   help='random (a seeded unit vector), a name from the case file\'s [directions], or values per '
                        'variable: "x=[1, -1]" ("W=[[1, 0], [0, 1]]; b=[0.5, 0]" for several)')
    p.add_argument("--direction-file", action="append", metavar="[VAR=]FILE.npy",
                   help="a variable's entries of the direction from a .npy file (repeatable)")
    p.add_argument("--normalize", action="store_true",
                   help="divide the direction by its 2-norm (as numdifftools' directionaldiff does)")


def _inline(text: str) -> dict:
    if len(text) > _MAX_TEXT:
        raise UsageError(f"--direction: {len(text)} characters; at most {_MAX_TEXT} (use --direction-file)")
    out = {}
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise UsageError(f"--direction {text!r}: {part!r} must be VARIABLE=VALUES, e.g. x=[1, -1]",
                             hint="random, a name from [directions], or x=[1, -1]; y=[0, 2]")
        try:
            out[name] = json.loads(value)
        except json.JSONDecodeError:
            raise UsageError(f"--direction {text!r}: {value.strip()!r} is not a number or a (nested) list of "
                             "numbers", hint="write e.g. x=[1, -1] or x=[[1, 0], [0, 1]]") from None
        v = out[name]
        if isinstance(v, bool) or not isinstance(v, (int, float, list)):
            raise UsageError(f"--direction {text!r}: {name}={value.strip()} must be numbers")
    return out


def _files(items, model) -> dict:
    import numpy as np

    out = {}
    names = list(model.gradient)
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            if len(names) != 1:
                raise UsageError(f"--direction-file {item}: the case has variables {', '.join(names)}; "
                                 "say which one", hint=f"--direction-file {names[0]}={item}")
            name, path = names[0], item
        try:
            arr = np.load(Path(path), allow_pickle=False)
        except FileNotFoundError:
            raise UsageError(f"--direction-file {item}: {path} not found") from None
        except (ValueError, OSError, EOFError) as exc:
            raise UsageError(f"--direction-file {item}: not a readable .npy array ({exc})") from None
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
            raise UsageError(f"--direction-file {item}: must hold real numbers")
        out[name.strip()] = arr
    return out


def resolve_direction(args, model, case):
    """The :class:`~verigrad.fd.Direction` the options describe (a coordinate one by default)."""
    from verigrad.fd import coordinate_direction, random_direction, user_direction

    text = args.direction
    files = getattr(args, "direction_file", None) or []
    given = text is not None or files
    if given and (args.variable or args.index):
        raise UsageError("--direction / --direction-file cannot be combined with --variable/--index",
                         hint="a coordinate direction is --variable NAME --index I,J")
    if text == "random":
        if files:
            raise UsageError("--direction random cannot be combined with --direction-file")
        return random_direction(model, args.seed)
    named = {d.name: d for d in case.directions}
    if text is not None and text in named:
        if files:
            raise UsageError(f"--direction {text} (from the case file) cannot be combined with --direction-file")
        spec = named[text]
        return user_direction(model, {v: list(vals) for v, vals in spec.vectors}, label=text,
                              normalize=spec.normalize or args.normalize)
    if text is not None and "=" not in text:
        hint = ("the case file's directions: " + ", ".join(named)) if named else "the case file has no [directions]"
        raise UsageError(f"--direction {text!r} is not random, a direction of the case file, or VARIABLE=VALUES",
                         hint=hint)
    if given:
        vectors = _inline(text) if text is not None else {}
        for name, arr in _files(files, model).items():
            if name in vectors:
                raise UsageError(f"{name} is given both in --direction and in --direction-file")
            vectors[name] = arr
        return user_direction(model, vectors, normalize=args.normalize)
    index = None
    if args.index:
        try:
            index = tuple(int(i) for i in args.index.split(","))
        except ValueError:
            raise UsageError(f"--index {args.index!r} must be integers separated by commas, e.g. 1,2") from None
    return coordinate_direction(model, args.variable, index)
