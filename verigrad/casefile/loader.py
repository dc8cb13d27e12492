"""Read and validate case files (TOML) into :class:`~verigrad.spec.Case` records.

Validation happens here, completely, before any computation: every error is a
:class:`~verigrad.errors.CaseError` whose message names the file, the case, the
field, the value given, what is allowed, and how to fix it.  See
``docs/case-files.md`` for the format.
"""

from __future__ import annotations

import difflib
import keyword
import math
import os
import re
import stat
import sys
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from verigrad.errors import CaseError, LimitError
from verigrad.expr.parser import MAX_DEPTH_CEILING, RESERVED_NAMES, ExprLimits
from verigrad.casefile import candidatekeys, fdkeys
from verigrad.schemes import StepMode
from verigrad.spec import (CandidateSpec, Case, CheckSpec, CodeRef, Dtype, Expect, Init, Limits, RngKind, Symbol)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["load_case", "load_case_text", "find_case_files", "draw_point", "point_in_dtype"]

TOP_KEYS = ("name", "description", "seed", "rng", "loss", "loss_code", "symbols", "define", "candidate",
            "check", "limits", "directions")
SYMBOL_KEYS = ("constant", "shape", "init", "value", "file", "dtype")
CANDIDATE_KEYS = ("name", "code", "expect", "allow_upcast", "kind", "device")
CHECK_KEYS = ("dtypes", "schemes", "steps", "step_mode", "tolerance_factor", "floor_ulps", "entry_sigmas", "digits",
              "classic", "coordinate_steps", "second_order_schemes")
LIMIT_KEYS = ("max_elements", "max_symbol_elements", "max_intermediate_elements", "max_precision_bits",
              "symbolic_seconds", "candidate_seconds", "certify_seconds", "max_expression_length",
              "max_expression_depth", "max_expression_nodes")
#: hard ceilings of the configurable limits: beyond them a run cannot finish on any machine
#: this suite targets (memory of a float64 array of that many entries, or hours of work)
LIMIT_CEILINGS = {
    "max_elements": 2**28, "max_symbol_elements": 2**28, "max_intermediate_elements": 2**28,
    "max_precision_bits": 2**18, "max_expression_length": 1_000_000, "max_expression_nodes": 1_000_000,
    "symbolic_seconds": 86_400.0, "candidate_seconds": 86_400.0, "certify_seconds": 86_400.0,
}
#: nominal finite-difference steps above this are refused (the nodes x + c h leave every float format)
MAX_STEP = 1e15
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INIT_RE = re.compile(r"^\s*(normal|uniform)\s*(?:\(\s*([^,()]+)\s*,\s*([^,()]+)\s*\))?\s*$")
_MAX_FILE_BYTES = 50_000_000
_MAX_NDIM = 8


def _sub(field: str, key: str) -> str:
    """``[check]`` + ``dtypes`` -> ``[check] dtypes``; ``[symbols] W1`` + ``shape`` -> ``[symbols] W1.shape``."""
    if not field:
        return key
    return f"{field} {key}" if field.endswith("]") else f"{field}.{key}"


class _Ctx:
    """Builds error messages that say file::case::field.

    Fields name the place the way the file is written: ``loss``, ``[symbols] W1.shape``,
    ``[define] Z1``, ``[[candidate]] backprop.code``, ``[check] dtypes``, ``[limits] max_elements``.
    """

    def __init__(self, path: Path | str, case: str | None = None) -> None:
        self.path = str(path)
        self.case = case

    def where(self, field: str = "") -> str:
        parts = [self.path]
        if self.case:
            parts.append(self.case)
        if field:
            parts.append(field)
        return "::".join(parts)

    def error(self, field: str, message: str, hint: str = "", cls=CaseError, **fields) -> CaseError:
        return cls(message, where=self.where(field), hint=hint, file=self.path, case=self.case, field=field,
                   **fields)


