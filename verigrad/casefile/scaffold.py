"""``verigrad new NAME``: scaffold a commented case file and a candidate stub.

The scaffold is a complete, valid case that passes out of the box -- a small
ridge-regression loss with a correct gradient and a deliberately buggy one
(declared ``expect = "fail"``, so it shows what a caught bug looks like) -- with
comments at every place a user changes.

Files written (relative to ``--dir``):

- ``NAME.toml``: the case file;
- ``impl/NAME_WITH_UNDERSCORES.py``: the candidate module.

Existing files are never overwritten without ``--force``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from verigrad.errors import UsageError

__all__ = ["scaffold", "Scaffold", "case_text", "module_text"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")


@dataclass(frozen=True)
class Scaffold:
    """The files :func:`scaffold` wrote.

    Attributes
    ----------
    case_file : Path
        ``DIR/NAME.toml``.
    module : Path
        ``DIR/impl/NAME_WITH_UNDERSCORES.py``.
    """

    case_file: Path
    module: Path


def module_name(name: str) -> str:
    """The candidate module's stem: the case name with ``-`` as ``_`` (``my-loss`` -> ``my_loss``)."""
    stem = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return stem if stem[0].isalpha() or stem[0] == "_" else f"case_{stem}"


def case_text(name: str) -> str:
    """The commented case file of a new case ``name`` (valid as written)."""
    mod = module_name(name)
    return f'''# verigrad case file: {name}
# Run it:   verigrad run {name}.toml
# Format:   docs/case-files.md.  Every key below is explained next to it; change
#           the loss, the symbols and the candidates to your own problem.

# A unique name (letters, digits, "-", "_", "."); reports and tests use it.
name = "{name}"
description = """
Ridge regression: L(w) = 1/(2n) ||A w - b||^2 + (lam/2) ||w||^2.
Replace this with a sentence on what the loss is and why it is checked."""

# The point: variables/constants with `init` are drawn from this seed, so every
# run grades the same numbers.  rng = "numpy" uses numpy.random.default_rng(seed);
# "numpy-legacy" reproduces numpy.random.seed(seed) + randn scripts.
seed = 0
rng = "numpy"

# The loss, in the safe expression language (numpy-like): + - * / ** @,
# sum/mean(..., axis=...), exp, log, tanh, sigmoid, relu, maximum, ... and the
# names declared under [symbols] and [define].  It must be a scalar.
loss = "mean((A @ w - b)**2) / 2 + lam * sum(w**2) / 2"

[symbols]
# Constants are data: not differentiated.  `init` draws them ("normal",
# "normal(mu, sigma)", "uniform(a, b)"); `value` gives them; `file` loads a .npy.
A   = {{ constant = true, shape = [8, 3], init = "normal" }}
b   = {{ constant = true, shape = [8], init = "normal(0, 2)" }}
lam = {{ constant = true, value = 0.1 }}
# Variables are what the gradient is taken with respect to.
w   = {{ shape = [3], init = "normal" }}

# [define] names sub-expressions to keep the loss readable, e.g.
# [define]
# r = "A @ w - b"
# and then: loss = "mean(r**2) / 2 + lam * sum(w**2) / 2"

# Candidates: functions that claim to compute the gradient.  Each is called with
# every symbol as a keyword argument (numpy arrays of the dtype under test) and
# returns {{"w": array}} -- one array per variable, of its shape and dtype.
# expect = "pass": it must agree with the exact gradient as well as the dtype allows.
# expect = "fail": a known-buggy candidate that verigrad must catch.
[[candidate]]
name = "hand-written"
code = "impl/{mod}.py:gradient"
expect = "pass"

# An example of a caught bug: delete this block once you have seen its report.
[[candidate]]
name = "descent-direction"
code = "impl/{mod}.py:gradient_descent_direction"
expect = "fail"

[check]
# The dtypes in which candidates are graded.
dtypes = ["float32", "float64"]
# Finite-difference schemes graded next to the candidates (informational), e.g.
# schemes = ["forward", "central", "complex-step"]
'''


def module_text(name: str) -> str:
    """The candidate module of a new case ``name``: a correct gradient and an example bug."""
    return f'''"""Candidate gradients of the verigrad case {name} ({name}.toml).

verigrad calls each function with every symbol of the case as a keyword
argument -- numpy arrays in the dtype under test (float32 or float64; 0-d
arrays for scalars) -- and grades the returned mapping {{variable: array}}
against the exact gradient.  Compute in the dtype you are given: returning
float64 for float32 inputs means float32 was not exercised (verigrad says so).
"""

import numpy as np


def gradient(A, b, lam, w):
    """d/dw of 1/(2n) ||A w - b||^2 + (lam/2) ||w||^2 = A^T (A w - b) / n + lam w.

    Replace the body with your own gradient code (and the parameters with the
    names of your symbols, or accept ``**symbols``).
    """
    n = A.shape[0]
    r = A @ w - b
    return {{"w": A.T @ r / n + lam * w}}


def gradient_descent_direction(A, b, lam, w):
    """A typical bug, kept as an example: it returns the descent direction -g, not g."""
    n = A.shape[0]
    r = A @ w - b
    return {{"w": -(A.T @ r / n + lam * w)}}
'''


def scaffold(name: str, directory: str | Path = ".", *, force: bool = False) -> Scaffold:
    """Write ``NAME.toml`` and ``impl/NAME_WITH_UNDERSCORES.py`` under ``directory``.

    Parameters
    ----------
    name : str
        The case name: letters, digits, ``-`` and ``_``, starting with a letter
        or digit.
    directory : str or Path
        Created if missing.
    force : bool
        Overwrite existing files.

    Returns
    -------
    Scaffold

    Raises
    ------
    UsageError
        For an invalid name, or when a file exists and ``force`` is false
        (nothing is written then).

    Examples
    --------
    >>> import tempfile
    >>> out = scaffold("my-loss", tempfile.mkdtemp())
    >>> out.case_file.name, out.module.name
    ('my-loss.toml', 'my_loss.py')
    """
    if not _NAME_RE.match(name) or len(name) > 100:
        raise UsageError(f"invalid case name {name!r}: use letters, digits, '-' and '_', starting with a letter "
                         "or digit (e.g. `verigrad new my-loss`)", name=name)
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"--dir={str(directory)!r} is a file, not a directory", dir=str(directory))
    target = Scaffold(directory / f"{name}.toml", directory / "impl" / f"{module_name(name)}.py")
    existing = [p for p in (target.case_file, target.module) if p.exists()]
    if existing and not force:
        listed = " and ".join(str(p) for p in existing)
        raise UsageError(f"{listed} already exist{'s' if len(existing) == 1 else ''}; not overwriting "
                         f"(use --force to replace, or choose another name or --dir)",
                         existing=[str(p) for p in existing])
    target.module.parent.mkdir(parents=True, exist_ok=True)
    target.case_file.write_text(case_text(name), encoding="utf-8")
    target.module.write_text(module_text(name), encoding="utf-8")
    return target
