"""Text a candidate produces is untrusted: escaped where it enters the records, never a crash
(issue 19, item 1).

A candidate that prints, raises with, or returns a key holding an unpaired surrogate or control
characters; one that writes straight to file descriptors 1 and 2; one that closes them, or closes
every inherited descriptor: `verigrad run` (a real subprocess) still writes every report
(terminal, --json, --junit, --html), keeps the candidate's raw output out of its own, prints no
traceback, and names each candidate's failure.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import xml.dom.minidom
from pathlib import Path

import numpy as np
import pytest

from verigrad.runner.untrusted import MAX_TEXT_CHARS, escape_text, escape_values, safe_str

IMPL = r'''
import os, sys, warnings
import numpy as np

def good(x):
    return {"x": 2 * x}

def prints_surrogate(x):
    print("bad \ud800 text")
    print("err \udfff", file=sys.stderr)
    return {"x": 2 * x}

def raises_surrogate(x):
    raise ValueError("bad \ud800 message")

def surrogate_key(x):
    return {"x": 2 * x, "y\ud800": x}

def control_chars(x):
    print("nul \x00 esc \x1b[31mred\x1b[0m bell \x07 nonchar \uffff")
    return {"x": 2 * x}

def surrogate_string_value(x):
    return {"x": np.array(["a\ud800"])}

class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no str for you")

def unprintable_exception(x):
    raise Unprintable()

def writes_fds(x):
    os.write(1, b"RAW-FD1-OUTPUT\n")
    os.write(2, b"RAW-FD2-OUTPUT \xff\xfe\n")
    return {"x": 2 * x}

def closes_stdio(x):
    os.close(1)
    os.close(2)
    return {"x": 2 * x}

def closes_everything(x):
    os.closerange(0, 4096)
    return {"x": 2 * x}

def warns(x):
    np.log(np.array(-1.0))
    warnings.warn("planted user warning")
    return {"x": 2 * x}
'''

PASSING = ["good", "prints_surrogate", "control_chars", "writes_fds", "closes_stdio", "warns", "good_after"]
FAILING = {  # candidate: (verdict, regex for the message)
    "raises_surrogate": ("error", r"raised ValueError: bad \\ud800 message"),
    "surrogate_key": ("error", r"returned key\(s\) y\\ud800 that are not variables"),
    "surrogate_string_value": ("error", r"x is not a numeric array"),
    "unprintable_exception": ("error", r"raised Unprintable: <Unprintable object whose str\(\) raised>"),
    "closes_everything": ("error", r"closed file descriptors it did not open \(os\.close / os\.closerange\), among "
                                   r"them the worker's pipe to verigrad"),
}


def _names() -> list[str]:
    order = ["good", "prints_surrogate", "raises_surrogate", "surrogate_key", "control_chars",
             "surrogate_string_value", "unprintable_exception", "writes_fds", "closes_stdio", "closes_everything",
             "warns"]
    return order


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("text")
    (d / "impl").mkdir()
    (d / "impl" / "m.py").write_text(IMPL, encoding="utf-8")
    text = textwrap.dedent('''
        name = "untrusted-text"
        loss = "sum(x**2)"
        [symbols]
        x = { shape = [3], init = "normal" }
        [check]
        dtypes = ["float64"]
        ''')
    for name in _names():
        text += f'[[candidate]]\nname = "{name}"\ncode = "impl/m.py:{name}"\n'
    text += '[[candidate]]\nname = "good_after"\ncode = "impl/m.py:good"\n'
    (d / "case.toml").write_text(text)
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    proc = subprocess.run([sys.executable, "-m", "verigrad", "run", "case.toml", "--no-fd", "--no-color", "-v",
                           "--json", "r.json", "--junit", "r.xml", "--html", "r.html"],
                          cwd=d, capture_output=True, timeout=300, env=env)
    return d, proc


def _results(doc) -> dict[str, dict]:
    out = {}

    def walk(o):
        if isinstance(o, dict):
            if "candidate" in o and "verdict" in o:
                out[o["candidate"]] = o
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(doc)
    return out


def test_the_run_ends_normally_with_every_report(run):
    d, proc = run
    err = proc.stderr.decode("utf-8")
    assert proc.returncode == 1, err  # some "pass" expectations are not met; not a crash (no 2, no traceback)
    assert "Traceback" not in err and "Traceback" not in proc.stdout.decode("utf-8")
    assert "UnicodeEncodeError" not in err
    for name in ("r.json", "r.xml", "r.html"):
        assert (d / name).stat().st_size > 0, name


def test_raw_descriptor_output_never_reaches_verigrads_streams(run):
    _, proc = run
    both = proc.stdout + proc.stderr
    assert b"RAW-FD1-OUTPUT" not in both
    assert b"RAW-FD2-OUTPUT" not in both


def test_every_report_is_valid_and_escaped(run):
    d, _ = run
    doc = json.loads((d / "r.json").read_text(encoding="utf-8"))
    xml.dom.minidom.parse(str(d / "r.xml"))  # raises on a NUL or an unpaired surrogate
    html = (d / "r.html").read_text(encoding="utf-8")
    for raw in ("\ud800", "\x00", "\x1b"):
        assert raw not in json.dumps(doc, ensure_ascii=False)
        assert raw not in html
    assert "\\ud800" in html


def test_each_candidate_is_graded_or_named(run):
    d, _ = run
    res = _results(json.loads((d / "r.json").read_text(encoding="utf-8")))
    assert set(res) == set(PASSING) | set(FAILING)
    for name in PASSING:
        assert res[name]["verdict"] == "pass", (name, res[name].get("message"))
    for name, (verdict, pattern) in FAILING.items():
        assert res[name]["verdict"] == verdict, name
        assert re.search(pattern, res[name]["message"]), res[name]["message"]


def test_captured_output_is_kept_as_escaped_text(run):
    d, _ = run
    res = _results(json.loads((d / "r.json").read_text(encoding="utf-8")))
    assert res["prints_surrogate"]["stdout"] == "bad \\ud800 text\nerr \\udfff\n"
    assert res["control_chars"]["stdout"] == "nul \\x00 esc \\x1b[31mred\\x1b[0m bell \\x07 nonchar \\uffff\n"
    assert res["writes_fds"]["stdout"] == "RAW-FD1-OUTPUT\nRAW-FD2-OUTPUT \\xff\\xfe\n"
    # a candidate's numpy warning and its own warning are its output, not verigrad's stderr
    assert "RuntimeWarning: invalid value encountered in log" in res["warns"]["stdout"]
    assert "UserWarning: planted user warning" in res["warns"]["stdout"]


def test_terminal_report_shows_the_escaped_text(run):
    _, proc = run
    out = re.sub(r"\s+", " ", proc.stdout.decode("utf-8"))
    assert "raised ValueError: bad \\ud800 message" in out
    assert "returned key(s) y\\ud800 that are not variables" in out


# -- the escaping itself -------------------------------------------------------------------------


@pytest.mark.parametrize("raw, escaped", [
    ("plain ascii and ünïcödé ✓ 😀", "plain ascii and ünïcödé ✓ 😀"),
    ("tab\tand\nnewline", "tab\tand\nnewline"),
    ("lone \ud800 high", "lone \\ud800 high"),
    ("lone \udfff low", "lone \\udfff low"),
    ("nul \x00 bell \x07 esc \x1b cr \r del \x7f c1 \x85",
     "nul \\x00 bell \\x07 esc \\x1b cr \\x0d del \\x7f c1 \\x85"),
    ("nonchars \ufffe \uffff", "nonchars \\ufffe \\uffff"),
])
def test_escape_text(raw, escaped):
    out = escape_text(raw)
    assert out == escaped
    out.encode("utf-8")  # never raises


def test_escape_text_keeps_start_and_end_of_long_text():
    raw = "a" * MAX_TEXT_CHARS + "b" * MAX_TEXT_CHARS
    out = escape_text(raw)
    assert out.startswith("a" * (MAX_TEXT_CHARS // 2)) and out.endswith("b" * (MAX_TEXT_CHARS // 2))
    assert f"[... {MAX_TEXT_CHARS} characters left out ...]" in out


def test_escape_values_escapes_keys_and_strings_but_not_numbers():
    arr = np.arange(3.0)
    out = escape_values([{"w\ud800": arr, "s": "x\x00", "u": np.array(["\ud800", "ok"])}])
    (d,) = out
    assert set(d) == {"w\\ud800", "s", "u"}
    assert d["w\\ud800"] is arr
    assert d["s"] == "x\\x00"
    assert d["u"].tolist() == ["\\ud800", "ok"]


def test_safe_str_of_an_object_whose_str_raises():
    class Bad:
        def __str__(self):
            raise KeyError("x")

    assert safe_str(Bad()) == "<Bad object whose str() raised>"
