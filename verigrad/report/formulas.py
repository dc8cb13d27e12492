"""``verigrad show``: the loss and its exact gradient printed as textbook maths.

The formulas come from :func:`verigrad.engine.symbolic.textbook`; this module prints them:

* :func:`show_pretty` with sympy's pretty printer (Unicode, fractions and powers in two
  dimensions), for the terminal;
* :func:`show_latex` as a complete LaTeX document (``article`` with ``amsmath``) that compiles
  as is: the case as a comment, the variables, ``align*`` blocks for the definitions, the loss
  and the gradient, and the definitions of the helpers the formulas use.

Notation (also printed under the formulas): W X is the matrix product, Xᵀ the transpose,
vectors are columns, ⊙ the entrywise product (sums, quotients, powers and functions of arrays
are entrywise too, with numpy broadcasting), 𝟏 the vector of ones, Σ A the sum of every entry.
"""

from __future__ import annotations

import re
import textwrap

import sympy
from sympy.printing.latex import LatexPrinter
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.pretty.pretty import PrettyPrinter
from sympy.printing.pretty.stringpict import prettyForm, stringPict

from verigrad.engine import symbolic as sy
from verigrad.report.words import plural

__all__ = ["show_text", "show_pretty", "show_latex", "pretty", "latex", "hadamard_form"]

_SUB = str.maketrans("0123456789ijklmnp", "₀₁₂₃₄₅₆₇₈₉ᵢⱼₖₗₘₙₚ")
# index letters of reduced axes 0..6 (pooling windows reduce axis 4 of a 5-D array)
_AXIS = "ijklmnp"
_ENTRY = re.compile(r"^(?P<base>[^\[]+)\[(?P<idx>[0-9, ]+)\]$")


def hadamard_form(expr: sympy.Basic, arrays) -> sympy.Basic:
    """``expr`` with every product of two or more array factors written as a :class:`~verigrad.engine.symbolic.Hadamard`.

    Only how it prints changes: ``Y*log(A)`` of two arrays becomes ``Y ⊙ log(A)``, while a
    number or a scalar times an array stays a plain product.
    """
    if not isinstance(expr, sympy.Basic) or not expr.args:
        return expr
    args = [hadamard_form(a, arrays) for a in expr.args]
    if isinstance(expr, sympy.Mul):
        coeff, num, den = [], [], []
        for a in args:
            if a.is_number:
                coeff.append(a)
            elif isinstance(a, sympy.Pow) and a.exp.is_negative:
                den.append(a)
            else:
                num.append(a)
        arr = [a for a in num if sy.is_array(a, arrays)]
        if len(arr) >= 2:
            scal = [a for a in num if not sy.is_array(a, arrays)]
            return sympy.Mul(*coeff, *scal, sy.Hadamard(*arr), *den, evaluate=False)
        return sympy.Mul(*args, evaluate=False)
    if isinstance(expr, sympy.Add):
        return sympy.Add(*args, evaluate=False)
    if isinstance(expr, sympy.Pow):
        return sympy.Pow(*args, evaluate=False)
    try:
        return expr.func(*args)
    except (TypeError, ValueError):  # pragma: no cover - a construct that cannot be rebuilt prints as is
        return expr


def _ordered_terms(expr: sympy.Add) -> list:
    """Textbook order: positive terms first, and among them matrix products first (W₁X + b₁, y − Xβ)."""
    terms = list(sympy.Add.make_args(expr))

    def key(t):
        negative = t.could_extract_minus_sign()
        return (negative, 0 if t.has(sy.MatProd) else 1)

    return sorted(terms, key=key)


def _entry_parts(name: str) -> tuple[str, str] | None:
    m = _ENTRY.match(name)
    return (m.group("base"), m.group("idx").replace(" ", "")) if m else None


