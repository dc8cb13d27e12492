"""``verigrad show``: textbook maths for the terminal (sympy's pretty printer) and LaTeX that compiles.

Every shipped case is shown both ways; the internal helpers of reverse accumulation never
appear undefined; the LaTeX document is checked structurally (balanced braces, environments,
``\\left``/``\\right`` and ``$``; only commands of LaTeX, amsmath and amssymb) and compiled when
``pdflatex`` is on the PATH.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import sympy

from verigrad.casefile.loader import load_case, load_case_text
from verigrad.cli.main import main
from verigrad.engine.model import compile_case
from verigrad.engine.symbolic import textbook
from verigrad.report.formulas import show_latex, show_pretty

CASES = sorted((Path(__file__).resolve().parents[1] / "cases").glob("*.toml"))


@pytest.fixture(scope="module")
def shown():
    out = {}
    for path in CASES:
        model = compile_case(load_case(path))
        out[path.stem] = (model, show_pretty(model, width=80), show_latex(model))
    return out


THREE_LAYER = """\
definitions
  Z₁ = W₁ X + b₁
  A₁ = relu(Z₁)
  Z₂ = W₂ A₁ + b₂
  A₂ = relu(Z₂)
  Z₃ = W₃ A₂ + b₃
  A₃ = σ(Z₃)

the loss
      Σ(-Y ⊙ log(A₃) - (1 - Y) ⊙ log(1 - A₃))
  ℒ = ───────────────────────────────────────
                         3

its exact gradient (reverse accumulation; t₁, t₂, … are shared sub-expressions)
  t₁ = 1 - Y
  t₂ = 1 - A₃
                     ⎛ t₁     Y  ⎞
  t₃ = (1 - σ(Z₃)) ⊙ ⎜──── - ────⎟ ⊙ σ(Z₃)
                     ⎝3⋅t₂   3⋅A₃⎠
  t₄ = (W₃ᵀ t₃) ⊙ H(Z₂)
  t₅ = (W₂ᵀ t₄) ⊙ H(Z₁)
  ∂ℒ/∂W₁ = t₅ Xᵀ
  ∂ℒ/∂b₁ = t₅ 𝟏
  ∂ℒ/∂W₂ = t₄ A₁ᵀ
  ∂ℒ/∂b₂ = t₄ 𝟏
  ∂ℒ/∂W₃ = t₃ A₂ᵀ
  ∂ℒ/∂b₃ = t₃ 𝟏

