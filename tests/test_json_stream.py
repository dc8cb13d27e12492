"""The streamed JSON writer (``verigrad truth --json`` on large gradients) writes exactly the text of ``dumps``."""

from __future__ import annotations

import json

import numpy as np

from verigrad.report.jsonio import Lazy, dumps, iterdumps, write_atomic_stream


def _docs():
    yield {}
    yield []
    yield {"a": [], "b": {}, "c": [[]], "d": [[1, 2], [3]], "e": "ü\"\\\n\t", "f": float("nan"),
           "g": [1.5, float("inf"), -0.0, 1e300, 5e-324], "h": np.arange(6.0).reshape(2, 3),
           "i": np.float32(0.1), "j": [True, False, None, 3], "k": np.array([], dtype=float),
           "l": np.array(["1.5", "x"], dtype=object), "m": np.int64(5), "n": [np.float64(2.5), 1], (1, 2): 3,
           "o": [str(i) + "e-7" for i in range(150_000)], "p": list(np.linspace(-1, 1, 70_001)),
           "q": [1.0, "mixed", 2]}
    yield [1, [2, [3, [], {}]]]
    yield "text"
    yield {"z": np.bool_(True), "p": np.arange(3), "f16": np.float16(0.5), "nested": [{"x": [float("-inf")]}]}


def test_iterdumps_is_dumps_byte_for_byte():
    for doc in _docs():
        assert "".join(iterdumps(doc)) + "\n" == dumps(doc)


def test_lazy_values_and_streamed_file(tmp_path):
    calls = []

    def record():
        calls.append(1)
        return {"gradient": [f"{i}.25" for i in range(100_000)]}

    doc = {"first": {"gradient": ["1"]}, "by_dtype": {"float32": Lazy(record)}}
    eager = {"first": {"gradient": ["1"]}, "by_dtype": {"float32": record()}}
    calls.clear()
    pieces = iterdumps(doc)
    assert calls == []  # nothing is computed before the writer reaches it
    path = tmp_path / "t.json"
    write_atomic_stream(path, (*pieces, "\n"))
    assert calls == [1]
    text = path.read_text(encoding="utf-8")
    assert text == dumps(eager)
    assert json.loads(text)["by_dtype"]["float32"]["gradient"][99_999] == "99999.25"
