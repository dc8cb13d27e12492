"""The package's architecture, enforced: layers, no import cycles, the CLI alone does I/O.

The import graph is built from the source (every ``import`` statement, including the
ones inside functions, which are dependencies too), so the test needs no import of
verigrad and sees exactly what a reader of the code sees.  The layers are those of
``docs/architecture.md``; a package may import only packages of lower layers (and
itself).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "verigrad"

#: bottom to top; a package imports only from strictly lower layers (or from itself)
LAYERS: list[tuple[str, ...]] = [
    ("verigrad.errors",),
    ("verigrad.spec",),
    ("verigrad.expr", "verigrad.schemes"),
    ("verigrad.casefile",),
    ("verigrad.engine",),
    ("verigrad.fd",),
    ("verigrad.kinks",),
    ("verigrad.studies",),
    ("verigrad.grading",),
    ("verigrad.runner",),
    ("verigrad.report",),
    ("verigrad.api", "verigrad.integrations"),
    ("verigrad.cli",),
    ("verigrad.__main__",),
]
LAYER_OF = {pkg: i for i, names in enumerate(LAYERS) for pkg in names}

#: modules allowed to be longer than this must say why in their docstring ("reads better whole")
MAX_LINES = 800
WHOLE_MARK = "reads better whole"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _imports(path: Path, name: str) -> set[str]:
    """Every verigrad module ``path`` imports (absolute names), at any depth of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "verigrad")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "verigrad":
                continue
            out.add(mod)
            for a in node.names:  # `from verigrad.engine import arb` imports a module
                out.add(f"{mod}.{a.name}")
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        graph[name] = {m for m in _imports(path, name) if m in mods and m != name}
    return graph


def _layer(mod: str) -> tuple[str, int]:
    parts = mod.split(".")
    for k in range(len(parts), 0, -1):
        prefix = ".".join(parts[:k])
        if prefix in LAYER_OF:
            return prefix, LAYER_OF[prefix]
    raise KeyError(mod)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer():
    missing = [m for m in _modules() if m != "verigrad" and not any(
        m == p or m.startswith(p + ".") for p in LAYER_OF)]
    assert not missing, f"modules outside every layer of LAYERS (add them to docs/architecture.md too): {missing}"


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, f"import cycles: {cycles}"


def test_imports_follow_the_layers():
    bad = []
    for mod, deps in _graph().items():
        if mod == "verigrad":
            continue
        pkg, level = _layer(mod)
        for dep in deps:
            if dep == "verigrad":
                continue  # the lazy top-level namespace (e.g. __version__)
            dpkg, dlevel = _layer(dep)
            if dpkg != pkg and dlevel >= level:
                bad.append(f"{mod} (layer {level}) imports {dep} (layer {dlevel})")
    assert not bad, "imports against the layers:\n" + "\n".join(sorted(bad))


def test_the_cycle_detector_sees_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_nothing_imports_the_cli():
    offenders = [m for m, deps in _graph().items()
                 if not (m.startswith("verigrad.cli") or m == "verigrad.__main__")
                 and any(d == "verigrad.cli" or d.startswith("verigrad.cli.") for d in deps)]
    assert not offenders, f"modules importing the CLI: {offenders}"


def _io_calls(path: Path) -> list[str]:
    """print(...), x.print(...), sys.exit/argv/stdout/stderr uses, and argparse imports in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in ("print", "exit", "quit", "input"):
                found.append(f"{f.id}() at line {node.lineno}")
            elif isinstance(f, ast.Attribute) and f.attr == "print":
                found.append(f".print() at line {node.lineno}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "sys" \
                and node.attr in ("argv", "exit", "stdout", "stderr"):
            found.append(f"sys.{node.attr} at line {node.lineno}")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if "argparse" in names:
                found.append(f"import argparse at line {node.lineno}")
    return found


#: outside the CLI, only these may touch the process's streams: the worker that runs a
#: candidate redirects its own stdout/stderr into a pipe (it is a child process, not the CLI)
IO_ALLOWED = {"verigrad.runner.candidates"}


def test_only_the_cli_reads_argv_prints_or_exits():
    bad = {}
    for name, path in _modules().items():
        if name.startswith("verigrad.cli") or name == "verigrad.__main__" or name in IO_ALLOWED:
            continue
        calls = [c for c in _io_calls(path) if not c.startswith("sys.std")] if name.startswith(
            "verigrad.integrations") else _io_calls(path)
        if calls:
            bad[name] = calls
    assert not bad, f"argv, printing or exits outside verigrad.cli: {bad}"


def test_modules_are_short_or_say_why():
    long = []
    for name, path in _modules().items():
        n = len(path.read_text(encoding="utf-8").splitlines())
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        if n > MAX_LINES and WHOLE_MARK not in doc:
            long.append(f"{name}: {n} lines")
    assert not long, f"modules over {MAX_LINES} lines without '{WHOLE_MARK}' in the docstring: {long}"


@pytest.mark.parametrize("statement, heavy", [
    ("import verigrad", ("numpy", "mpmath", "sympy", "flint", "rich")),
    ("import verigrad.cli", ("numpy", "mpmath", "sympy", "flint", "rich")),
])
def test_lazy_imports(statement, heavy):
    code = f"{statement}; import sys; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"`{statement}` loads {out.strip()}"


def test_lazy_public_names_resolve():
    import verigrad

    for name in verigrad.__all__:
        assert getattr(verigrad, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        verigrad.nope  # noqa: B018