where
  ⊙: the entrywise product; sums, quotients, powers and functions of arrays are
    entrywise too, with numpy broadcasting; W X (juxtaposition) is the matrix
    product, Xᵀ the transpose, vectors are columns
  relu(z) = max(z, 0)
  σ(z) = 1/(1 + exp(−z)), the logistic sigmoid; σ'(z) = σ(z)(1 − σ(z))
  H(z) = 1 for z > 0, 0 for z ≤ 0: the derivative of relu (taken as 0 at its
    kink)
  Σ A: the sum of every entry of A
  𝟏: the vector of ones (A𝟏 sums each row of A, Aᵀ𝟏 each column)"""


def test_the_three_layer_net_reads_like_a_textbook(shown):
    _, text, _ = shown["gradient-checking-3layer"]
    assert text.startswith("gradient-checking-3layer: 47 parameters\n  variables  W1 (5×4), b1 (5×1)")
    assert text[text.index("definitions"):] == THREE_LAYER


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_no_internal_helper_is_left_undefined(shown, path):
    _, text, tex = shown[path.stem]
    for raw in ("dsigmoid", "dtanh", "broadcast_to", "step(", "[>]", "argmax_weight", "keepdims", "axis="):
        assert raw not in text and raw not in tex, raw
    body = text.split("\nwhere\n")[0]
    where = text.split("\nwhere\n")[1] if "\nwhere\n" in text else ""
    for used, defined in (("H(", "H(z) ="), ("σ(", "σ(z) ="), ("relu(", "relu(z) ="), ("sign(", "sign(z) ="),
                          ("𝟏", "𝟏: the vector of ones"), ("reshape(", "reshape(A, shape)"), (" ⊙ ", "⊙: the"),
                          ("scatter[", "scatter[idx](v)"), ("ismax", "ismax(A)"), ("logsumexpⱼ", "logsumexpⱼ:")):
        if used in body:
            assert defined in where, (used, path.stem)
    assert all(len(line) <= 80 for line in text.splitlines()), path.stem


def test_a_scalar_case_is_its_formula_and_the_derivative_is_sympys(shown):
    model, text, _ = shown["squire-trapp"]
    assert "its exact derivatives" in text and "t₁" not in text
    tb = textbook(model)
    (loss,), (entry,) = [e.rhs for e in tb.entries if e.kind == "loss"], [e.rhs for e in tb.entries
                                                                           if e.kind == "entry"]
    x = next(iter(loss.free_symbols))
    assert sympy.simplify(sympy.diff(loss, x) - entry) == 0


def test_matrix_notation_for_vectors_and_row_sums(shown):
    _, text, _ = shown["logistic-regression-l2"]
    assert "Z = X w + b" in text and "∂ℒ/∂b = Σ(" in text
    _, text, _ = shown["softmax-regression"]
    assert "Z = X Wᵀ + b" in text and "∂ℒ/∂b = t₂ᵀ 𝟏" in text and "logsumexpⱼ(Z)" in text
    _, text, _ = shown["attention-head"]
    assert "∂ℒ/∂Wq = Xᵀ t₄ K" in text


def test_the_loss_never_uses_a_name_defined_after_it(shown):
    for stem, (_, text, _) in shown.items():
        before, _, after = text.partition("\nthe loss\n")
        loss = after.split("\n\n")[0]
        defined_before = set(re.findall(r"^\s*(t[₀-₉]+) =", before, flags=re.M))
        assert set(re.findall(r"t[₀-₉]+", loss)) <= defined_before, stem


# -- LaTeX ---------------------------------------------------------------------------------------

#: control sequences of LaTeX, amsmath and amssymb that the documents may use
KNOWN = set("""documentclass usepackage allowdisplaybreaks begin end section paragraph item
frac left right sqrt sum log exp sin cos tan sinh cosh tanh operatorname mathcal mathbf mathbb mathit
partial in times cdot odot top le ge dots tfrac text textstyle max min sigma pi ell
alpha beta gamma delta epsilon eta theta kappa lambda mu nu rho tau phi chi psi omega
asin acos atan erf textbackslash textasciitilde textasciicircum""".split())


def check_latex(doc: str) -> None:
    """Balanced braces, environments, \\left/\\right and $ ; only known commands; a whole document."""
    body = "\n".join(line for line in doc.splitlines() if not line.lstrip().startswith("%"))
    assert body.lstrip().startswith(r"\documentclass{article}") and body.rstrip().endswith(r"\end{document}")
    stripped = re.sub(r"\\[{}$%&#_ ,;!]", "", body)
    depth = 0
    for ch in stripped:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0, "unbalanced }"
    assert depth == 0, "unbalanced {"
    stack = []
    for kind, env in re.findall(r"\\(begin|end)\{([a-z*]+)\}", body):
        if kind == "begin":
            stack.append(env)
        else:
            assert stack and stack.pop() == env, env
    assert not stack
    for line in body.splitlines():
        assert line.count(r"\left") == line.count(r"\right"), line
        assert re.sub(r"\\\$", "", line).count("$") % 2 == 0, line
    commands = set(re.findall(r"\\([A-Za-z]+)", body))
    assert commands <= KNOWN, commands - KNOWN
    assert "\t" not in body


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_latex_is_a_document_that_compiles(shown, path):
    _, _, tex = shown[path.stem]
    check_latex(tex)
    assert r"\begin{align*}" in tex and r"\mathcal{L} &= " in tex


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no pdflatex on PATH (the structure is checked anyway)")
def test_latex_compiles_with_pdflatex(shown, tmp_path):
    for stem in ("gradient-checking-3layer", "maxpool-ties", "huber-regression", "squire-trapp"):
        (tmp_path / f"{stem}.tex").write_text(shown[stem][2], encoding="utf-8")
        proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", f"{stem}.tex"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout[-3000:]


def test_latex_escapes_the_text_around_the_maths():
    text = ('name = "a_b.c"\ndescription = "x ~ y # z & 50%\\nsecond line"\nloss = "sum(log_s**2)"\n'
            '[symbols]\nlog_s = { shape = [2], value = [1.0, 2.0] }\n')
    tex = show_latex(compile_case(load_case_text(text, path="t.toml")))
    check_latex(tex)
    assert r"\section*{a\_b.c}" in tex and "% x ~ y # z & 50%\n% second line" in tex


def test_show_cli_prints_unwrapped(capsys):
    assert main(["show", str(CASES[0]), "--latex", "--no-color"]) == 0
    out = capsys.readouterr().out
    check_latex(out)
    assert max(len(line) for line in out.splitlines()) > 80  # one equation per line, never wrapped