class _Pretty(PrettyPrinter):
    """sympy's pretty printer with verigrad's array notation."""

    def __init__(self, arrays=frozenset(), **settings):
        super().__init__({"use_unicode": True, "wrap_line": False, **settings})
        self.arrays = arrays

    def _atomish(self, e) -> bool:
        return isinstance(e, (sympy.Symbol, sy.Ones, sympy.Function, sy.Transposed, sy.Reduce, sy.SumAll,
                              sy.Sliced, sy.TieWeight, sy.IsMax, sy.Scatter, sy.Reshaped, sy.Permuted,
                              sympy.Number)) and not (isinstance(e, sympy.Number) and e < 0)

    def _wrapped(self, e):
        p = self._print(e)
        return prettyForm(*p.parens()) if not self._atomish(e) and not isinstance(e, sympy.Pow) else p

    def _print_Symbol(self, e, bold_name=False):
        parts = _entry_parts(e.name)
        if parts is None:
            return super()._print_Symbol(e, bold_name)
        base, idx = parts
        head = super()._print_Symbol(sympy.Symbol(base))
        text = head.s if head.height() == 1 else base
        if "," not in idx and not any(ch in text for ch in "₀₁₂₃₄₅₆₇₈₉"):
            return prettyForm(text + idx.translate(_SUB))
        return prettyForm(f"{text}[{idx.replace(',', ', ')}]")

    def _print_Add(self, expr, order=None):
        return super()._print_Add(sympy.Add(*_ordered_terms(expr), evaluate=False), order="none")

    def _print_MatProd(self, e):
        out = None
        for f in e.args:
            p = self._wrapped(f) if not isinstance(f, sympy.Pow) else prettyForm(*self._print(f).parens())
            out = p if out is None else prettyForm(*stringPict.next(out, " ", p))
        out.binding = prettyForm.MUL
        return out

    def _print_Transposed(self, e):
        base = self._wrapped(e.args[0])
        if base.height() == 1:
            return prettyForm(base.s + "ᵀ")
        return base ** prettyForm("T")

    def _print_Hadamard(self, e):
        out = None
        for f in e.args:
            p = self._print(f)
            if isinstance(f, (sympy.Add, sy.MatProd, sy.Hadamard)) or (f.could_extract_minus_sign()):
                p = prettyForm(*p.parens())
            out = p if out is None else prettyForm(*stringPict.next(out, " ⊙ ", p))
        out.binding = prettyForm.MUL
        return out

    def _print_Ones(self, e):
        return prettyForm("𝟏")

    def _print_SumAll(self, e):
        return prettyForm(*stringPict.next(prettyForm("Σ"), prettyForm(*self._print(e.args[0]).parens())))

    def _print_Reduce(self, e):
        op, arg, axes = str(e.args[0]), e.args[1], e.args[2]
        sub = "".join(_AXIS[int(a)] for a in axes).translate(_SUB)
        head = ("Σ" if op == "sum" else op) + sub
        return prettyForm(*stringPict.next(prettyForm(head), prettyForm(*self._print(arg).parens())))

    def _print_TieWeight(self, e):
        a, b = self._print(e.args[0]), self._print(e.args[1])
        return prettyForm(*stringPict.next(prettyForm("["), a, " > ", b, prettyForm("]")))

    def _print_IsMax(self, e):
        sub = "".join(_AXIS[int(a)] for a in e.args[1]).translate(_SUB)
        return prettyForm(*stringPict.next(prettyForm("ismax" + sub), prettyForm(*self._print(e.args[0]).parens())))

    def _print_Sliced(self, e):
        return prettyForm(*stringPict.next(self._wrapped(e.args[0]), prettyForm(f"[{e.args[1]}]")))

    def _print_Scatter(self, e):
        return prettyForm(*stringPict.next(prettyForm(f"scatter[{e.args[1]}]"),
                                           prettyForm(*self._print(e.args[0]).parens())))

    def _print_Reshaped(self, e):
        shape = "×".join(str(int(d)) for d in e.args[1])
        inner = prettyForm(*stringPict.next(self._print(e.args[0]), f", {shape}"))
        return prettyForm(*stringPict.next(prettyForm("reshape"), prettyForm(*inner.parens())))

    def _print_Permuted(self, e):
        inner = prettyForm(*stringPict.next(self._print(e.args[0]), f", {tuple(int(a) for a in e.args[1])}"))
        return prettyForm(*stringPict.next(prettyForm("transpose"), prettyForm(*inner.parens())))

    def _print_Step(self, e):
        return prettyForm(*stringPict.next(prettyForm("H"), prettyForm(*self._print(e.args[0]).parens())))

    def _print_Max(self, e):
        return self._print_minmax("max", e)

    def _print_Min(self, e):
        return self._print_minmax("min", e)

    def _print_minmax(self, name, e):
        inner = None
        for a in e.args:
            p = self._print(a)
            inner = p if inner is None else prettyForm(*stringPict.next(inner, ", ", p))
        return prettyForm(*stringPict.next(prettyForm(name), prettyForm(*inner.parens())))


