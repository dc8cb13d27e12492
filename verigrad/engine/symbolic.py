"""Symbolic views of a compiled case: the loss and its exact gradient as formulas.

Two forms:

* the *array form* (:func:`array_program`): the loss and the gradient written in
  the expression language itself, with shared sub-expressions named ``t1, t2,
  ...`` - the backward pass that reverse accumulation derived, readable at any
  size; rendered as text or LaTeX;
* the *scalar form* (:func:`scalar_gradient`): one sympy expression per entry,
  for small cases (this is also an independent check: tests compare it with
  ``sympy.diff``).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import sympy

from verigrad.expr.graph import Node, Op, const_value, decode_index, topological
from verigrad.engine.model import Model

__all__ = ["Program", "array_program", "scalar_gradient", "SCALAR_LIMIT"]

#: Cases with at most this many scalar entries also get the per-entry sympy form.
SCALAR_LIMIT = 12

_PREC = {"atom": 100, "pow": 90, "unary": 80, "mul": 70, "add": 60, "matmul": 70}

_LATEX_FN = {"exp": r"\exp", "log": r"\log", "sin": r"\sin", "cos": r"\cos", "tan": r"\tan",
             "sinh": r"\sinh", "cosh": r"\cosh", "tanh": r"\tanh", "arcsin": r"\arcsin",
             "arccos": r"\arccos", "arctan": r"\arctan", "sqrt": r"\sqrt"}


@dataclass(frozen=True)
class Program:
    """A list of assignments ``name = expression`` (text or LaTeX) ending with the results."""

    lines: tuple[tuple[str, str], ...]

    def render(self) -> str:
        width = max((len(n) for n, _ in self.lines), default=0)
        return "\n".join(f"{n.ljust(width)} = {e}" for n, e in self.lines)


class _Printer:
    def __init__(self, model: Model, latex: bool) -> None:
        self.latex = latex
        self.names: dict[int, str] = {leaf.id: name for name, leaf in model.leaves.items()}
        for name, node in model.defines.items():
            self.names.setdefault(node.id, name)

    def fmt_name(self, name: str) -> str:
        if not self.latex:
            return name
        base, _, sub = name.partition("_")
        import re

        m = re.match(r"^([A-Za-z]+)(\d+)$", base)
        if m and not sub:
            return f"{m.group(1)}_{{{m.group(2)}}}"
        return name.replace("_", r"\_")

    def expr(self, n: Node, top: bool = False) -> tuple[str, int]:
        if not top and n.id in self.names:
            return self.fmt_name(self.names[n.id]), _PREC["atom"]
        op, a, L = n.op, n.args, self.latex
        if op is Op.LEAF:
            return self.fmt_name(n.params[0]), _PREC["atom"]
        if op is Op.CONST:
            v = const_value(n)
            if isinstance(v, str):
                return (r"\pi" if v == "pi" else "e") if L else v, _PREC["atom"]
            if v.denominator == 1:
                return str(v.numerator), _PREC["atom"] if v >= 0 else _PREC["unary"]
            if L:
                return rf"\frac{{{v.numerator}}}{{{v.denominator}}}", _PREC["atom"]
            return f"{v.numerator}/{v.denominator}", _PREC["mul"]
        if op is Op.NEG:
            s, p = self.expr(a[0])
            return "-" + (s if p > _PREC["unary"] else f"({s})" if not L else rf"\left({s}\right)"), _PREC["unary"]
        binops = {Op.ADD: ("+", "add"), Op.SUB: ("-", "add"), Op.MUL: ("*", "mul"), Op.DIV: ("/", "mul"),
                  Op.POW: ("**", "pow"), Op.MATMUL: ("@", "matmul")}
        if op in binops:
            sym, kind = binops[op]
            prec = _PREC[kind]
            ls, lp = self.expr(a[0])
            rs, rp = self.expr(a[1])
            if L and op is Op.DIV:
                return rf"\frac{{{ls}}}{{{rs}}}", _PREC["atom"]
            if L and op is Op.POW:
                return f"{self.paren(ls, lp, prec + 1)}^{{{rs}}}", prec
            right_need = prec + (1 if op in (Op.SUB, Op.DIV, Op.MATMUL, Op.MUL) else 0)
            if L:
                sym = {"*": r"\odot" if a[0].shape and a[1].shape else r"\,", "@": r"\,"}.get(sym, sym)
            return f"{self.paren(ls, lp, prec)} {sym} {self.paren(rs, rp, right_need)}", prec
        if op is Op.UNARY:
            name = n.params[0]
            inner, _ = self.expr(a[0])
            if L:
                if name == "sqrt":
                    return rf"\sqrt{{{inner}}}", _PREC["atom"]
                if name == "abs":
                    return rf"\left|{inner}\right|", _PREC["atom"]
                fn = _LATEX_FN.get(name, rf"\operatorname{{{name}}}")
                return rf"{fn}\left({inner}\right)", _PREC["atom"]
            return f"{name}({inner})", _PREC["atom"]
        if op is Op.MAXIMUM:
            return self.call("maximum", [self.expr(a[0])[0], self.expr(a[1])[0]]), _PREC["atom"]
        if op is Op.TIE_WEIGHT:
            return self.call("[>]", [self.expr(a[0])[0], self.expr(a[1])[0]]), _PREC["atom"]
        if op is Op.TRANSPOSE:
            s, p = self.expr(a[0])
            if len(n.shape) == 2:
                return (f"{self.paren(s, p, 99)}^T" if L else f"{self.paren(s, p, 99)}.T"), _PREC["atom"]
            return self.call("transpose", [s, f"axes={n.params}"]), _PREC["atom"]
        if op in (Op.SUM, Op.PROD, Op.MAX, Op.LOGSUMEXP):
            axes, keep = n.params
            opts = [self.expr(a[0])[0]]
            if axes is not None:
                opts.append(f"axis={axes[0] if len(axes) == 1 else axes}")
            if keep:
                opts.append("keepdims=True")
            return self.call(op.value, opts), _PREC["atom"]
        if op is Op.ARGMAX_WEIGHT:
            return self.call("argmax_weight", [self.expr(a[0])[0], f"axis={n.params[0]}"]), _PREC["atom"]
        if op is Op.RESHAPE:
            return self.call("reshape", [self.expr(a[0])[0], str(n.shape)]), _PREC["atom"]
        if op is Op.BROADCAST:
            return self.call("broadcast_to", [self.expr(a[0])[0], str(n.shape)]), _PREC["atom"]
        if op is Op.GETITEM:
            s, p = self.expr(a[0])
            return f"{self.paren(s, p, 99)}[{_index_text(decode_index(n.params))}]", _PREC["atom"]
        if op is Op.SCATTER:
            index, shape = n.params
            return self.call("scatter", [self.expr(a[0])[0], f"[{_index_text(decode_index(index))}]",
                                         str(shape)]), _PREC["atom"]
        raise NotImplementedError(op)  # pragma: no cover

    def call(self, name: str, args: list[str]) -> str:
        if self.latex:
            return rf"\operatorname{{{name.replace('_', chr(92) + '_')}}}\left({', '.join(args)}\right)"
        return f"{name}({', '.join(args)})"

    def paren(self, s: str, p: int, need: int) -> str:
        if p >= need:
            return s
        return rf"\left({s}\right)" if self.latex else f"({s})"


def _index_text(index: tuple) -> str:
    out = []
    for i in index:
        if i is None:
            out.append("None")
        elif i is Ellipsis:
            out.append("...")
        elif isinstance(i, slice):
            parts = ["" if v is None else str(v) for v in (i.start, i.stop)]
            out.append(":".join(parts) + (f":{i.step}" if i.step is not None else ""))
        else:
            out.append(str(i))
    return ", ".join(out)


def array_program(model: Model, *, latex: bool = False) -> Program:
    """The loss and its exact gradient as assignments in array notation.

    Sub-expressions used more than once (and not mere leaves or constants) get
    names ``t1, t2, ...``; definitions keep their case-file names.  The result
    lines are ``L`` (the loss) and ``dL/d<variable>`` per variable.
    """
    pr = _Printer(model, latex)
    outputs = [model.loss, *model.gradient.values()]
    nodes = topological(outputs)
    uses: dict[int, int] = {}
    for n in nodes:
        for a in n.args:
            uses[a.id] = uses.get(a.id, 0) + 1
    lines: list[tuple[str, str]] = []
    counter = 0
    out_ids = {o.id for o in outputs}
    depth: dict[int, int] = {}
    for n in nodes:
        if n.op in (Op.LEAF, Op.CONST):
            depth[n.id] = 0
            continue
        named = n.id in pr.names
        d = 1 + max((0 if a.id in pr.names else depth.get(a.id, 0)) for a in n.args)
        depth[n.id] = d
        # name shared sub-expressions, and break long chains so that printing never nests too deeply
        if not named and n.id not in out_ids and ((uses.get(n.id, 0) > 1 and n.op is not Op.NEG) or d > 40):
            counter += 1
            pr.names[n.id] = f"t{counter}"
            named = True
        if named and n.id in pr.names and pr.names[n.id] not in model.leaves:
            lines.append((pr.fmt_name(pr.names[n.id]), pr.expr(n, top=True)[0]))
    lines.append(("L" if not latex else r"\mathcal{L}", pr.expr(model.loss, top=True)[0]))
    for name, g in model.gradient.items():
        lhs = rf"\frac{{\partial \mathcal{{L}}}}{{\partial {pr.fmt_name(name)}}}" if latex else f"dL/d{name}"
        lines.append((lhs, pr.expr(g, top=True)[0]))
    return Program(tuple(lines))


def scalar_gradient(model: Model) -> dict[str, np.ndarray] | None:
    """Per-entry sympy expressions of the gradient (simplified), or None for large cases."""
    total = sum(leaf.size for leaf in model.leaves.values())
    if total > SCALAR_LIMIT:
        return None
    try:
        vals = model.sympy_eval(list(model.gradient.values()))
        return {name: np.vectorize(sympy.simplify, otypes=[object])(v) for name, v in zip(model.gradient, vals)}
    except (NotImplementedError, RecursionError):
        return None


def scalar_loss(model: Model) -> sympy.Expr | None:
    """The loss as one sympy expression, or None for large cases."""
    total = sum(leaf.size for leaf in model.leaves.values())
    if total > SCALAR_LIMIT:
        return None
    try:
        return model.sympy_eval([model.loss])[0][()]
    except RecursionError:
        return None
