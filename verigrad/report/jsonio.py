"""Deterministic JSON documents and atomic writes.

Every document carries ``"verigrad"`` (the package version) and
``"schema_version"``; timing figures live under the single key ``"timing"`` so
that the rest of a document is byte-identical between runs.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SCHEMA_VERSION", "dumps", "write_atomic", "jsonable", "truth_record", "Lazy", "iterdumps",
           "write_atomic_stream"]

SCHEMA_VERSION = 4  # 3: dtype values float16 and bfloat16 (issue 23); 4: the verdict unresolved (issue 17)


def jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays and non-finite floats into JSON-safe values.

    Non-finite floats become the strings ``"nan"``, ``"inf"``, ``"-inf"``.
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        v = float(value)
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def dumps(doc: dict) -> str:
    """Serialise a document deterministically (sorted keys are *not* used: field order is the schema's)."""
    return json.dumps(jsonable(doc), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and rename, so a reader never sees half a file."""
    write_atomic_stream(path, (text,))


class Lazy:
    """A value of a document computed only when :func:`iterdumps` reaches it (and not kept afterwards)."""

    __slots__ = ("fn",)

    def __init__(self, fn) -> None:
        self.fn = fn


#: list entries encoded per chunk by the fast path of :func:`iterdumps`
_CHUNK = 65536


def _fast_items(items: list) -> list[str] | None:
    """The JSON texts of a list of plain strings or finite floats, or None (then the general path).

    The texts are exactly those of :func:`json.dumps` (``ensure_ascii=False``) after :func:`jsonable`:
    strings through the encoder's own ``encode_basestring``, floats through ``float.__repr__``.
    """
    from json.encoder import encode_basestring

    kinds = set(map(type, items))
    if kinds <= {str}:
        return list(map(encode_basestring, items))
    if kinds <= {float} and all(map(math.isfinite, items)):
        return list(map(float.__repr__, items))
    return None


def iterdumps(value: Any, level: int = 0):
    """The text of :func:`dumps` (without its final newline), in pieces; for writing large documents.

    ``"".join(iterdumps(doc)) + "\n" == dumps(doc)`` for every document :func:`dumps` accepts; in
    addition numpy arrays are converted row by row and :class:`Lazy` values are computed when
    reached, so that the whole text (and every lazy value at once) is never held in memory.
    """
    if isinstance(value, Lazy):
        yield from iterdumps(value.fn(), level)
        return
    if isinstance(value, dict):
        if not value:
            yield "{}"
            return
        inner = "\n" + "  " * (level + 1)
        first = True
        for k, v in value.items():
            yield ("{" if first else ",") + inner + json.dumps(str(k), ensure_ascii=False) + ": "
            first = False
            yield from iterdumps(v, level + 1)
        yield "\n" + "  " * level + "}"
        return
    if isinstance(value, np.ndarray) and value.ndim >= 1:
        value = value if value.ndim == 1 else list(value)  # rows are converted one at a time
    if isinstance(value, (list, tuple, np.ndarray)):
        if len(value) == 0:
            yield "[]"
            return
        inner = "\n" + "  " * (level + 1)
        sep = "," + inner
        yield "[" + inner
        for start in range(0, len(value), _CHUNK):
            chunk = value[start:start + _CHUNK]
            if isinstance(chunk, np.ndarray):
                chunk = chunk.tolist()
            texts = _fast_items(chunk) if isinstance(chunk, list) else None
            if start:
                yield sep
            if texts is not None:
                yield sep.join(texts)
            else:
                for i, v in enumerate(chunk):
                    if i:
                        yield sep
                    yield from iterdumps(v, level + 1)
        yield "\n" + "  " * level + "]"
        return
    yield json.dumps(jsonable(value), ensure_ascii=False, allow_nan=False)


def write_atomic_stream(path: str | Path, pieces) -> None:
    """Write the text ``pieces`` (an iterable of str) to ``path`` via a temporary file and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a report is an ordinary file
        with os.fdopen(fd, "w", encoding="utf-8", buffering=1 << 20) as fh:
            for piece in pieces:
                fh.write(piece)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def truth_record(truth) -> dict:
    """The JSON record of a :class:`~verigrad.engine.truth.Truth` (see docs/report-schema.md)."""
    return {
        "case": truth.case,
        "dtype": truth.dtype.value,
        "digits": truth.digits,
        "loss": truth.decimal(truth.loss[()]),
        "gradient": {k: truth.decimals(k).tolist() for k in truth.exact_zero},
        "exact_zeros": {k: [list(map(int, i)) for i in zip(*np.nonzero(z))] if z.ndim else ([[]] if z[()] else [])
                        for k, z in truth.exact_zero.items()},
        "absolute_only": {k: [list(map(int, i)) for i in zip(*np.nonzero(a))] if a.ndim else ([[]] if a[()] else [])
                          for k, a in truth.absolute.items()},
        "precision_bits": truth.precision,
        "point": {k: v.tolist() for k, v in truth.point.items()},
    }
