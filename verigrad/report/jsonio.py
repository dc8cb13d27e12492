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

__all__ = ["SCHEMA_VERSION", "dumps", "write_atomic", "jsonable", "truth_record"]

SCHEMA_VERSION = 2


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a report is an ordinary file
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
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
