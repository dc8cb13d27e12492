"""A case compiled into graphs: the loss, its definitions and its exact gradient.

:func:`compile_case` parses every expression of a validated case with the safe
parser, checks shapes, and builds the gradient graph by symbolic reverse
accumulation.  :class:`Model` then evaluates loss and gradient

* in a float dtype (:meth:`Model.float_eval`, batched, never upcast),
* in mpmath at a given precision (:meth:`Model.mp_eval`), and
* as scalar sympy expressions (:meth:`Model.sympy_eval`, small cases only).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import mpmath
import numpy as np

from verigrad.engine.backends import FloatBackend, MPBackend, SympyBackend
from verigrad.casefile.loader import draw_point
from verigrad.errors import CaseError, LimitError, ShapeError, VerigradError
from verigrad.expr.parser import parse_expression
from verigrad.expr.evaluate import Workspace, evaluate, evaluate_float, shared_workspace
from verigrad.expr.graph import Builder, Node, topological
from verigrad.expr.reverse import gradient_graph
from verigrad.expr.select import IntConst
from verigrad.spec import Case

__all__ = ["Model", "compile_case"]


@dataclass(frozen=True, eq=False)
class Model:
    """A compiled case.

    Attributes
    ----------
    case : Case
    builder : Builder
    leaves : dict of str to Node
        One LEAF per symbol, in declaration order.
    defines : dict of str to Node
    loss : Node
        Shape ``()``.
    gradient : dict of str to Node
        d loss / d variable, one node per variable, in the variable's shape.
    point : dict of str to ndarray
        The float64 point (given values and seeded draws).
    compile_seconds : float
    """

    case: Case
    builder: Builder
    leaves: dict[str, Node]
    defines: dict[str, Node]
    loss: Node
    gradient: dict[str, Node]
    point: dict[str, np.ndarray]
    compile_seconds: float
    _mp_cache: dict = field(default_factory=dict, repr=False)

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(self.gradient)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.leaves[name].shape

    # -- float -------------------------------------------------------------------------
    def float_eval(self, nodes: Sequence[Node], values: Mapping[str, np.ndarray], dtype, *,
                   batched: bool = False, workspace: Workspace | None = None) -> list[np.ndarray]:
        """Evaluate nodes in one numpy dtype.

        Parameters
        ----------
        nodes : sequence of Node
        values : mapping of str to ndarray
            One array per symbol, already of ``dtype`` (nothing is converted here:
            that would hide an upcast).  With ``batched=True`` each has a leading
            batch axis of length B or 1.
        dtype : numpy dtype
            float32, float64, complex64 or complex128.
        workspace : Workspace, optional
            Dead buffers to reuse (:class:`verigrad.expr.graph.Workspace`); the process-wide one
            (:func:`verigrad.expr.graph.shared_workspace`) by default. The values do not depend on it.

        Returns
        -------
        list of ndarray
            Of ``dtype``; shape ``node.shape`` (or ``(B, *node.shape)`` when batched).
            Overflow and invalid operations give inf/nan, never a warning.
        """
        dtype = np.dtype(dtype)
        leaves = {}
        for name in self.leaves:
            v = values[name]
            if v.dtype != dtype:
                raise TypeError(f"{name} has dtype {v.dtype}, expected {dtype}")
            leaves[name] = v if batched else v[None, ...]
        with np.errstate(all="ignore"):
            out = evaluate_float(nodes, leaves, FloatBackend(dtype), shared_workspace() if workspace is None else workspace)
        return out if batched else [o[0, ...] for o in out]

    # -- mpmath ------------------------------------------------------------------------
    def mp_eval(self, nodes: Sequence[Node], values: Mapping[str, np.ndarray], *, prec: int,
                batched: bool = False, complex: bool = False) -> list[np.ndarray]:
        """Evaluate nodes in mpmath at ``prec`` bits (scoped), from exact binary inputs.

        Parameters
        ----------
        values : mapping of str to ndarray
            Float (or complex) arrays; converted to mpmath exactly.
        prec : int
            Working precision in bits.

        Returns
        -------
        list of ndarray
            Object arrays of ``mpf`` (``mpc`` when ``complex``).

        Raises
        ------
        DomainError
            Naming the sub-expression that is undefined at the point.
        """
        with mpmath.workprec(prec):
            leaves = {}
            for name in self.leaves:
                v = self.mp_values(name, values[name])
                leaves[name] = v if batched else v[None, ...]
            out = evaluate(nodes, leaves, MPBackend(complex=complex))
        return out if batched else [o[0, ...] for o in out]

    def mp_values(self, name: str, values: np.ndarray) -> np.ndarray:
        """Exact mpmath object array of ``values`` (object arrays pass through).

        Conversions of large arrays are cached per model (the point's constants are
        converted once, not once per precision and per evaluation); the key is the
        array's bytes, so a different point is a different entry.
        """
        values = np.asarray(values)
        if values.dtype == object:
            return values
        if values.size < 256:
            return MPBackend.from_float(values)
        key = (name, values.dtype.str, values.shape, hash(values.tobytes()))
        hit = self._mp_cache.get(key)
        if hit is None:
            if len(self._mp_cache) > 16:
                self._mp_cache.clear()
            hit = self._mp_cache[key] = MPBackend.from_float(values)
        return hit

    def arb_eval(self, nodes: Sequence[Node], values: Mapping[str, np.ndarray], *, prec: int) -> list[np.ndarray]:
        """Evaluate nodes in Arb ball arithmetic at ``prec`` bits (python-flint; scoped precision).

        Returns object arrays of ``flint.arb`` balls that provably contain the exact values.

        Raises
        ------
        verigrad.engine.arb.Undecided
            A kink, tie or domain boundary cannot be decided at this precision.
        DomainError
            The loss is undefined at the point.
        """
        from verigrad.engine import arb as ab

        with ab.arb_precision(prec):
            leaves = {}
            for name in self.leaves:
                key = ("arb", name)
                v = np.asarray(values[name])
                cached = self._mp_cache.get(key)
                if cached is not None and cached[0] is v:
                    arr = cached[1]
                else:
                    arr = ab.from_float(v)
                    if v.size >= 256:
                        self._mp_cache[key] = (v, arr)
                leaves[name] = arr[None, ...]
            out = evaluate(nodes, leaves, ab.ArbBackend())
        return [o[0, ...] for o in out]

    def fast_eval(self, nodes: Sequence[Node], values: Mapping[str, np.ndarray]) -> list:
        """Evaluate nodes with the vectorised double-double ball engine (:mod:`verigrad.engine.fastball`).

        Parameters
        ----------
        nodes : sequence of Node
        values : mapping of str to ndarray
            One real float array per symbol (converted to float64 exactly, without a Python loop).

        Returns
        -------
        list of verigrad.engine.fastball.Ball
            Shape ``node.shape`` each; every ball provably contains the exact value.

        Raises
        ------
        verigrad.engine.fastball.FastPathUnavailable
            Something the fast engine cannot prove (the caller falls back to :meth:`arb_eval`).
        verigrad.engine.arb.Undecided
            A kink, tie or domain boundary these balls cannot decide.
        DomainError
            The loss is certainly undefined at the point.
        """
        from verigrad.engine import fastball as fb

        def exact64(a: np.ndarray) -> np.ndarray:  # bfloat16 (numpy kind "V") widened exactly
            return a.astype(np.float64) if a.dtype.name == "bfloat16" else a

        leaves = {name: fb.from_float(exact64(np.asarray(values[name]))[None, ...]) for name in self.leaves}
        out = fb.evaluate(nodes, leaves)
        return [o.map(lambda a: a[0, ...]) for o in out]

    # -- sympy -------------------------------------------------------------------------
    def sympy_symbols(self) -> dict[str, np.ndarray]:
        """Object arrays of sympy Symbols named like ``W1[0,1]`` for every symbol."""
        import sympy

        out = {}
        for name, leaf in self.leaves.items():
            arr = np.empty(leaf.shape, dtype=object)
            for idx in np.ndindex(*leaf.shape):
                label = name if not idx else f"{name}[{','.join(map(str, idx))}]"
                arr[idx] = sympy.Symbol(label, real=True)
            out[name] = arr
        return out

    def sympy_eval(self, nodes: Sequence[Node], symbols: Mapping[str, np.ndarray] | None = None, *,
                   display: bool = True) -> list[np.ndarray]:
        """Scalar sympy expressions of the nodes (object arrays), for display and checks.

        With ``display=False`` named functions are replaced by their definitions.
        """
        symbols = self.sympy_symbols() if symbols is None else symbols
        leaves = {k: np.asarray(v, dtype=object)[None, ...] for k, v in symbols.items()}
        return [o[0, ...] for o in evaluate(nodes, leaves, SympyBackend(display=display))]

    @property
    def node_count(self) -> int:
        return len(topological([self.loss, *self.gradient.values()]))


def compile_case(case: Case) -> Model:
    """Parse, shape-check and differentiate a case.

    Raises
    ------
    CaseError
        Any expression error, prefixed with ``file::case``.
    LimitError
        If the symbolic work exceeds ``[limits] symbolic_seconds``.
    """
    t0 = time.perf_counter()
    where = f"{case.path}::{case.name}"
    from verigrad.engine.budget import time_limit

    # stopped while it runs: a chain of defines can make the gradient graph grow for minutes
    with time_limit(case.limits.symbolic_seconds, limit="symbolic_seconds",
                    what="symbolic work (parsing and differentiating the case)", where=where):
        b, leaves, defines, loss, grad = _differentiate(case, where)
    elapsed = time.perf_counter() - t0
    if elapsed > case.limits.symbolic_seconds:
        raise LimitError(f"symbolic work took {elapsed:.1f} s, over the limit of {case.limits.symbolic_seconds} s",
                         where=where, hint="raise [limits] symbolic_seconds")
    return Model(case=case, builder=b, leaves=leaves, defines=defines, loss=loss, gradient=grad,
                 point=draw_point(case), compile_seconds=elapsed)


def _differentiate(case: Case, where: str):
    """The case's graphs: ``(builder, leaves, defines, loss, gradient)``."""
    b = Builder()
    # integer constants (labels, indices) are known now: they enter the graph as gather indices, not leaves
    leaves = {s.name: b.leaf(s.name, s.shape, variable=not s.constant) for s in case.symbols if not s.integer}
    names: dict[str, Node] = dict(leaves)
    names.update({s.name: IntConst(s.name, s.value) for s in case.symbols if s.integer})
    defines: dict[str, Node] = {}
    try:
        for key, text in case.defines:
            node = parse_expression(text, builder=b, names=names, field=f"[define] {key}",
                                    limits=case.limits.expression)
            names[key] = node
            defines[key] = node
        loss = parse_expression(case.loss, builder=b, names=names, field="loss", limits=case.limits.expression)
        if loss.shape != ():
            if loss.size == 1:
                loss = b.reshape(loss, (), "loss")
            else:
                raise ShapeError(f"the loss must be a scalar, but it has shape {list(loss.shape)}",
                                 hint="reduce it with sum(...) or mean(...)", field="loss")
        if not loss.variables:
            raise CaseError("the loss does not depend on any variable",
                            hint="check that the variables are not all marked constant = true", field="loss")
        variables = {s.name: leaves[s.name] for s in case.variables}
        grad = gradient_graph(b, loss, variables)
    except CaseError as exc:
        raise type(exc)(exc.reason, where=where, hint=exc.hint, **{k: v for k, v in exc.fields.items()
                                                                   if k not in ("where", "hint")}) from None
    return b, leaves, defines, loss, grad