class _Latex(LatexPrinter):
    """sympy's LaTeX printer with verigrad's array notation."""

    def __init__(self, arrays=frozenset(), **settings):
        super().__init__({"mul_symbol": None, **settings})
        self.arrays = arrays

    def _atomish(self, e) -> bool:
        return isinstance(e, (sympy.Symbol, sy.Ones, sympy.Function, sy.Transposed, sy.Reduce, sy.SumAll,
                              sy.Sliced, sy.TieWeight, sy.IsMax, sy.Scatter, sy.Reshaped, sy.Permuted,
                              sympy.Number)) and not (isinstance(e, sympy.Number) and e < 0)

    def _wrapped(self, e) -> str:
        s = self._print(e)
        return s if self._atomish(e) else rf"\left({s}\right)"

    def _print_Symbol(self, e, style="plain"):
        parts = _entry_parts(e.name)
        if parts is None:
            return super()._print_Symbol(e, style)
        base, idx = parts
        head = super()._print_Symbol(sympy.Symbol(base), style)
        if "," not in idx and "_" not in head:
            return f"{head}_{{{idx}}}"
        return rf"\left({head}\right)_{{{idx}}}"

    def _print_Add(self, expr, order=None):
        return super()._print_Add(sympy.Add(*_ordered_terms(expr), evaluate=False), order="none")

    def _print_MatProd(self, e):
        return r" \, ".join(self._wrapped(f) if not isinstance(f, sympy.Pow) else rf"\left({self._print(f)}\right)"
                            for f in e.args)

    def _print_Transposed(self, e):
        inner = e.args[0]
        base = self._print(inner)
        if not (isinstance(inner, (sympy.Symbol, sy.Ones)) and not _entry_parts(inner.name if
                                                                              isinstance(inner, sympy.Symbol) else "")):
            base = rf"\left({base}\right)"
        return rf"{{{base}}}^{{\top}}"

    def _print_Hadamard(self, e):
        parts = []
        for f in e.args:
            s = self._print(f)
            if isinstance(f, (sympy.Add, sy.MatProd, sy.Hadamard)) or f.could_extract_minus_sign():
                s = rf"\left({s}\right)"
            parts.append(s)
        return r" \odot ".join(parts)

    def _print_Ones(self, e):
        return r"\mathbf{1}"

    def _print_SumAll(self, e):
        return rf"\sum \left({self._print(e.args[0])}\right)"

    def _print_Reduce(self, e):
        op, arg, axes = str(e.args[0]), e.args[1], e.args[2]
        sub = ",".join(_AXIS[int(a)] for a in axes)
        head = r"\sum" if op == "sum" else rf"\operatorname{{{op}}}"
        return rf"{head}_{{{sub}}}\left({self._print(arg)}\right)" if sub else rf"{head}\left({self._print(arg)}\right)"

    def _print_TieWeight(self, e):
        return rf"\left[{self._print(e.args[0])} > {self._print(e.args[1])}\right]"

    def _print_IsMax(self, e):
        sub = ",".join(_AXIS[int(a)] for a in e.args[1])
        return rf"\operatorname{{ismax}}_{{{sub}}}\left({self._print(e.args[0])}\right)"

    def _print_Sliced(self, e):
        return rf"{self._wrapped(e.args[0])}\left[{_latex_index(str(e.args[1]))}\right]"

    def _print_Scatter(self, e):
        return rf"\operatorname{{scatter}}_{{[{_latex_index(str(e.args[1]))}]}}\left({self._print(e.args[0])}\right)"

    def _print_Reshaped(self, e):
        shape = r" \times ".join(str(int(d)) for d in e.args[1])
        return rf"\operatorname{{reshape}}\left({self._print(e.args[0])}, {shape}\right)"

    def _print_Permuted(self, e):
        perm = ", ".join(str(int(a)) for a in e.args[1])
        return rf"\operatorname{{transpose}}\left({self._print(e.args[0])}, ({perm})\right)"

    def _print_Step(self, e, exp=None):
        s = rf"H\left({self._print(e.args[0])}\right)"
        return s if exp is None else rf"{s}^{{{exp}}}"


def _latex_index(text: str) -> str:
    return text.replace(":", "{:}").replace(" ", r"\,")


def pretty(expr: sympy.Basic, *, arrays=frozenset()) -> prettyForm:
    """The 2-D Unicode form of a formula (entrywise products as ⊙)."""
    return _Pretty(arrays)._print(hadamard_form(expr, arrays))


def latex(expr: sympy.Basic, *, arrays=frozenset()) -> str:
    """The LaTeX of a formula (entrywise products as ``\\odot``)."""
    return _Latex(arrays).doprint(hadamard_form(expr, arrays))


