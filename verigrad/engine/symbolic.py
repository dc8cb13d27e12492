"""Symbolic views of a compiled case: the loss and its exact gradient as textbook formulas.

:func:`textbook` turns the graphs of a :class:`~verigrad.engine.model.Model` (the loss and the
gradient that reverse accumulation derived) into sympy expressions written the way a textbook
or a paper writes them:

* in matrix notation where the case is written with matrices: ``W1 @ X`` is the matrix
  product W₁X (:class:`MatProd`), ``X.T`` the transpose Xᵀ (:class:`Transposed`), vectors are
  columns, a sum over the rows or columns of a matrix is a product with the ones vector 𝟏
  (:class:`Ones`), a sum over every entry is Σ (:class:`SumAll`);
* products of two arrays are entrywise (⊙, :class:`Hadamard`, decided when printing);
  quotients, powers and functions of arrays are entrywise too, with numpy broadcasting;
* the internal helpers of reverse accumulation are rewritten away or named and defined:
  ``dsigmoid(z)`` is σ(z)(1 − σ(z)), ``dtanh(z)`` is 1 − tanh²(z), ``step`` is the Heaviside
  function H, ``sign`` and the tie weight of ``maximum`` are defined (:data:`DEFINITIONS`),
  ``broadcast_to`` and the ``reshape`` that only adds or drops axes of length one are implicit;
* the shared sub-expressions of the backward pass are named t₁, t₂, …; trivial ones
  (numbers, a symbol, its transpose) are written in place.

The result is a :class:`Textbook` record: equations of sympy expressions and the definitions
they use.  How they are printed (sympy's pretty printer, LaTeX) is
:mod:`verigrad.report.formulas`.  :func:`scalar_gradient` and :func:`scalar_loss` give the
per-entry sympy form for small cases (also an independent check: tests compare it with
``sympy.diff``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy
from sympy.core.symbol import Str

from verigrad.engine.model import Model
from verigrad.expr.graph import Node, Op, const_value, decode_index, topological

__all__ = ["Textbook", "Equation", "textbook", "scalar_gradient", "scalar_loss", "SCALAR_LIMIT", "DEFINITIONS",
           "MatProd", "Transposed", "Hadamard", "Ones", "SumAll", "Reduce", "TieWeight", "IsMax", "Sliced",
           "Scatter", "Reshaped", "Permuted", "Step", "is_array"]

#: Cases with at most this many scalar entries also get the per-entry sympy form.
SCALAR_LIMIT = 12


# -- the array constructs, as sympy expressions (printed by verigrad.report.formulas) ---------------


def _as_sympy(a):
    """A sympy object or a number as sympy; ``strict``: a string is refused, never parsed (the
    arguments come from the graph, and no text may reach sympy's parser)."""
    return a if isinstance(a, sympy.Basic) else sympy.sympify(a, strict=True)


class _ArrayExpr(sympy.Expr):
    """Base of the array constructs: kept as written (no evaluation), entrywise-commutative."""

    is_commutative = True

    def __new__(cls, *args):
        return sympy.Expr.__new__(cls, *[_as_sympy(a) for a in args])


class MatProd(_ArrayExpr):
    """The matrix product of its arguments, in order: ``MatProd(W, X)`` is W X (nested products flatten)."""

    def __new__(cls, *args):
        flat, coeff = [], sympy.Integer(1)
        for a in (_as_sympy(x) for x in args):
            c, rest = a.as_coeff_Mul() if isinstance(a, sympy.Mul) else (sympy.Integer(1), a)
            coeff *= c  # numbers commute with the matrix product: -2 A B, not (-2 A) B
            flat.extend(rest.args if isinstance(rest, MatProd) else (rest,))
        if any(f.is_zero for f in flat):
            return sympy.Integer(0)
        return coeff * _ArrayExpr.__new__(cls, *flat) if coeff != 1 else _ArrayExpr.__new__(cls, *flat)


class Transposed(_ArrayExpr):
    """The transpose of a matrix (or of a column vector: a row); (Aᵀ)ᵀ is A, a number is its own."""

    def __new__(cls, arg):
        arg = _as_sympy(arg)
        if isinstance(arg, Transposed):
            return arg.args[0]
        if arg.is_number:
            return arg
        return _ArrayExpr.__new__(cls, arg)


class Hadamard(_ArrayExpr):
    """The entrywise product of two or more arrays (inserted when printing, by the report layer)."""


class Ones(sympy.Atom):
    """The column vector of ones 𝟏 (its length is implied by what it multiplies)."""

    is_commutative = True

    def __hash__(self):
        return hash("verigrad.Ones")

    def __eq__(self, other):
        return isinstance(other, Ones)

    def _hashable_content(self):
        return ()


class SumAll(_ArrayExpr):
    """The sum of every entry of its argument (a scalar)."""


class Reduce(_ArrayExpr):
    """``Reduce(Str(op), A, Tuple(axes))``: ``op`` (sum, max, prod, logsumexp) over the given axes."""


class TieWeight(_ArrayExpr):
    """``[a > b]``: 1 where a > b, ½ where a = b, 0 where a < b (the derivative of max(a, b) in a)."""


class IsMax(_ArrayExpr):
    """``IsMax(A, Tuple(axes))``: 1/k at the k entries where A reaches its maximum along the axes, else 0."""


class Sliced(_ArrayExpr):
    """``Sliced(A, Str("0::2, 1:"))``: numpy slicing A[0::2, 1:]."""


class Scatter(_ArrayExpr):
    """``Scatter(v, Str(index), Tuple(shape))``: zeros of ``shape`` with v at [index] (the adjoint of slicing)."""


class Permuted(_ArrayExpr):
    """``Permuted(A, Tuple(axes))``: numpy's ``transpose(A, axes)`` of an array of more than two axes."""


class Reshaped(_ArrayExpr):
    """``Reshaped(A, Tuple(shape))``: the entries of A in row-major order, in another shape."""


class Step(sympy.Function):
    """H(z) = 1 for z > 0 and 0 for z <= 0: the derivative of relu (0 at its kink)."""

    nargs = 1


_SIGMA = sympy.Function("sigma")
_RELU = sympy.Function("relu")
_SOFTPLUS = sympy.Function("softplus")

#: helper -> (plain-text definition, LaTeX definition in text mode with inline maths); printed under the
#: formulas that use the helper
DEFINITIONS: dict[str, tuple[str, str]] = {
    "Hadamard": ("⊙: the entrywise product; sums, quotients, powers and functions of arrays are entrywise too, "
                 "with numpy broadcasting; W X (juxtaposition) is the matrix product, Xᵀ the transpose, vectors "
                 "are columns",
                 r"$\odot$: the entrywise product; sums, quotients, powers and functions of arrays are entrywise "
                 r"too, with numpy broadcasting; $W X$ is the matrix product, $X^{\top}$ the transpose, vectors "
                 r"are columns"),
    "sigma": ("σ(z) = 1/(1 + exp(−z)), the logistic sigmoid; σ'(z) = σ(z)(1 − σ(z))",
              r"$\sigma(z) = 1/(1 + e^{-z})$, the logistic sigmoid; $\sigma'(z) = \sigma(z)\,(1 - \sigma(z))$"),
    "relu": ("relu(z) = max(z, 0)", r"$\operatorname{relu}(z) = \max(z, 0)$"),
    "Step": ("H(z) = 1 for z > 0, 0 for z ≤ 0: the derivative of relu (taken as 0 at its kink)",
             r"$H(z) = 1$ for $z > 0$, $0$ for $z \le 0$: the derivative of relu (taken as $0$ at its kink)"),
    "sign": ("sign(z) = 1, 0, −1 for z > 0, z = 0, z < 0: the derivative of |z| (0 at its kink)",
             r"$\operatorname{sign}(z) = 1, 0, -1$ for $z > 0$, $z = 0$, $z < 0$: the derivative of $|z|$ "
             r"($0$ at its kink)"),
    "softplus": ("softplus(z) = log(1 + exp(z))", r"$\operatorname{softplus}(z) = \log(1 + e^{z})$"),
    "TieWeight": ("[a > b] = 1 if a > b, 1/2 if a = b, 0 if a < b: the derivative of max(a, b) with respect to a",
                  r"$[a > b] = 1$ if $a > b$, $\tfrac{1}{2}$ if $a = b$, $0$ if $a < b$: the derivative of "
                  r"$\max(a, b)$ with respect to $a$"),
    "IsMax": ("ismax(A): 1/k at the k entries where A reaches its maximum over the reduced indices, 0 elsewhere "
              "(the derivative of max)",
              r"$\operatorname{ismax}(A)$: $1/k$ at the $k$ entries where $A$ reaches its maximum over the "
              r"reduced indices, $0$ elsewhere (the derivative of max)"),
    "Reduce": ("Σⱼ, maxⱼ, prodⱼ, logsumexpⱼ: the reduction over the index j (axis 1; i is axis 0, k axis 2, "
               "l axis 3); logsumexp(z) = log Σ exp(z)",
               r"$\sum_j$, $\max_j$, $\operatorname{prod}_j$, $\operatorname{logsumexp}_j$: the reduction over "
               r"the index $j$ (axis 1; $i$ is axis 0, $k$ axis 2, $l$ axis 3); "
               r"$\operatorname{logsumexp}(z) = \log \sum e^{z}$"),
    "SumAll": ("Σ A: the sum of every entry of A", r"$\sum A$: the sum of every entry of $A$"),
    "Ones": ("𝟏: the vector of ones (A𝟏 sums each row of A, Aᵀ𝟏 each column)",
             r"$\mathbf{1}$: the vector of ones ($A\mathbf{1}$ sums each row of $A$, $A^{\top}\mathbf{1}$ "
             r"each column)"),
    "Sliced": ("A[a:b:c]: numpy slicing (0-based, the end excluded)",
               r"$A[a{:}b{:}c]$: numpy slicing (0-based, the end excluded)"),
    "Scatter": ("scatter[idx](v): an array of zeros of the variable's shape with v at [idx] (the adjoint of "
                "slicing)",
                r"$\operatorname{scatter}_{[\mathit{idx}]}(v)$: an array of zeros of the variable's shape with "
                r"$v$ at $[\mathit{idx}]$ (the adjoint of slicing)"),
    "Permuted": ("transpose(A, axes): numpy's permutation of the axes of A",
                 r"$\operatorname{transpose}(A, p)$: the axes of $A$ permuted by $p$ (numpy)"),
    "Reshaped": ("reshape(A, shape): the entries of A in row-major order, in another shape",
                 r"$\operatorname{reshape}(A, s)$: the entries of $A$ in row-major order, in the shape $s$"),
}

# the array constructs of verigrad.expr.arrays, shown as calls (numpy's / PyTorch's meaning)
_CONSTRUCT_DEFINITIONS: dict[str, tuple[str, str]] = {
    name: (text, latex) for name, text, latex in [
        ("conv2d", "conv2d(x, w), conv1d: PyTorch's cross-correlation, x (N, C, H, W), w (O, C/groups, kh, kw)",
         r"$\operatorname{conv2d}(x, w)$: PyTorch's cross-correlation, $x$ $(N, C, H, W)$, $w$ $(O, C, k_h, k_w)$"),
        ("conv1d", "conv1d(x, w): PyTorch's 1-D cross-correlation, x (N, C, L), w (O, C/groups, k)",
         r"$\operatorname{conv1d}(x, w)$: PyTorch's 1-D cross-correlation"),
        ("im2col", "im2col(x, kh×kw): the input windows of a convolution as columns (N, groups, C·kh·kw, Ho·Wo), "
                   "zero outside x", r"$\operatorname{im2col}(x, k)$: the input windows of a convolution as columns"),
        ("windows", "windows(x, kh×kw): the pooling windows of x, one per output entry, along a last axis",
         r"$\operatorname{windows}(x, k)$: the pooling windows of $x$ along a last axis"),
        ("max_pool2d", "max_pool2d(x, k), avg_pool2d: the max / mean of each k×k window (PyTorch)",
         r"$\operatorname{max\_pool2d}(x, k)$: the maximum of each $k \times k$ window (PyTorch)"),
        ("avg_pool2d", "avg_pool2d(x, k): the mean of each k×k window (PyTorch)",
         r"$\operatorname{avg\_pool2d}(x, k)$: the mean of each $k \times k$ window (PyTorch)"),
        ("scatter_add", "scatter_add(g, into shape): the adjoint of a gather: each entry sums the entries of g "
                        "gathered from it", r"$\operatorname{scatter\_add}(g)$: the adjoint of a gather"),
        ("einsum", "einsum(subscripts, ...): numpy's Einstein summation",
         r"$\operatorname{einsum}$: numpy's Einstein summation"),
    ] + [(name, f"{name}(...): numpy's {name}", rf"$\operatorname{{{name}}}$: numpy's {name}")
         for name in ("norm", "var", "std", "concatenate", "stack", "flip", "roll", "pad", "cumsum")]
}
DEFINITIONS.update(_CONSTRUCT_DEFINITIONS)


# -- the record ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Equation:
    """``lhs = rhs``.

    Attributes
    ----------
    kind : str
        ``"define"`` (a ``[define]`` of the case), ``"shared"`` (a sub-expression t_k of the
        backward pass), ``"loss"``, ``"gradient"`` (∂ℒ/∂variable) or ``"entry"`` (one entry,
        per-entry form).
    name : str
        The defined name (``"Z1"``, ``"t3"``), the variable of a gradient (``"W1"``), the entry
        (``"x[0]"``), ``""`` for the loss.
    rhs : sympy.Expr
    """

    kind: str
    name: str
    rhs: sympy.Expr


@dataclass(frozen=True)
class Textbook:
    """The loss and its exact gradient as formulas.

    Attributes
    ----------
    case : str
    variables, constants : tuple of (name, shape)
    parameters : int
    equations : tuple of Equation
        Definitions, shared sub-expressions, the loss, the gradient per variable (array form).
    entries : tuple of Equation
        The loss and every gradient entry as scalar formulas (cases with at most
        :data:`SCALAR_LIMIT` entries; empty otherwise).
    scalar_only : bool
        Every symbol is a scalar: the per-entry form *is* the formula.
    arrays : frozenset of str
        The names (symbols, definitions, t_k) whose values are arrays (for the ⊙ of printing).
    helpers : tuple of str
        The keys of :data:`DEFINITIONS` the formulas use, in order of first use.
    """

    case: str
    variables: tuple
    constants: tuple
    parameters: int
    equations: tuple[Equation, ...]
    entries: tuple[Equation, ...]
    scalar_only: bool
    arrays: frozenset
    helpers: tuple[str, ...]


def is_array(expr: sympy.Basic, arrays) -> bool:
    """Whether ``expr`` has array values: it involves an array symbol outside a reduction to a scalar."""
    if isinstance(expr, sympy.Symbol):
        return expr.name in arrays
    if isinstance(expr, (Ones, MatProd, Transposed, Hadamard, Scatter, Reshaped, Permuted, IsMax, Sliced)):
        return True
    if isinstance(expr, SumAll):
        return False
    if isinstance(expr, Reduce):
        return len(expr.args[2]) > 0 and is_array(expr.args[1], arrays)
    return any(is_array(a, arrays) for a in expr.args if isinstance(a, sympy.Basic))


# -- from the graph ------------------------------------------------------------------------------


def _orientation(shape: tuple) -> str | None:
    """``"col"`` for (n,) and (n, 1), ``"row"`` for (1, n), ``"scalar"`` for size 1, None otherwise."""
    if int(np.prod(shape, dtype=np.int64)) == 1:
        return "scalar"
    dims = [d for d in shape if d != 1]
    if len(dims) != 1:
        return None
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        return "col"
    if len(shape) == 2 and shape[0] == 1:
        return "row"
    return None


class _Option(sympy.Symbol):
    """A literal option of an array construct (``3×3``, ``axis 1``): text, upright in LaTeX."""

    def _latex(self, printer):
        return r"\text{" + self.name.replace("_", r"\_").replace("×", r"$\times$") + "}"


_CONSTRUCTS: dict[str, type] = {}


def _construct(name: str) -> type:
    """A sympy function class printing as ``conv2d(X, W)`` (in LaTeX an operatorname, underscores escaped)."""
    cls = _CONSTRUCTS.get(name)
    if cls is None:
        def _latex(self, printer, _name=name):
            args = ", ".join(printer._print(a) for a in self.args)
            return r"\operatorname{" + _name.replace("_", r"\_") + r"}\left(" + args + r"\right)"

        cls = _CONSTRUCTS[name] = type(name, (sympy.Function,), {"_latex": _latex})
    return cls


class _Converter:
    """Node -> sympy expression, with the names of the named nodes as symbols."""

    def __init__(self, names: dict[int, str], constructs: dict | None = None) -> None:
        self.names = names
        self.cache: dict[int, sympy.Expr] = {}
        self.constructs = constructs or {}

    def __call__(self, n: Node, *, top: bool = False) -> sympy.Expr:
        if not top and n.id in self.names:
            return sympy.Symbol(self.names[n.id])
        if top:
            return self.convert(n)
        if n.id not in self.cache:
            self.cache[n.id] = self.convert(n)
        return self.cache[n.id]

    def convert(self, n: Node) -> sympy.Expr:
        op, a = n.op, n.args
        shown = self.constructs.get(n.id)
        if shown is not None:  # conv2d(X, W), einsum('ij,jk->ik', A, B): the call, not its lowering
            name, args = shown
            return _construct(name)(*(self(x) if isinstance(x, Node) else _Option(x) for x in args))
        if op is Op.LEAF:
            return sympy.Symbol(n.params[0])
        if op is Op.CONST:
            v = const_value(n)
            if isinstance(v, str):
                return sympy.pi if v == "pi" else sympy.E
            return sympy.Rational(v.numerator, v.denominator)
        if op is Op.NEG:
            return -self(a[0])
        if op is Op.ADD:
            return self(a[0]) + self(a[1])
        if op is Op.SUB:
            return self(a[0]) - self(a[1])
        if op is Op.MUL:
            return self(a[0]) * self(a[1])
        if op is Op.DIV:
            return self(a[0]) / self(a[1])
        if op is Op.POW:
            return self(a[0]) ** self(a[1])
        if op is Op.UNARY:
            return self.unary(n.params[0], self(a[0]), array=bool(a[0].shape))
        if op is Op.MAXIMUM:
            return sympy.Max(self(a[0]), self(a[1]))
        if op is Op.TIE_WEIGHT:
            return TieWeight(self(a[0]), self(a[1]))
        if op is Op.MATMUL:
            return self.matmul(a[0], a[1])
        if op is Op.TRANSPOSE:
            if len(n.shape) == 2:
                return _transpose(self(a[0]))
            return Permuted(self(a[0]), sympy.Tuple(*n.params))
        if op is Op.BROADCAST:
            return self(a[0])  # implicit, as in numpy and in papers
        if op is Op.RESHAPE:
            return self.reshape(a[0], n.shape)
        if op is Op.SUM:
            return self.reduce("sum", a[0], n.params[0])
        if op in (Op.PROD, Op.MAX, Op.LOGSUMEXP):
            return self.reduce(op.value, a[0], n.params[0])
        if op is Op.ARGMAX_WEIGHT:
            return IsMax(self(a[0]), sympy.Tuple(*_axes(n.params[0], len(a[0].shape))))
        if op is Op.GETITEM:
            return Sliced(self(a[0]), Str(_index_text(decode_index(n.params))))
        if op is Op.SCATTER:
            index, shape = n.params
            return Scatter(self(a[0]), Str(_index_text(decode_index(index))), sympy.Tuple(*shape))
        raise NotImplementedError(op)  # pragma: no cover

    @staticmethod
    def unary(name: str, x: sympy.Expr, *, array: bool) -> sympy.Expr:
        if name == "sigmoid":
            return _SIGMA(x)
        if name == "dsigmoid":
            return _SIGMA(x) * (1 - _SIGMA(x))
        if name == "dtanh":
            return 1 - sympy.tanh(x) ** 2
        if name == "step":
            return Step(x)
        if name == "sign":
            return sympy.Function("sign")(x) if array else sympy.sign(x)
        if name == "relu":
            return _RELU(x)
        if name == "softplus":
            return _SOFTPLUS(x)
        if name == "square":
            return x ** 2
        if name == "sqrt":
            return sympy.sqrt(x)
        if name == "abs":
            return sympy.Abs(x)
        if name == "log1p":
            return sympy.log(1 + x)
        if name == "expm1":
            return sympy.Function("exp")(x) - 1 if array else sympy.exp(x) - 1
        if name == "exp":
            # exp of a matrix is written exp(Z), entrywise (e^Z would read as the matrix exponential)
            return sympy.Function("exp")(x) if array else sympy.exp(x)
        table = {"log": sympy.log, "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "sinh": sympy.sinh,
                 "cosh": sympy.cosh, "tanh": sympy.tanh, "arcsin": sympy.asin, "arccos": sympy.acos,
                 "arctan": sympy.atan, "erf": sympy.erf}
        return table[name](x) if name in table else sympy.Function(name)(x)

    def matmul(self, x: Node, y: Node) -> sympy.Expr:
        a, b = self(x), self(y)
        if len(x.shape) == 1 and len(y.shape) == 2:  # v @ M = (M^T v) as a column
            return _matprod(_transpose(b), a)
        if len(x.shape) == 1 and len(y.shape) == 1:  # u @ v = u^T v
            return _matprod(_transpose(a), b)
        return _matprod(a, b)

    def reshape(self, x: Node, shape: tuple) -> sympy.Expr:
        src, dst = _orientation(x.shape), _orientation(shape)
        if src is not None and src == dst or src == "scalar" or (src and dst == "scalar"):
            return self(x)
        if {src, dst} == {"row", "col"}:
            return _transpose(self(x))
        return Reshaped(self(x), sympy.Tuple(*shape))

    def reduce(self, op: str, x: Node, axes) -> sympy.Expr:
        nd = len(x.shape)
        ax = _axes(axes, nd)
        arg = self(x)
        if len(ax) == nd or nd == 0:
            return SumAll(arg) if op == "sum" else Reduce(Str(op), arg, sympy.Tuple())
        if op == "sum" and nd == 2:
            return _matprod(arg, Ones()) if ax == (1,) else _matprod(_transpose(arg), Ones())
        return Reduce(Str(op), arg, sympy.Tuple(*ax))


def _axes(axes, nd: int) -> tuple[int, ...]:
    if axes is None:
        return tuple(range(nd))
    return tuple(sorted(int(a) % nd for a in axes)) if nd else ()


def _transpose(x: sympy.Expr) -> sympy.Expr:
    return Transposed(x)


def _matprod(*factors: sympy.Expr) -> sympy.Expr:
    return MatProd(*factors)


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
        elif isinstance(i, np.ndarray):  # a gather's integer array: its first entries, on one line
            flat = [str(int(v)) for v in i.ravel()[:6]]
            more = ", …" if i.size > 6 else ""
            shape = f" (shape {'×'.join(map(str, i.shape))})" if i.ndim != 1 else ""
            out.append("{" + ", ".join(flat) + more + "}" + shape)
        else:
            out.append(str(i))
    return ", ".join(out)


def _trivial(e: sympy.Expr) -> bool:
    """Worth writing in place rather than naming: a number, a symbol, its transpose or negation."""
    if e.is_number or isinstance(e, (sympy.Symbol, Ones)):
        return True
    if isinstance(e, Transposed) and isinstance(e.args[0], sympy.Symbol):
        return True
    if isinstance(e, sympy.Mul) and len(e.args) == 2 and e.args[0].is_number and isinstance(e.args[1], sympy.Symbol):
        return True
    return False


def _helpers(exprs, arrays) -> tuple[str, ...]:
    """The keys of :data:`DEFINITIONS` used by ``exprs``, in order of first use."""
    found: dict[str, None] = {}

    def visit(e):
        if isinstance(e, sympy.Mul) and sum(1 for f in e.args if is_array(f, arrays) and not
                                            (isinstance(f, sympy.Pow) and f.exp.is_negative)) >= 2:
            found.setdefault("Hadamard")
        if isinstance(e, sympy.Function):
            name = type(e).__name__
            key = {"sigma": "sigma", "relu": "relu", "softplus": "softplus", "sign": "sign",
                   "Step": "Step"}.get(name)
            if key:
                found.setdefault(key)
            elif name in _CONSTRUCT_DEFINITIONS and isinstance(e, tuple(_CONSTRUCTS.values())):
                found.setdefault(name)
        for cls in (TieWeight, IsMax, Reduce, SumAll, Ones, Sliced, Scatter, Reshaped, Permuted):
            if isinstance(e, cls):
                found.setdefault(cls.__name__)
        for arg in e.args:
            if isinstance(arg, sympy.Basic):
                visit(arg)

    for e in exprs:
        visit(e)
    if arrays:  # the conventions of the array notation come first, whatever else is used
        return ("Hadamard", *(k for k in found if k != "Hadamard"))
    return tuple(found)


def textbook(model: Model) -> Textbook:
    """The loss and its exact gradient of ``model`` as textbook formulas (see the module docstring).

    Raises
    ------
    LimitError
        The work ran past ``[limits] symbolic_seconds`` (stopped while it runs: sympy can
        take minutes to build the formulas of a long chain of defines).
    """
    from verigrad.engine.budget import time_limit

    case = model.case
    with time_limit(case.limits.symbolic_seconds, limit="symbolic_seconds",
                    what="symbolic work (the formulas of the loss and gradient)", where=f"{case.path}::{case.name}"):
        return _textbook(model)


def _textbook(model: Model) -> Textbook:
    case = model.case
    variables = tuple((s.name, tuple(s.shape)) for s in case.symbols if not s.constant)
    constants = tuple((s.name, tuple(s.shape)) for s in case.symbols if s.constant)
    names: dict[int, str] = {leaf.id: name for name, leaf in model.leaves.items()}
    for name, node in model.defines.items():
        names.setdefault(node.id, name)
    outputs = [model.loss, *model.gradient.values()]
    nodes = topological(outputs)
    uses: dict[int, int] = {}
    for n in nodes:
        for a in n.args:
            uses[a.id] = uses.get(a.id, 0) + 1
    out_ids = {o.id for o in outputs}
    depth: dict[int, int] = {}
    arrays = {name for name, leaf in model.leaves.items() if leaf.shape}
    ordered: list[tuple[str, str, Node]] = []
    counter = 0
    for n in nodes:
        if n.op in (Op.LEAF, Op.CONST):
            depth[n.id] = 0
            continue
        d = 1 + max((0 if a.id in names else depth.get(a.id, 0)) for a in n.args)
        depth[n.id] = d
        named = n.id in names
        # name shared sub-expressions, and break long chains so that printing never nests too deeply
        if (not named and n.id not in out_ids and n.op not in (Op.BROADCAST, Op.RESHAPE)
                and ((uses.get(n.id, 0) > 1 and n.op is not Op.NEG) or d > 40)):
            counter += 1
            names[n.id] = f"t{counter}"
            named = True
        if named and names[n.id] not in model.leaves:
            kind = "define" if names[n.id] in model.defines else "shared"
            ordered.append((kind, names[n.id], n))
            if n.shape:
                arrays.add(names[n.id])
    conv = _Converter(names, getattr(model.builder, "constructs", None))
    subs: dict[sympy.Symbol, sympy.Expr] = {}
    equations: list[Equation] = []
    for kind, name, n in ordered:
        rhs = conv(n, top=True).xreplace(subs)
        if kind == "shared" and _trivial(rhs):
            subs[sympy.Symbol(name)] = rhs
            continue
        equations.append(Equation(kind, name, rhs))
    # the loss is written without the t_k of the backward pass (they are defined after it)
    loss = conv(model.loss, top=True).xreplace(subs)
    shared = {sympy.Symbol(eq.name): eq.rhs for eq in equations if eq.kind == "shared"}
    for _ in range(len(shared) + 1):
        if not (loss.free_symbols & set(shared)):
            break
        loss = loss.xreplace(shared)
    equations.append(Equation("loss", "", loss))
    for name, g in model.gradient.items():
        equations.append(Equation("gradient", name, conv(g, top=True).xreplace(subs)))
    # renumber the t_k that are left, so that they read t1, t2, ... in order
    renumber = {}
    for eq in equations:
        if eq.kind == "shared":
            renumber[sympy.Symbol(eq.name)] = sympy.Symbol(f"t{len(renumber) + 1}")
    if renumber:
        arrays = {(renumber.get(sympy.Symbol(a), sympy.Symbol(a))).name for a in arrays}
        equations = [Equation(eq.kind, renumber[sympy.Symbol(eq.name)].name if eq.kind == "shared" else eq.name,
                              eq.rhs.xreplace(renumber)) for eq in equations]
    entries = _entries(model)
    scalar_only = all(not shape for _, shape in variables + constants)
    helpers = _helpers([eq.rhs for eq in (equations if not scalar_only else entries)], frozenset(arrays))
    return Textbook(case.name, variables, constants, case.parameter_count, tuple(equations), entries,
                    scalar_only, frozenset(arrays), helpers)


def _entries(model: Model) -> tuple[Equation, ...]:
    loss = scalar_loss(model)
    grad = scalar_gradient(model)
    if loss is None or grad is None:
        return ()
    out = [Equation("loss", "", _display(loss))]
    for name, g in grad.items():
        for idx in np.ndindex(*g.shape):
            label = name + ("" if not idx else "[" + ", ".join(map(str, idx)) + "]")
            out.append(Equation("entry", label, _display(g[idx])))
    return tuple(out)


def _display(e: sympy.Expr) -> sympy.Expr:
    """The per-entry form with verigrad's display names: Heaviside(z, 0) is H(z), sigmoid is σ."""
    reps = {}
    for f in e.atoms(sympy.Heaviside):
        reps[f] = Step(f.args[0])
    for f in e.atoms(sympy.Function):
        if type(f).__name__ == "sigmoid":
            reps[f] = _SIGMA(*f.args)
    return e.xreplace(reps) if reps else e


def _entry_symbols(model: Model) -> dict[str, np.ndarray]:
    """Symbols named ``x[0]``, ``W1[0, 1]`` per entry (printed as x₀, W₁[0, 1])."""
    out = {}
    for name, leaf in model.leaves.items():
        arr = np.empty(leaf.shape, dtype=object)
        for idx in np.ndindex(*leaf.shape):
            label = name if not idx else f"{name}[{', '.join(map(str, idx))}]"
            arr[idx] = sympy.Symbol(label, real=True)
        out[name] = arr
    return out


def scalar_gradient(model: Model) -> dict[str, np.ndarray] | None:
    """Per-entry sympy expressions of the gradient (simplified), or None for large cases."""
    total = sum(leaf.size for leaf in model.leaves.values())
    if total > SCALAR_LIMIT:
        return None
    try:
        vals = model.sympy_eval(list(model.gradient.values()), _entry_symbols(model))
        return {name: np.vectorize(sympy.simplify, otypes=[object])(v) for name, v in zip(model.gradient, vals)}
    except (NotImplementedError, RecursionError, TypeError):
        return None


def scalar_loss(model: Model) -> sympy.Expr | None:
    """The loss as one sympy expression, or None for large cases."""
    total = sum(leaf.size for leaf in model.leaves.values())
    if total > SCALAR_LIMIT:
        return None
    try:
        return model.sympy_eval([model.loss], _entry_symbols(model))[0][()]
    except (NotImplementedError, RecursionError, TypeError):
        return None