def _suggest(key: str, allowed: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return f"did you mean '{close[0]}'? " if close else ""


def _check_keys(ctx: _Ctx, table: dict, allowed: tuple[str, ...], field: str) -> None:
    for key in table:
        if key not in allowed:
            raise ctx.error(_sub(field, _key_text(key)), f"unknown key {_show(key)}",
                            hint=_suggest(key, allowed) + "allowed keys: " + ", ".join(allowed))


_TOML_TYPES = {"str": "string", "int": "integer", "float": "float", "bool": "boolean", "list": "array",
               "dict": "table", "datetime": "date-time", "date": "date", "time": "time"}


def _typed(ctx: _Ctx, value: Any, types, field: str, what: str):
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise ctx.error(field, f"expected {what}, got the boolean {str(value).lower()}")
    if not isinstance(value, types):
        kind = _TOML_TYPES.get(type(value).__name__, type(value).__name__)
        raise ctx.error(field, f"expected {what}, got {kind} {_show(value)}")
    return value


def _show(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 4] + " ..."


def load_case(path: str | Path) -> Case:
    """Read, parse and validate one case file.

    Parameters
    ----------
    path : str or Path
        A ``.toml`` case file.

    Returns
    -------
    Case

    Raises
    ------
    CaseError
        For anything invalid, with the file, case, field, value and a fix.
    """
    path = Path(path)
    ctx = _Ctx(path)
    if not path.exists():
        raise ctx.error("", "no such file", hint="check the path")
    if path.is_dir():
        raise ctx.error("", "is a directory, not a case file", hint="use `verigrad run DIR` for directories")
    raw = _read_regular(ctx, path, "", _MAX_FILE_BYTES, what="case files",
                        hint="store large data in a .npy file referenced by `file = ...`")
    _numbers_within_limits(ctx, raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ctx.error("", f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at line {line}, column {col}",
                        hint="case files are UTF-8 TOML; re-save the file as UTF-8") from None
    return load_case_text(text, path=path)


def _read_regular(ctx: _Ctx, path: Path, field: str, limit: int, *, what: str, hint: str) -> bytes:
    """The bytes of a regular file, at most ``limit`` of them, refusing FIFOs, devices and sockets.

    The file is opened without blocking (a FIFO with no writer would block ``open``) and
    checked with ``fstat`` on the open descriptor (a symlink to ``/dev/zero`` is a device);
    at most ``limit + 1`` bytes are read, so a file that grows while it is read is still
    caught by the size limit.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ctx.error(field, f"cannot read the file: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode)
                    or stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
            raise ctx.error(field, f"{path} is {kind}, not a regular file", hint="point at an ordinary file")
        if st.st_size > limit:
            raise ctx.error(field, f"file is {st.st_size} bytes, over the {limit}-byte limit for {what}",
                            hint=hint, cls=LimitError)
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise ctx.error(field, f"file is over the {limit}-byte limit for {what}", hint=hint, cls=LimitError)
        return b"".join(chunks)
    except OSError as exc:
        raise ctx.error(field, f"cannot read the file: {exc.strerror}") from None
    finally:
        os.close(fd)


_NUMBER_IN_LIST = re.compile(rb"[0-9.]\s*,")
_ELEMENT_LIMITS = re.compile(rb"(?<![A-Za-z0-9_])max_elements\s*=\s*([0-9_]{1,30})")


def _numbers_within_limits(ctx: _Ctx, raw: bytes) -> None:
    """Refuse, before parsing, a file that holds more numbers than its element limits allow.

    Parsing a 50 MB array literal takes tens of seconds before the element limit could see
    it; counting ``digit,`` separators takes a fraction of a second. The count is a lower
    bound of the list entries (each entry but the last in a list is followed by a comma),
    so the file is refused only when ``max_elements`` (all symbols together) is certainly
    exceeded: the largest value the file sets for it anywhere, or the default, plus slack
    for commas in strings.
    """
    if len(raw) < 1 << 20:
        return
    set_here = [int(m.replace(b"_", b"")) for m in _ELEMENT_LIMITS.findall(raw)]
    allowed = max(set_here) if set_here else Limits().max_elements
    if raw.count(b",") <= allowed + 10_000:  # an upper bound of the count below: nothing to refuse
        return
    count = sum(1 for _ in _NUMBER_IN_LIST.finditer(raw))
    if count > allowed + 10_000:
        raise ctx.error("", f"the file holds at least {count:,} numbers in arrays, more than its element limit "
                        f"({allowed:,}) allows", hint="store large data in a .npy file referenced by `file = ...` "
                        "(or raise [limits] max_elements and max_symbol_elements)", cls=LimitError)


def load_case_text(text: str, *, path: str | Path = "<string>") -> Case:
    """Validate case-file text (see :func:`load_case`); relative code paths resolve against ``path``."""
    path = Path(path)
    ctx = _Ctx(path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ctx.error("", f"not valid TOML: {exc}", hint="see docs/case-files.md for the format") from None
    except RecursionError:
        raise ctx.error("", "not valid TOML: nested too deeply", cls=LimitError) from None
    return _validate(doc, path, ctx)


def _validate(doc: dict, path: Path, ctx: _Ctx) -> Case:
    if isinstance(doc.get("name"), str) and _NAME_RE.match(doc["name"]) and len(doc["name"]) <= 100:
        ctx.case = doc["name"]  # so that every later message names the case
    _check_keys(ctx, doc, TOP_KEYS, "")
    if "name" not in doc:
        raise ctx.error("name", "missing required key 'name'", hint='add e.g. name = "my-case"')
    name = _typed(ctx, doc["name"], str, "name", "a string")
    if not _NAME_RE.match(name) or len(name) > 100:
        raise ctx.error("name", f"invalid case name {_show(name)}",
                        hint="use letters, digits, '-', '_' and '.', starting with a letter or digit")
    ctx.case = name
    description = _typed(ctx, doc.get("description", ""), str, "description", "a string")
    seed = _typed(ctx, doc.get("seed", 0), int, "seed", "an integer")
    if not 0 <= seed < 2**32:
        raise ctx.error("seed", f"seed={seed} is out of range", hint="use an integer from 0 to 2**32 - 1")
    rng_text = _typed(ctx, doc.get("rng", "numpy"), str, "rng", "a string")
    try:
        rng = RngKind(rng_text)
    except ValueError:
        raise ctx.error("rng", f"unknown rng {rng_text!r}",
                        hint=_suggest(rng_text, [r.value for r in RngKind]) + "allowed: "
                        + ", ".join(r.value for r in RngKind)) from None
    limits = _limits(ctx, doc.get("limits", {}))
    if "loss" not in doc:
        raise ctx.error("loss", "missing required key 'loss'", hint='add e.g. loss = "sum(x**2)"')
    loss = _typed(ctx, doc["loss"], str, "loss", "an expression string")
    if "symbols" not in doc:
        raise ctx.error("[symbols]", "missing table [symbols]", hint="declare the variables and constants of the loss")
    symbols_doc = _typed(ctx, doc["symbols"], dict, "[symbols]", "a table")
    symbols = tuple(_symbol(ctx, k, v, path, limits) for k, v in symbols_doc.items())
    if not symbols:
        raise ctx.error("[symbols]", "no symbols declared", hint='declare at least one variable, e.g. '
                        'x = { shape = [3], init = "normal" }')
    if not any(not s.constant for s in symbols):
        raise ctx.error("[symbols]", "every symbol is a constant: there is nothing to differentiate",
                        hint="drop `constant = true` from the variables")
    total = sum(s.size for s in symbols)
    if total > limits.max_elements:
        raise ctx.error("[symbols]", f"the symbols have {total} entries in all, over the limit of "
                        f"{limits.max_elements}", hint="raise [limits] max_elements", cls=LimitError)
    defines_doc = _typed(ctx, doc.get("define", {}), dict, "[define]", "a table")
    defines = []
    for key, value in defines_doc.items():
        field = f"[define] {_key_text(key)}"
        _identifier(ctx, key, field)
        if key in symbols_doc:
            raise ctx.error(field, f"'{key}' is already declared in [symbols]", hint="use another name")
        _typed(ctx, value, str, field, "an expression string")
        defines.append((key, value))
    candidates = _candidates(ctx, doc.get("candidate", []), path)
    check = _check(ctx, doc.get("check", {}), symbols, path, limits)
    _check_dtype_range(ctx, symbols, check)
    loss_code = _coderef(ctx, doc["loss_code"], "loss_code", path) if "loss_code" in doc else None
    directions = fdkeys.directions(ctx, doc["directions"], symbols, path, limits, _helpers()) if "directions" in doc else ()
    return Case(name=name, path=path, description=description, seed=seed, rng=rng, loss=loss,
                symbols=symbols, defines=tuple(defines), candidates=candidates, check=check,
                loss_code=loss_code, limits=limits, directions=directions)


def _identifier(ctx: _Ctx, key: str, field: str) -> None:
    if not _IDENT_RE.match(key) or len(key) > 100:
        raise ctx.error(field, f"invalid name {_show(key)}",
                        hint="names are identifiers: ASCII letters, digits and _, not starting with a digit")
    if key.startswith("__"):
        raise ctx.error(field, f"name {key!r} is not allowed (dunder names are refused)", hint="rename it")
    if keyword.iskeyword(key):
        raise ctx.error(field, f"'{key}' is a Python keyword and cannot be used as a name in expressions",
                        hint="rename it")
    if key in RESERVED_NAMES:
        what = "constant" if key in ("pi", "e") else "function"
        raise ctx.error(field, f"'{key}' is a reserved name (a {what} of the expression language)",
                        hint="rename it")


def _limits(ctx: _Ctx, table: Any) -> Limits:
    _typed(ctx, table, dict, "[limits]", "a table")
    _check_keys(ctx, table, LIMIT_KEYS, "[limits]")
    base = Limits()
    vals: dict[str, Any] = {}
    for key, value in table.items():
        field = f"[limits] {key}"
        ceiling = LIMIT_CEILINGS.get(key)
        if key.endswith("seconds"):
            v = _typed(ctx, value, (int, float), field, "a positive number of seconds")
            if not 0 < v < math.inf:
                raise ctx.error(field, f"{key}={v} must be a positive, finite number of seconds",
                                hint=f"use at most {ceiling:,.0f} (one day)")
            v = float(v)
        else:
            v = _typed(ctx, value, int, field, "a positive integer")
            if v <= 0:
                raise ctx.error(field, f"{key}={v} must be a positive integer")
        if ceiling is not None and v > ceiling:
            most = f"{ceiling:,}" if isinstance(ceiling, int) else f"{ceiling:,.0f}"
            raise ctx.error(field, f"{key}={_show(v)} is over the hard maximum of {most}",
                            hint=f"use at most {most}; beyond it no run can finish in memory or in time",
                            cls=LimitError)
        vals[key] = v
    depth = vals.get("max_expression_depth")
    if depth is not None and depth > MAX_DEPTH_CEILING:
        raise ctx.error("[limits] max_expression_depth", f"max_expression_depth={depth} is over the hard "
                        f"maximum of {MAX_DEPTH_CEILING} (deeper nesting exhausts Python's recursion limit)",
                        hint="split deep expressions into [define] steps", cls=LimitError)
    bits = vals.get("max_precision_bits")
    if bits is not None and bits < 64:
        raise ctx.error("[limits] max_precision_bits", f"max_precision_bits={bits} is too small",
                        hint="the truth needs at least 64 bits; the default is 16384")
    expr = ExprLimits(
        max_length=vals.pop("max_expression_length", base.expression.max_length),
        max_depth=vals.pop("max_expression_depth", base.expression.max_depth),
        max_nodes=vals.pop("max_expression_nodes", base.expression.max_nodes),
        max_elements=vals.pop("max_intermediate_elements", base.expression.max_elements),
    )
    return Limits(expression=expr, **vals)


def _key_text(key: str) -> str:
    """A table key as shown in a field; absurdly long keys are shortened."""
    return key if len(key) <= 100 else key[:60] + "..."


def _symbol(ctx: _Ctx, name: str, spec: Any, path: Path, limits: Limits) -> Symbol:
    field = f"[symbols] {_key_text(name)}"
    _identifier(ctx, name, field)
    if not isinstance(spec, dict):
        kind = _TOML_TYPES.get(type(spec).__name__, type(spec).__name__)
        raise ctx.error(field, f"expected an inline table such as {{ shape = [3], init = \"normal\" }}, "
                               f"got {kind} {_show(spec)}",
                        hint=f'write {name} = {{ value = {_show(spec, 30)} }} for a given value'
                        if isinstance(spec, (int, float, list)) and not isinstance(spec, bool) else "")
    _check_keys(ctx, spec, SYMBOL_KEYS, field)
    constant = _typed(ctx, spec.get("constant", False), bool, _sub(field, "constant"), "true or false")
    integer = _symbol_dtype(ctx, spec, field, constant)
    sources = [k for k in ("init", "value", "file") if k in spec]
    if len(sources) != 1:
        raise ctx.error(field, "give exactly one of init, value, file" + (f" (got {', '.join(sources)})" if sources else ""),
                        hint='e.g. init = "normal", or value = 0.5, or file = "data/X.npy"')
    shape = None
    if "shape" in spec:
        sfield = _sub(field, "shape")
        raw = _typed(ctx, spec["shape"], list, sfield, "a list of positive integers")
        if not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in raw):
            raise ctx.error(sfield, f"shape={_show(raw)} must be a list of positive integers",
                            hint="e.g. shape = [5, 4]; use [] or omit it for a scalar")
        if len(raw) > _MAX_NDIM:
            raise ctx.error(sfield, f"shape={raw} has {len(raw)} dimensions, over the maximum of {_MAX_NDIM}",
                            cls=LimitError)
        shape = tuple(raw)
        size = math.prod(shape)
        if size > limits.max_symbol_elements:
            raise ctx.error(sfield, f"shape={raw} has {size} entries, over the limit of "
                            f"{limits.max_symbol_elements}", hint="raise [limits] max_symbol_elements",
                            cls=LimitError)
    if "init" in spec:
        if integer:
            raise ctx.error(_sub(field, "init"), "an integer constant cannot be drawn from a distribution",
                            hint="give the integers with value = [...] or file = \"labels.npy\"")
        init = _init(ctx, spec["init"], _sub(field, "init"))
        return Symbol(name, shape or (), constant, init=init)
    if "file" in spec:
        vfield = _sub(field, "file")
        value = _load_npy(ctx, spec["file"], vfield, path, limits, integer=integer)
    else:
        vfield = _sub(field, "value")
        value = _value(ctx, spec["value"], vfield, limits, integer=integer)
    if shape is not None and value.shape != shape:
        if value.ndim == 0:
            value = np.full(shape, value.item(), dtype=value.dtype)
        else:
            raise ctx.error(vfield, f"the value has shape {list(value.shape)} but shape={list(shape)}",
                            hint="drop `shape` or make the value match it (a single number is broadcast)")
    value.setflags(write=False)
    return Symbol(name, tuple(value.shape), constant, value=value, integer=integer)


_SYMBOL_DTYPES = ("float64", "int64")
_INT64_MAX = 2**63 - 1


def _symbol_dtype(ctx: _Ctx, spec: dict, field: str, constant: bool) -> bool:
    """Whether ``dtype = "int64"`` makes the symbol an integer constant (``float64``, the default, does not)."""
    if "dtype" not in spec:
        return False
    dfield = _sub(field, "dtype")
    text = _typed(ctx, spec["dtype"], str, dfield, 'a string, "int64" or "float64"')
    if text not in _SYMBOL_DTYPES:
        hint = ("symbols hold exact data; the dtypes under test are chosen in [check] dtypes. "
                if text in ("float32", "float16", "bfloat16") else _suggest(text, _SYMBOL_DTYPES))
        raise ctx.error(dfield, f"dtype={text!r} is not a symbol dtype",
                        hint=hint + 'allowed: "int64" (integer constants: labels, indices) or "float64" (the default)')
    if text == "int64" and not constant:
        raise ctx.error(dfield, 'dtype="int64" declares integer data, but the symbol is a variable',
                        hint="integers cannot be differentiated: add `constant = true` (labels, indices), "
                             'or drop dtype for a float variable')
    return text == "int64"


def _init(ctx: _Ctx, text: Any, field: str) -> Init:
    _typed(ctx, text, str, field, 'a string such as "normal", "normal(0, 0.1)" or "uniform(-1, 1)"')
    allowed = 'allowed: "normal", "normal(mu, sigma)", "uniform(a, b)" with number literals'
    m = _INIT_RE.match(text)
    if not m:
        word = re.match(r"\s*([A-Za-z_]+)", text)
        close = _suggest(word.group(1), ("normal", "uniform")) if word else ""
        raise ctx.error(field, f"invalid init {_show(text)}", hint=close + allowed)
    kind, a_text, b_text = m.groups()
    if a_text is None:
        a, b = (0.0, 1.0)
    else:
        try:
            a, b = float(a_text), float(b_text)
        except ValueError:
            raise ctx.error(field, f"invalid init {_show(text)}: parameters must be number literals",
                            hint='e.g. "normal(0, 0.1)"') from None
    if not (math.isfinite(a) and math.isfinite(b)):
        raise ctx.error(field, f"invalid init {_show(text)}: parameters must be finite")
    big = float(np.finfo(np.float64).max) / 2
    if kind == "uniform" and not (abs(a) <= big and abs(b) <= big):
        raise ctx.error(field, f"invalid init {_show(text)}: the interval is wider than float64 can draw from",
                        hint=f"use bounds within ±{big:.3g}")
    if kind == "normal" and abs(a) + 40 * b > big:
        raise ctx.error(field, f"invalid init {_show(text)}: draws would overflow float64",
                        hint="use a smaller mean and standard deviation")
    if kind == "normal" and b < 0:
        raise ctx.error(field, f"invalid init {_show(text)}: sigma={b:g} must be >= 0")
    if kind == "uniform" and not a < b:
        raise ctx.error(field, f"invalid init {_show(text)}: needs a < b, got a={a:g}, b={b:g}")
    return Init(kind, a, b)


_FLOAT64_MAX_INT = int(np.finfo(np.float64).max)


def _value(ctx: _Ctx, raw: Any, field: str, limits: Limits, *, integer: bool = False) -> np.ndarray:
    """The float64 array of a ``value`` (int64 for an integer constant: integers within int64 only)."""
    count = 0

    def check(v, depth=0):
        nonlocal count
        if depth > _MAX_NDIM:
            raise ctx.error(field, f"the value is nested more than {_MAX_NDIM} levels deep", cls=LimitError)
        if isinstance(v, list):
            if not v:
                raise ctx.error(field, "the value contains an empty list",
                                hint="every dimension needs at least one entry")
            for item in v:
                check(item, depth + 1)
        elif isinstance(v, bool) or not isinstance(v, int if integer else (int, float)):
            kind = "boolean" if isinstance(v, bool) else _TOML_TYPES.get(type(v).__name__, type(v).__name__)
            if integer:
                raise ctx.error(field, f'dtype = "int64" needs integer entries, got {kind} {_show(v)}',
                                hint="write the labels as integers (1, not 1.0), or drop dtype for float data")
            raise ctx.error(field, f"value entries must be numbers, got {kind} {_show(v)}")
        elif integer and not -_INT64_MAX - 1 <= v <= _INT64_MAX:
            raise ctx.error(field, f"the integer {_show(v, 40)} is beyond the int64 range",
                            hint=f"integers must lie within ±{_INT64_MAX}")
        else:
            if isinstance(v, int) and abs(v) > _FLOAT64_MAX_INT:
                raise ctx.error(field, f"the integer {_show(v, 40)} is beyond the float64 range (about 1.8e308)",
                                hint="values must be finite in float64; rescale the data")
            count += 1
            if count > limits.max_symbol_elements:
                raise ctx.error(field, f"the value has more than {limits.max_symbol_elements} entries",
                                hint="raise [limits] max_symbol_elements, or store the data in a .npy file",
                                cls=LimitError)

    check(raw)
    try:
        arr = np.array(raw, dtype=np.int64 if integer else np.float64)
    except (ValueError, OverflowError, TypeError):
        raise ctx.error(field, "the value is not a rectangular array of numbers (ragged rows)",
                        hint="every row must have the same length") from None
    if arr.ndim > _MAX_NDIM:  # pragma: no cover - the nesting check comes first
        raise ctx.error(field, f"the value has {arr.ndim} dimensions, over the maximum of {_MAX_NDIM}",
                        cls=LimitError)
    bad = ~np.isfinite(arr)
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0]) if arr.ndim else ()
        at = f" at {list(idx)}" if idx else ""
        raise ctx.error(field, f"the value contains {float(arr[idx])}{at}",
                        hint="values must be finite numbers (an integer beyond 1.8e308 is infinite in float64)")
    return arr


def _load_npy(ctx: _Ctx, raw: Any, field: str, path: Path, limits: Limits, *, integer: bool = False) -> np.ndarray:
    _typed(ctx, raw, str, field, "a path to a .npy file")
    target = (path.parent / raw)
    if target.suffix != ".npy":
        raise ctx.error(field, f"file={raw!r} is not a .npy file", hint="save the array with numpy.save")
    try:
        st = os.stat(target)  # follows symlinks: the file np.load would open
    except FileNotFoundError:
        raise ctx.error(field, f"file={raw!r} not found (looked at {target})", hint="paths are relative to "
                        "the case file") from None
    except OSError as exc:
        raise ctx.error(field, f"file={raw!r} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ctx.error(field, f"file={raw!r} is not a regular file (a FIFO, device or socket)",
                        hint="point at a .npy file saved with numpy.save")
    try:
        arr = np.load(target, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise ctx.error(field, f"file={raw!r} not found (looked at {target})", hint="paths are relative to "
                        "the case file") from None
    except (ValueError, OSError, EOFError) as exc:
        raise ctx.error(field, f"file={raw!r} is not a readable .npy array: {exc}") from None
    if not isinstance(arr, np.ndarray):  # pragma: no cover - mmap of a .npy is an array
        raise ctx.error(field, f"file={raw!r} does not hold one array")
    if arr.dtype.kind not in "fiu":
        raise ctx.error(field, f"file={raw!r} holds dtype {arr.dtype}, not real numbers",
                        hint="save a float or integer array")
    if arr.ndim > _MAX_NDIM:
        raise ctx.error(field, f"file={raw!r} holds an array of {arr.ndim} dimensions, over the maximum of "
                        f"{_MAX_NDIM}", cls=LimitError)
    if arr.size == 0:
        raise ctx.error(field, f"file={raw!r} holds an empty array (shape {list(arr.shape)})")
    if arr.size > limits.max_symbol_elements:
        raise ctx.error(field, f"file={raw!r} holds {arr.size} entries, over the limit of "
                        f"{limits.max_symbol_elements}", hint="raise [limits] max_symbol_elements", cls=LimitError)
    if integer:
        if arr.dtype.kind not in "iu":
            raise ctx.error(field, f'file={raw!r} holds dtype {arr.dtype}, but the symbol has dtype = "int64"',
                            hint="save the labels as integers (numpy.save(path, y.astype(numpy.int64))), "
                                 "or drop dtype for float data")
        if arr.dtype.kind == "u" and int(arr.max()) > _INT64_MAX:
            raise ctx.error(field, f"file={raw!r} holds {int(arr.max())}, beyond the int64 range")
        return np.array(arr, dtype=np.int64)
    arr = np.array(arr, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ctx.error(field, f"file={raw!r} contains nan or inf", hint="values must be finite numbers")
    return arr


def _coderef(ctx: _Ctx, raw: Any, field: str, path: Path) -> CodeRef:
    _typed(ctx, raw, str, field, 'a string "path/to/module.py:function"')
    if raw.count(":") != 1:
        raise ctx.error(field, f"{_show(raw)} must be 'path/to/module.py:function'",
                        hint='e.g. code = "impl/net.py:backward"')
    file, func = raw.split(":")
    if not file.endswith(".py"):
        raise ctx.error(field, f"{_show(raw)}: the module {file!r} must be a .py file",
                        hint='e.g. code = "impl/net.py:backward"')
    if not _IDENT_RE.match(func) or keyword.iskeyword(func):
        raise ctx.error(field, f"{_show(raw)}: {func!r} is not a function name",
                        hint='e.g. code = "impl/net.py:backward"')
    return CodeRef(path=(path.parent / file), function=func, text=raw)


def _candidates(ctx: _Ctx, raw: Any, path: Path) -> tuple[CandidateSpec, ...]:
    if isinstance(raw, dict):
        raise ctx.error("[[candidate]]", "candidates are an array of tables",
                        hint="write [[candidate]] (double brackets), not [candidate]")
    _typed(ctx, raw, list, "[[candidate]]", "an array of tables [[candidate]]")
    out: list[CandidateSpec] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        field = f"[[candidate]] #{i + 1}"
        _typed(ctx, item, dict, field, "a table")
        _check_keys(ctx, item, CANDIDATE_KEYS, field)
        if "name" not in item:
            raise ctx.error(field, "missing required key 'name'", hint='add e.g. name = "backprop"')
        name = _typed(ctx, item["name"], str, _sub(field, "name"), "a string")
        if not _NAME_RE.match(name) or len(name) > 100:
            raise ctx.error(_sub(field, "name"), f"invalid candidate name {_show(name)}",
                            hint="use letters, digits, '-', '_' and '.', starting with a letter or digit")
        if name in seen:
            raise ctx.error(_sub(field, "name"), f"duplicate candidate name {name!r} (also candidate "
                            f"#{seen[name] + 1})", hint="candidate names are unique within a case")
        seen[name] = i
        field = f"[[candidate]] {name}"
        if "code" not in item:
            raise ctx.error(field, "missing required key 'code'",
                            hint='add e.g. code = "impl/net.py:backward"')
        raw_expect = item.get("expect", "pass")
        by_dtype: list[tuple[Dtype, Expect]] = []
        if isinstance(raw_expect, dict):
            # per-dtype expectations: expect = { float32 = "fail", float64 = "pass" }; unnamed dtypes expect "pass"
            if not raw_expect:
                raise ctx.error(_sub(field, "expect"), "the expect table is empty",
                                hint='e.g. expect = { float32 = "fail", float64 = "pass" }')
            for key, val in raw_expect.items():
                try:
                    dt = Dtype(key)
                except ValueError:
                    raise ctx.error(_sub(field, "expect"), f"unknown dtype {key!r} in the expect table",
                                    hint="allowed keys: " + ", ".join(d.value for d in Dtype)) from None
                by_dtype.append((dt, _expect_value(ctx, val, _sub(field, f"expect.{key}"))))
            expect = Expect.PASS
        else:
            expect = _expect_value(ctx, raw_expect, _sub(field, "expect"))
        allow_upcast = _typed(ctx, item.get("allow_upcast", False), bool, _sub(field, "allow_upcast"),
                              "true or false")
        kind, device = candidatekeys.kind_and_device(ctx, item, field, _helpers())
        out.append(CandidateSpec(name, _coderef(ctx, item["code"], _sub(field, "code"), path), expect,
                                 tuple(by_dtype), allow_upcast, kind, device))
    return tuple(out)


def _expect_value(ctx: _Ctx, raw: Any, field: str) -> Expect:
    text = _typed(ctx, raw, str, field, '"pass" or "fail" (or a table by dtype)')
    try:
        return Expect(text)
    except ValueError:
        raise ctx.error(field, f"expect={text!r} is not allowed",
                        hint=_suggest(text, ("pass", "fail")) + 'use "pass" or "fail"') from None


def _helpers():
    """This module, whose field helpers :mod:`verigrad.casefile.fdkeys` uses (passed, not imported)."""
    return sys.modules[__name__]


def _check(ctx: _Ctx, raw: Any, symbols=(), path: Path = Path("."), limits: Limits = Limits()) -> CheckSpec:
    _typed(ctx, raw, dict, "[check]", "a table")
    _check_keys(ctx, raw, CHECK_KEYS, "[check]")
    kw: dict[str, Any] = {}
    if "dtypes" in raw:
        items = _typed(ctx, raw["dtypes"], list, "[check] dtypes", 'a list such as ["float32", "float64"]')
        dtypes = []
        allowed = [d.value for d in Dtype]
        for d in items:
            try:
                dtypes.append(Dtype(d))
            except (ValueError, TypeError):
                raise ctx.error("[check] dtypes", f"unknown dtype {_show(d)}",
                                hint=_suggest(str(d), allowed) + "allowed: " + ", ".join(allowed)) from None
        if not dtypes:
            raise ctx.error("[check] dtypes", "the list is empty", hint='e.g. dtypes = ["float64"]')
        kw["dtypes"] = tuple(dict.fromkeys(dtypes))
    if "schemes" in raw:
        kw["schemes"] = fdkeys.check_schemes(ctx, raw["schemes"], _helpers())
    if "steps" in raw:
        steps, scheme_steps = fdkeys.check_steps(ctx, raw["steps"], kw.get("schemes", ()), _helpers())
        kw.update({"steps": steps} if steps is not None else {"scheme_steps": scheme_steps})
    if "coordinate_steps" in raw:
        kw["coordinate_steps"] = fdkeys.coordinate_steps(ctx, raw["coordinate_steps"], symbols, path, limits,
                                                       _helpers())
    if "step_mode" in raw:
        try:
            kw["step_mode"] = StepMode(raw["step_mode"])
        except (ValueError, TypeError):
            raise ctx.error("[check] step_mode", f"step_mode={_show(raw['step_mode'])} is not allowed",
                            hint="use \"absolute\" or \"relative\"") from None
    for key, lo, hi, allowed, hint in (
            ("tolerance_factor", 1, math.inf, "a finite number >= 1",
             "a candidate cannot be asked to beat the float baseline; the default is 32"),
            ("floor_ulps", 0, math.inf, "a finite number >= 0", "the default is 4"),
            ("entry_sigmas", 4.5, 1000, "a number from 4.5 to 1000",
             "the default is 9; below about 3 correct float32 evaluations already fail (docs/numerics.md)")):
        if key in raw:
            v = _typed(ctx, raw[key], (int, float), f"[check] {key}", allowed)
            if not (lo <= v <= hi and v < math.inf):
                raise ctx.error(f"[check] {key}", f"{key}={v} must be {allowed}", hint=hint)
            kw[key] = float(v)
    if "digits" in raw:
        d = _typed(ctx, raw["digits"], int, "[check] digits", "an integer")
        if not 1 <= d <= 1000:
            raise ctx.error("[check] digits", f"digits={d} is out of range", hint="use 1 to 1000 (default 24)")
        kw["digits"] = d
    if "classic" in raw:
        kw["classic"] = _typed(ctx, raw["classic"], bool, "[check] classic", "true or false")
    if "second_order_schemes" in raw:
        kw["second_order_schemes"] = fdkeys.second_order_schemes(ctx, raw["second_order_schemes"], _helpers())
    return CheckSpec(**kw)



def _check_dtype_range(ctx: _Ctx, symbols: tuple[Symbol, ...], check: CheckSpec) -> None:
    """Given values must be representable in every dtype of [check] (x_p = fl_p(x) must be finite)."""
    for dt in check.dtypes:
        big = float(np.finfo(dt.numpy).max)
        for s in symbols:
            if s.value is None:
                continue
            over = np.abs(s.value) > big
            if np.any(over):
                idx = tuple(int(i) for i in np.argwhere(over)[0]) if s.value.ndim else ()
                at = f" at {list(idx)}" if idx else ""
                raise ctx.error(f"[symbols] {s.name}.value", f"{float(s.value[idx]):g}{at} overflows {dt.value} "
                                f"(largest {big:.4g})", cls=LimitError,
                                hint=f"rescale the value, or drop {dt.value} from [check] dtypes")


def find_case_files(paths: Iterable[str | Path]) -> list[Path]:
    """Every ``*.toml`` under the given files/directories, sorted, recursively.

    Raises
    ------
    CaseError
        When a path does not exist, or a directory holds no case files.
    """
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*.toml") if not any(part.startswith((".", "_")) for part in q.relative_to(p).parts))
            if not found:
                raise CaseError("no case files (*.toml) found", where=str(p), hint="point at a case file or a directory of them")
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise CaseError("no such file or directory", where=str(p), hint="check the path")
    return out


# -- the point --------------------------------------------------------------------------


def draw_point(case: Case) -> dict[str, np.ndarray]:
    """The point in float64: given values, and seeded draws in [symbols] order.

    ``numpy-legacy`` uses ``numpy.random.RandomState(seed)`` (``randn(*shape)``,
    ``uniform(a, b, shape)``), reproducing ``numpy.random.seed(seed)`` scripts;
    ``numpy`` uses ``numpy.random.default_rng(seed)``.

    Returns
    -------
    dict of str to ndarray
        float64 arrays (int64 for integer constants), in declaration order, one per symbol.
    """
    legacy = case.rng is RngKind.NUMPY_LEGACY
    rng = np.random.RandomState(case.seed) if legacy else np.random.default_rng(case.seed)
    out: dict[str, np.ndarray] = {}
    for s in case.symbols:
        if s.init is None:
            out[s.name] = np.array(s.value, dtype=np.int64 if s.integer else np.float64)
            continue
        if s.init.kind == "normal":
            z = rng.randn(*s.shape) if legacy else rng.standard_normal(s.shape)
            z = np.asarray(z, dtype=np.float64)
            if (s.init.a, s.init.b) != (0.0, 1.0):
                z = s.init.a + s.init.b * z
        else:
            z = np.asarray(rng.uniform(s.init.a, s.init.b, size=s.shape), dtype=np.float64)
        out[s.name] = z.reshape(s.shape)
    return out


def point_in_dtype(point: dict[str, np.ndarray], dtype: Dtype) -> dict[str, np.ndarray]:
    """x_p = fl_p(x): the point rounded to the dtype (round to nearest).

    Raises
    ------
    CaseError
        If an entry overflows the dtype (e.g. 1e39 in float32).
    """
    out = {}
    with np.errstate(over="ignore"):
        for k, v in point.items():
            if np.asarray(v).dtype.kind in "iu":
                out[k] = v  # an integer constant (labels, indices): never rounded to a float dtype
                continue
            p = v.astype(dtype.numpy)
            bad = ~np.isfinite(p)
            if np.any(bad):
                idx = tuple(int(i) for i in np.argwhere(bad)[0]) if p.ndim else ()
                at = f"[{', '.join(map(str, idx))}]" if idx else ""
                raise LimitError(f"{k}{at} = {float(v[idx]):g} overflows {dtype.value} "
                                 f"(largest {float(np.finfo(dtype.numpy).max):.4g})", field=f"[symbols] {k}",
                                 hint=f"rescale the symbol, or leave {dtype.value} out (--dtype / [check] dtypes)")
            out[k] = p
    return out