# -- the whole page ---------------------------------------------------------------------------------


def _shape_text(shape: tuple) -> str:
    return "×".join(map(str, shape)) if shape else "scalar"


def _lhs_pretty(eq, pr: _Pretty) -> prettyForm:
    if eq.kind == "loss":
        return prettyForm("ℒ")
    name = pr._print(sympy.Symbol(eq.name))
    if eq.kind in ("gradient", "entry"):
        return prettyForm(*stringPict.next(prettyForm("∂ℒ/∂"), name))
    return name


def _lhs_latex(eq, lp: _Latex) -> str:
    if eq.kind == "loss":
        return r"\mathcal{L}"
    name = lp._print(sympy.Symbol(eq.name))
    if eq.kind in ("gradient", "entry"):
        return rf"\frac{{\partial \mathcal{{L}}}}{{\partial {name}}}"
    return name


def _render(form: prettyForm) -> list[str]:
    return [line.rstrip() for line in form.render(wrap_line=False).split("\n")]


def _equation_pretty(eq, arrays, width: int) -> str:
    """``lhs = rhs`` as 2-D text; a sum too wide for ``width`` gets one term per line, under the ``=``."""
    pr = _Pretty(arrays)
    lhs = _lhs_pretty(eq, pr)
    rhs = hadamard_form(eq.rhs, arrays)
    lines = _render(prettyForm(*stringPict.next(lhs, " = ", pr._print(rhs))))
    if max(len(line) for line in lines) + 2 > width and isinstance(eq.rhs, sympy.Add):
        terms = [hadamard_form(t, arrays) for t in _ordered_terms(eq.rhs)]
        pad = prettyForm(" " * (lhs.width() + 1))
        lines = _render(prettyForm(*stringPict.next(lhs, " = ", pr._print(terms[0]))))
        for t in terms[1:]:
            negative = t.could_extract_minus_sign()
            body = pr._print(-t if negative else t)
            lines += _render(prettyForm(*stringPict.next(pad, "- " if negative else "+ ", body)))
    if max(len(line) for line in lines) + 2 > width:
        # still too wide: let sympy cut the picture into chunks of the width
        form = prettyForm(*stringPict.next(lhs, " = ", pr._print(rhs)))
        text = form.render(wrap_line=True, num_columns=max(width - 2, 40), use_unicode=True)
        lines = [line.rstrip() for line in text.split("\n")]
    return "\n".join("  " + line if line else "" for line in lines)


def show_pretty(model, *, width: int = 80) -> str:
    """The loss and its exact gradient of ``model`` for the terminal (sympy's pretty printer)."""
    tb = sy.textbook(model)
    case = model.case
    out = [f"{case.name}: {plural(tb.parameters, 'parameter')}"]
    for label, items in (("variables", tb.variables), ("constants", tb.constants)):
        if items:
            out.append(textwrap.fill(", ".join(f"{n} ({_shape_text(s)})" for n, s in items), width=width,
                                     initial_indent=f"  {label:<10} ", subsequent_indent=" " * 13))
    if case.description:
        out.append("")
        out.extend(textwrap.fill(p, width=width) for p in _paragraphs(case.description))
    arrays = tb.arrays
    if tb.scalar_only and tb.entries:
        sections = [("the loss", [e for e in tb.entries if e.kind == "loss"]),
                    ("its exact derivatives", [e for e in tb.entries if e.kind == "entry"])]
    else:
        sections = [("definitions", _section(tb, "definitions")), ("the loss", _section(tb, "loss")),
                    ("its exact gradient (reverse accumulation; t₁, t₂, … are shared sub-expressions)"
                     if any(e.kind == "shared" for e in _section(tb, "gradient")) else "its exact gradient",
                     _section(tb, "gradient"))]
        if _entries_worth_showing(tb):
            sections.append(("per entry", [e for e in tb.entries if e.kind == "entry"]))
    for title, eqs in sections:
        if not eqs:
            continue
        out.append("")
        out.append(title)
        for eq in eqs:
            out.append(_equation_pretty(eq, arrays if eq.kind != "entry" else frozenset(), width))
    if tb.helpers:
        out.append("")
        out.append("where")
        for key in tb.helpers:
            out.append(textwrap.fill(sy.DEFINITIONS[key][0], width=width, initial_indent="  ", subsequent_indent="    "))
    return "\n".join(out)


#: the per-entry form is shown next to the array form only when every entry is at most this many operations
ENTRY_OPS = 40


