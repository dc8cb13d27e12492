"""Case-file keys of the finite-difference checks: schemes, steps per scheme and per coordinate,
named directions.

* ``[check] schemes``: scheme strings in the scheme syntax (``"central"``,
  ``"ridders(h0=0.1)"``, ``"stencil(offsets=[-2, -1, 0, 1, 2])"``), each validated by
  :func:`verigrad.schemes.get_scheme`;
* ``[check] steps``: a list of steps for every scheme, or a table of lists keyed by the scheme
  strings (``steps = { central = [1e-6], "ridders(h0=0.1)" = [0.1, 0.5] }``);
* ``[check.coordinate_steps]``: per variable, a nominal step per entry (a number for all of
  its entries, a nested list in its shape, or a ``.npy`` file);
* ``[directions]``: named directions, per variable a number, a nested list or a ``.npy`` file,
  and ``normalize = true`` to divide by the 2-norm.

The loader (:mod:`verigrad.casefile.loader`) calls these with its context and its own field
helpers (``ld``: ``_typed``, ``_show``, ``_suggest``, ``_load_npy``, ``MAX_STEP``), so that every
message names file, case and field the same way and this module does not import the loader.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from verigrad.spec import DirectionSpec, Symbol

__all__: list[str] = []

def check_schemes(ctx, raw: Any, ld) -> tuple[str, ...]:
    """Validate ``[check] schemes``: each a string of the scheme syntax for a first derivative."""
    from verigrad.schemes import METHOD_SIGNATURES, SCHEME_NAMES, Scheme, get_scheme

    items = ld._typed(ctx, raw, list, "[check] schemes", "a list of scheme names")
    allowed = list(SCHEME_NAMES) + list(METHOD_SIGNATURES.values())
    for s in items:
        if not isinstance(s, str) or ("(" not in s and s not in SCHEME_NAMES):
            raise ctx.error("[check] schemes", f"unknown scheme {ld._show(s)}",
                            hint=ld._suggest(str(s), list(SCHEME_NAMES) + list(METHOD_SIGNATURES))
                            + "allowed: " + ", ".join(allowed))
        try:
            method = get_scheme(s)
        except ValueError as exc:
            raise ctx.error("[check] schemes", str(exc), hint="allowed: " + ", ".join(allowed)) from None
        if isinstance(method, Scheme) and method.derivative != 1:
            raise ctx.error("[check] schemes", f"{s!r} estimates derivative {method.derivative}; "
                            "[check] schemes estimate the gradient",
                            hint=f'study it along a line instead: verigrad study CASE --scheme "{s}"')
    return tuple(dict.fromkeys(items))


def _step_list(ctx, raw: Any, field: str, ld) -> tuple[float, ...]:
    items = ld._typed(ctx, raw, list, field, "a list of positive numbers")
    for h in items:
        if isinstance(h, bool) or not isinstance(h, (int, float)) or not (0 < h < math.inf):
            raise ctx.error(field, f"step {ld._show(h)} must be a positive finite number",
                            hint="e.g. steps = [1e-3, 1e-6]")
        if h > ld.MAX_STEP:
            raise ctx.error(field, f"step {ld._show(h)} is too large",
                            hint=f"use steps up to {ld.MAX_STEP:g} (the nodes x + c*h must stay finite)")
    if not items:
        raise ctx.error(field, "the list is empty", hint="omit steps for the recommended step")
    return tuple(float(h) for h in items)


def check_steps(ctx, raw: Any, schemes: tuple[str, ...], ld) -> tuple[tuple[float, ...] | None, tuple]:
    """``[check] steps``: a list (every scheme) or a table keyed by scheme strings.

    Returns ``(steps, scheme_steps)``."""
    if not isinstance(raw, dict):
        return _step_list(ctx, raw, "[check] steps", ld), ()
    out = []
    for key, value in raw.items():
        field = f"[check] steps.{key}"
        if key not in schemes:
                    raise ctx.error(field, f"{key!r} is not one of [check] schemes",
                            hint=ld._suggest(key, schemes) + "the keys of a steps table are the scheme strings "
                            "of [check] schemes: " + ", ".join(schemes or ("(none)",)))
        out.append((key, _step_list(ctx, value, field, ld)))
    if not out:
        raise ctx.error("[check] steps", "the table is empty", hint="omit steps for the recommended step")
    return None, tuple(out)


def _values(ctx, raw: Any, field: str, symbol: Symbol, path: Path, limits, ld, *, broadcast: bool) -> np.ndarray:
    """A number, a nested list in the symbol's shape (or flat, C order) or a .npy file: float64, flat."""
    shape = tuple(symbol.shape)
    size = int(np.prod(shape, dtype=np.int64))
    if isinstance(raw, str):
        arr = np.asarray(ld._load_npy(ctx, raw, field, path, limits), dtype=np.float64)
    elif isinstance(raw, bool):
        raise ctx.error(field, f"expected numbers, got the boolean {str(raw).lower()}")
    elif isinstance(raw, (int, float)):
        if not broadcast and size != 1:
            raise ctx.error(field, f"one number for {symbol.name} of shape {list(shape)}",
                            hint=f"give {size} numbers (nested lists in the shape, or a flat list in C order)")
        arr = np.full(shape, float(raw))
    elif isinstance(raw, list):
        try:
            arr = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError):
            raise ctx.error(field, f"{ld._show(raw)} is not a (nested) list of numbers",
                            hint=f"give numbers in the shape of {symbol.name}, {list(shape)}") from None
    else:
        raise ctx.error(field, f"expected numbers, a nested list or a .npy path, got {ld._show(raw)}")
    if arr.shape != shape and not (arr.ndim == 1 and arr.size == size):
        raise ctx.error(field, f"shape {list(arr.shape)} does not match {symbol.name} of shape {list(shape)}",
                        hint=f"give {size} numbers (nested lists in the shape, or a flat list in C order)")
    if not np.all(np.isfinite(arr)):
        raise ctx.error(field, "every entry must be finite")
    return arr.reshape(-1)


