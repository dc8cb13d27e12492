"""Small helpers shared by tests: compile a case file, or write a one-loss case and compile it."""

from __future__ import annotations

from verigrad.casefile.loader import load_case
from verigrad.engine.model import compile_case


def model_of(path):
    """The compiled model of a case file (its first case)."""
    case = load_case(path)
    case = case[0] if isinstance(case, (list, tuple)) else case
    return compile_case(case)


def write_case(tmp_path, loss: str, symbols: str, define: str = ""):
    """Write a case named "t" with ``loss``, a ``[symbols]`` body and an optional ``[define]`` body,
    and compile it."""
    p = tmp_path / "c.toml"
    p.write_text(f'name = "t"\nloss = "{loss}"\n[symbols]\n{symbols}\n'
                 + (f"[define]\n{define}\n" if define else ""))
    return model_of(p)