def _entries_worth_showing(tb) -> bool:
    """Small formulas per entry help a reader check one by hand; long ones only repeat the array form badly."""
    entries = [e for e in tb.entries if e.kind == "entry"]
    return bool(entries) and all(sympy.count_ops(e.rhs) <= ENTRY_OPS for e in entries)


def _section(tb, name: str) -> list:
    """The equations of one section: the definitions (with the t_k they use) come before the loss,
    the rest of the t_k and the gradient after it."""
    eqs = list(tb.equations)
    last_define = max((i for i, e in enumerate(eqs) if e.kind == "define"), default=-1)
    if name == "definitions":
        return eqs[:last_define + 1]
    if name == "loss":
        return [e for e in eqs if e.kind == "loss"]
    return [e for e in eqs[last_define + 1:] if e.kind in ("shared", "gradient")]


def _paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(text: str) -> str:
    """Plain text for a LaTeX document: the special characters escaped, non-ASCII dropped to ASCII look-alikes."""
    out = "".join(_TEX_SPECIAL.get(ch, ch) for ch in text)
    for a, b in (("—", "---"), ("–", "--"), ("’", "'"), ("“", "``"), ("”", "''"), ("×", r"$\times$"),
                 ("…", r"\dots{}"), ("−", "-"), ("≤", r"$\le$"), ("≥", r"$\ge$")):
        out = out.replace(a, b)
    return "".join(ch if ord(ch) < 128 else "?" for ch in out)


def show_latex(model) -> str:
    """The loss and its exact gradient of ``model`` as a LaTeX document that compiles as is.

    ``article`` with ``amsmath`` and ``amssymb`` only; the case's description is a comment;
    each block of equations is an ``align*`` environment (one equation per line, never wrapped
    in the source); the helpers the formulas use are defined in an ``itemize`` list.
    """
    tb = sy.textbook(model)
    case = model.case
    lp = _Latex(tb.arrays)
    out = [f"% verigrad show --latex {case.path}", f"% case {case.name}: {plural(tb.parameters, 'parameter')}"]
    if case.description:
        out.extend(f"% {line}".rstrip() for line in case.description.strip().splitlines())
    out += [r"\documentclass{article}", r"\usepackage{amsmath,amssymb}", r"\allowdisplaybreaks",
            r"\begin{document}", "", rf"\section*{{{tex_escape(case.name)}}}"]

    def dims(items):
        times = r" \times "
        return ", ".join(rf"${lp._print(sympy.Symbol(n))} \in \mathbb{{R}}"
                         + ("^{" + times.join(map(str, s)) + "}" if s else "") + "$" for n, s in items)

    out.append(f"{plural(tb.parameters, 'parameter')}: {dims(tb.variables)}"
               + (f"; constants: {dims(tb.constants)}" if tb.constants else "") + ".")
    if tb.scalar_only and tb.entries:
        blocks = [("The loss and its exact derivatives", list(tb.entries), frozenset())]
    else:
        blocks = [("Definitions", _section(tb, "definitions"), tb.arrays),
                  ("The loss", _section(tb, "loss"), tb.arrays),
                  ("Its exact gradient" + (r" (reverse accumulation; $t_{1}, t_{2}, \dots$ are shared "
                                           "sub-expressions)" if any(e.kind == "shared" for e in
                                                                     _section(tb, "gradient")) else ""),
                   _section(tb, "gradient"), tb.arrays)]
        if _entries_worth_showing(tb):
            blocks.append(("Per entry", [e for e in tb.entries if e.kind == "entry"], frozenset()))
    for title, eqs, arrays in blocks:
        if not eqs:
            continue
        printer = _Latex(arrays)
        out += ["", rf"\paragraph{{{title}}}", r"\begin{align*}"]
        rows = [f"{_lhs_latex(eq, printer)} &= {printer.doprint(hadamard_form(eq.rhs, arrays))}" for eq in eqs]
        out.append(" \\\\\n".join(rows))
        out.append(r"\end{align*}")
    if tb.helpers:
        out += ["", r"\paragraph{Where}", r"\begin{itemize}"]
        out += [rf"\item {sy.DEFINITIONS[key][1]}" for key in tb.helpers]
        out.append(r"\end{itemize}")
    out += ["", r"\end{document}", ""]
    return "\n".join(out)


def show_text(model, *, latex: bool = False, width: int = 80) -> str:
    """:func:`show_latex` or :func:`show_pretty`."""
    return show_latex(model) if latex else show_pretty(model, width=width)