def coordinate_steps(ctx, raw: Any, symbols: tuple[Symbol, ...], path: Path, limits, ld) -> tuple:
    """``[check.coordinate_steps]``: a nominal step per entry of each variable named."""
    table = ld._typed(ctx, raw, dict, "[check] coordinate_steps", "a table of steps per variable")
    variables = {s.name: s for s in symbols if not s.constant}
    out = []
    for name, value in table.items():
        field = f"[check] coordinate_steps.{name}"
        if name not in variables:
            raise ctx.error(field, f"{name!r} is not a variable",
                            hint=ld._suggest(name, variables) + "variables: " + ", ".join(variables))
        arr = _values(ctx, value, field, variables[name], path, limits, ld, broadcast=True)
        if np.any(arr <= 0) or np.any(arr > ld.MAX_STEP):
            bad = float(arr[(arr <= 0) | (arr > ld.MAX_STEP)][0])
            raise ctx.error(field, f"step {bad!r} must be > 0 and at most {ld.MAX_STEP:g}")
        out.append((name, tuple(float(v) for v in arr)))
    if not out:
        raise ctx.error("[check] coordinate_steps", "the table is empty", hint="name a variable, e.g. x = 1e-6")
    return tuple(out)


def directions(ctx, raw: Any, symbols: tuple[Symbol, ...], path: Path, limits, ld) -> tuple[DirectionSpec, ...]:
    """``[directions]``: named directions per variable (``normalize = true`` divides by the 2-norm)."""
    table = ld._typed(ctx, raw, dict, "[directions]", "a table of named directions")
    variables = {s.name: s for s in symbols if not s.constant}
    out = []
    for dname, spec in table.items():
        field = f"[directions] {dname}"
        if not ld._NAME_RE.match(dname) or dname == "random":
            raise ctx.error(field, f"invalid direction name {dname!r}",
                            hint="letters, digits, '-', '_' and '.' ('random' is taken by --direction random)")
        ld._typed(ctx, spec, dict, field, "a table such as { x = [1, -1] }")
        normalize = False
        vectors = []
        for key, value in spec.items():
            if key == "normalize":
                normalize = ld._typed(ctx, value, bool, f"{field}.normalize", "true or false")
                continue
            if key not in variables:
                raise ctx.error(f"{field}.{key}", f"{key!r} is not a variable",
                                hint=ld._suggest(key, variables) + "variables: " + ", ".join(variables))
            arr = _values(ctx, value, f"{field}.{key}", variables[key], path, limits, ld, broadcast=False)
            vectors.append((key, tuple(float(v) for v in arr)))
        if not vectors or not any(v != 0 for _, vals in vectors for v in vals):
            raise ctx.error(field, "the direction has no nonzero entry", hint="e.g. diagonal = { x = [1, -1] }")
        out.append(DirectionSpec(dname, tuple(vectors), normalize))
    return tuple(out)


#: ``[check] second_order_schemes`` (verigrad.runner.secondfd; the names of verigrad.studies.second)
SECOND_ORDER_SCHEMES = ("second3", "mixed4", "grad-central", "second-difference", "mixed-4point", "gradient-central")


def second_order_schemes(ctx, raw: Any, ld) -> tuple[str, ...]:
    """``[check] second_order_schemes``: names of :data:`SECOND_ORDER_SCHEMES`, each optionally
    wrapped in ``richardson(...)``; ``[]`` turns the default rows off."""
    field = "[check] second_order_schemes"
    items = ld._typed(ctx, raw, list, field, 'a list such as ["mixed4", "grad-central"]')
    allowed = list(SECOND_ORDER_SCHEMES) + [f"richardson({SECOND_ORDER_SCHEMES[0]})"]
    for s in items:
        inner = s[len("richardson("):-1] if isinstance(s, str) and s.startswith("richardson(") and s.endswith(")") \
            else s
        if not isinstance(s, str) or inner not in SECOND_ORDER_SCHEMES:
            raise ctx.error(field, f"unknown second-order scheme {ld._show(s)}",
                            hint=ld._suggest(str(s), list(SECOND_ORDER_SCHEMES)) + "allowed: " + ", ".join(allowed)
                            + " (richardson(...) around any of them)")
    return tuple(dict.fromkeys(items))
