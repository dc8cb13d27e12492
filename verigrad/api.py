"""Python API for users' own test suites.

>>> import numpy as np, sympy
>>> x, y = sympy.symbols("x y")
>>> res = check_gradient(x**2 * sympy.sin(y), lambda x, y: {"x": 2*x*np.sin(y), "y": x**2*np.cos(y)},
...                      point={"x": 1.5, "y": 0.25})
>>> res.passed
True

``assert_gradient`` raises ``AssertionError`` with the breadcrumb diagnosis, so it
reads well inside pytest.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import sympy

from verigrad.casefile.loader import load_case, point_in_dtype
from verigrad.errors import UsageError
from verigrad.expr.graph import Builder, Node
from verigrad.expr.reverse import gradient_graph
from verigrad.engine.model import Model, compile_case
from verigrad.spec import Case, Dtype, RngKind, Symbol
from verigrad.engine.truth import certify

__all__ = ["CheckResult", "check_gradient", "assert_gradient", "model_from_sympy", "Studies", "study",
           "check_hvp", "assert_hvp", "check_hessian", "assert_hessian", "study_second_order"]


@dataclass(frozen=True)
class CheckResult:
    """Grades of one gradient function, one per dtype.

    Attributes
    ----------
    grades : tuple of Grade
        One per dtype, in the order asked for.
    passed : bool
        Every grade passed.
    by_dtype : dict of str to Grade
    verdicts : dict of str to str
        ``{"float32": "pass", "float64": "fail"}``.
    max_ulps : dict of str to float
        The largest entry error per dtype, in ulps of that dtype.
    diagnosis : tuple of Diagnosis
        The bug shape of every failing variable, every dtype.
    wrong : tuple of EntryError
        Every wrong entry, every dtype.

    In a notebook a CheckResult shows a table per dtype with the diagnoses (``_repr_html_``);
    its ``repr`` is one line.
    """

    grades: tuple
    passed: bool

    def messages(self) -> list[str]:
        """Every breadcrumb of every grade (warnings, diagnoses, wrong entries)."""
        return [m for g in self.grades for m in g.messages()]

    @property
    def by_dtype(self) -> dict:
        return {g.dtype: g for g in self.grades}

    @property
    def verdicts(self) -> dict[str, str]:
        return {g.dtype: g.verdict.value for g in self.grades}

    @property
    def max_ulps(self) -> dict[str, float]:
        return {g.dtype: g.errors.max_ulps for g in self.grades}

    @property
    def diagnosis(self) -> tuple:
        return tuple(d for g in self.grades for d in g.diagnosis)

    @property
    def wrong(self) -> tuple:
        return tuple(e for g in self.grades for e in g.wrong)

    def __repr__(self) -> str:
        name = self.grades[0].candidate if self.grades else "gradient"
        parts = [f"{g.dtype} {g.verdict.value} (max {g.errors.max_ulps:.3g} ulps)" for g in self.grades]
        first = next((d.message for d in self.diagnosis), "")
        return (f"<CheckResult {name}: {'passed' if self.passed else 'FAILED'}; {', '.join(parts)}"
                + (f"; {first}" if first else "") + ">")

    def _repr_html_(self) -> str:
        from verigrad.report.notebook import check_html

        return check_html(self)


_FUNCS = {sympy.exp: "exp", sympy.log: "log", sympy.sin: "sin", sympy.cos: "cos", sympy.tan: "tan",
          sympy.sinh: "sinh", sympy.cosh: "cosh", sympy.tanh: "tanh", sympy.asin: "arcsin", sympy.acos: "arccos",
          sympy.atan: "arctan", sympy.erf: "erf", sympy.Abs: "abs"}


def _to_node(b: Builder, e: sympy.Expr, leaves: Mapping[sympy.Symbol, Node]) -> Node:
    if e in leaves:
        return leaves[e]
    if e.is_Rational:
        return b.const(Fraction(int(e.p), int(e.q)))
    if e.is_Float:
        # the binary value of the Float, exactly (never re-rounded to 53 bits)
        return b.const(Fraction(*_mpf_fraction(e)))
    if e is sympy.pi:
        return b.const("pi")
    if e is sympy.E:
        return b.const("e")
    if e.is_Add or e.is_Mul:
        op = b.add if e.is_Add else b.mul
        return functools.reduce(op, (_to_node(b, a, leaves) for a in e.args))
    if e.is_Pow:
        base, ex = e.args
        if ex == sympy.Rational(1, 2):
            return b.unary("sqrt", _to_node(b, base, leaves))
        if base is sympy.E:
            return b.unary("exp", _to_node(b, ex, leaves))
        return b.pow(_to_node(b, base, leaves), _to_node(b, ex, leaves))
    if isinstance(e, sympy.Max) and len(e.args) == 2:
        return b.maximum(_to_node(b, e.args[0], leaves), _to_node(b, e.args[1], leaves))
    if isinstance(e, sympy.Min) and len(e.args) == 2:
        return b.minimum(_to_node(b, e.args[0], leaves), _to_node(b, e.args[1], leaves))
    fn = _FUNCS.get(e.func)
    if fn is not None and len(e.args) == 1:
        return b.unary(fn, _to_node(b, e.args[0], leaves))
    raise UsageError(f"check_gradient: unsupported sympy construct {e.func.__name__} in {e}",
                     hint="use +, *, **, exp, log, trig, tanh, erf, Abs, Max/Min of two, or write a case file")


def _mpf_fraction(e: sympy.Float) -> tuple[int, int]:
    sign, man, exp, _ = e._mpf_
    num = (-1) ** sign * int(man)
    return (num * 2**exp, 1) if exp >= 0 else (num, 2 ** (-exp))


def model_from_sympy(expr: sympy.Expr, point: Mapping[str, float], *, constants: Sequence[str] = (),
                     name: str = "sympy-loss") -> Model:
    """A :class:`Model` for a scalar sympy expression in scalar symbols, at ``point`` (float64 values)."""
    if not isinstance(expr, sympy.Basic):
        raise UsageError(f"model_from_sympy: expected a sympy expression, got {type(expr).__name__}")
    free = sorted(expr.free_symbols, key=lambda s: s.name)
    missing = [s.name for s in free if s.name not in point]
    if missing:
        raise UsageError(f"check_gradient: no value for {', '.join(missing)} in point")
    b = Builder()
    order = [s for s in (sympy.Symbol(k) for k in point)]
    by_name = {s.name: s for s in free}
    leaves = {}
    symbols = []
    for k, v in point.items():
        const = k in constants
        node = b.leaf(k, (), variable=not const)
        if k in by_name:
            leaves[by_name[k]] = node
        symbols.append(Symbol(k, (), const, value=np.array(float(v))))
    loss = _to_node(b, expr, leaves)
    variables = {s.name: b.leaf(s.name, (), variable=True) for s in symbols if not s.constant}
    if not variables:
        raise UsageError("check_gradient: every symbol is a constant")
    grad = gradient_graph(b, loss, variables)
    case = Case(name=name, path=Path("<sympy>"), description="", seed=0, rng=RngKind.NUMPY, loss=str(expr),
                symbols=tuple(symbols), defines=())
    return Model(case=case, builder=b, leaves={s.name: b.leaf(s.name, (), variable=not s.constant) for s in symbols},
                 defines={}, loss=loss, gradient=grad, point={s.name: np.array(s.value) for s in symbols},
                 compile_seconds=0.0)


def check_gradient(loss, gradient: Callable, *, point: Mapping[str, float] | None = None,
                   dtypes: Sequence[str] = ("float32", "float64"), constants: Sequence[str] = (),
                   tolerances=None) -> CheckResult:
    """Grade a gradient function against the exact gradient.

    Parameters
    ----------
    loss : str, Path or sympy.Expr
        A case file, or a scalar sympy expression in scalar symbols (then ``point`` is required).
    gradient : callable
        Called with every symbol as a keyword argument (numpy arrays of the dtype,
        0-d for scalars); returns ``{variable: array}`` or a sequence in declaration order.
    point : mapping, optional
        Values of the symbols (sympy form only).
    dtypes : sequence of str
        Any of ``"float16"``, ``"bfloat16"``, ``"float32"``, ``"float64"``.
    constants : sequence of str
        Symbols not differentiated (sympy form only).
    tolerances : verigrad.grading.Tolerances, optional

    Returns
    -------
    CheckResult
    """
    from verigrad.runner.candidates import _plain, normalise_gradient
    from verigrad.grading import Tolerances, grade
    from verigrad.runner.case import baseline_gradient

    if isinstance(loss, (str, Path)):
        model = compile_case(load_case(loss))
    elif isinstance(loss, sympy.Basic):
        if point is None:
            raise UsageError("check_gradient: a sympy loss needs point={symbol: value}")
        model = model_from_sympy(loss, point, constants=constants)
    else:
        raise UsageError(f"check_gradient: loss must be a case-file path or a sympy expression, "
                         f"got {type(loss).__name__}")
    grades = []
    for d in dtypes:
        dt = Dtype(d)
        p = point_in_dtype(model.point, dt)
        truth = certify(model, p, dt)
        value = _plain(gradient(**{k: np.array(v) for k, v in p.items()}))
        shapes = {n: model.shape(n) for n in model.gradient}
        got, problems = normalise_gradient(value if isinstance(value, (dict, list, tuple)) else
                                           {n: np.asarray(value) for n in shapes} if len(shapes) == 1 else value,
                                           shapes, f"{model.case.name} › gradient › {d}")
        got = {k: np.asarray(v) for k, v in got.items()}
        if problems:
            raise UsageError("; ".join(problems))
        grades.append(grade(truth=truth.gradient, value=got, baseline=baseline_gradient(model, p, dt),
                            dtype=dt.numpy, case=model.case.name, candidate=getattr(gradient, "__name__", "gradient"),
                            tolerances=tolerances or Tolerances()))
    return CheckResult(tuple(grades), all(g.verdict.value == "pass" for g in grades))


def assert_gradient(loss, gradient: Callable, **kwargs) -> CheckResult:
    """Like :func:`check_gradient`, but raise ``AssertionError`` with the diagnosis on failure."""
    res = check_gradient(loss, gradient, **kwargs)
    if not res.passed:
        raise AssertionError("gradient check failed:\n  " + "\n  ".join(res.messages()))
    return res


class Studies(tuple):
    """The studies of one sweep (a tuple of :class:`~verigrad.studies.Study`, dtype-major).

    In a notebook it shows one table (a row per scheme × dtype: best step, model h*, the slope and
    the dominant part per regime) and the grid of figures; each study also shows itself.
    """

    def __repr__(self) -> str:
        if not self:
            return "<Studies: none>"
        first = self[0]
        return (f"<Studies {first.case} › {first.direction.label}: "
                + ", ".join(f"{s.scheme.name}/{s.dtype.value} best h {s.observed.optimal_step:.2g}" for s in self)
                + ">")

    def _repr_html_(self) -> str:
        from verigrad.report.notebook import studies_html

        return studies_html(list(self))


DEFAULT_STUDY_SCHEMES = ("forward", "central", "central4", "complex-step")


def study(loss, *, variable: str | None = None, index: Sequence[int] | None = None,
          schemes: Sequence[str] | None = None, dtypes: Sequence[str] = ("float32", "float64"),
          steps: Sequence[float] | None = None, step_mode: str = "absolute", representable: bool = False) -> Studies:
    """Sweep finite-difference steps along one coordinate, as ``verigrad study`` does, for a notebook.

    Parameters
    ----------
    loss : str or Path
        A case file.
    variable, index : optional
        The entry to perturb (default: the first entry of the first variable).
    schemes : sequence of str, optional
        Default forward, central, central4 and (for analytic losses) complex-step.
    dtypes : sequence of str
    steps : sequence of float, optional
        Nominal steps (default: the per-dtype grid of :func:`verigrad.schemes.default_step_grid`).
    step_mode : {"absolute", "relative"}
    representable : bool
        Use (x + h) - x as the step, so that the step error S vanishes.

    Returns
    -------
    Studies
        One :class:`~verigrad.studies.Study` per dtype × scheme, dtype-major (the order `verigrad study` prints).

    Examples
    --------
    >>> studies = study("cases/squire-trapp.toml", schemes=["central"], dtypes=["float64"])  # doctest: +SKIP
    >>> studies[0].regimes[0].dominant  # doctest: +SKIP
    'roundoff'
    """
    from verigrad.fd import coordinate_direction, non_analytic_sites
    from verigrad.runner.candidates import loss_code_evaluator
    from verigrad.schemes import StepMode, get_scheme
    from verigrad.studies import run_study

    if not isinstance(loss, (str, Path)):
        raise UsageError(f"study: loss must be a case-file path, got {type(loss).__name__}")
    model = compile_case(load_case(loss))
    default = schemes is None
    if schemes is None:
        schemes = [s for s in DEFAULT_STUDY_SCHEMES if s != "complex-step" or not non_analytic_sites(model)]
    for name in schemes:
        try:
            method = get_scheme(name)  # raises with the list of valid names
        except ValueError as exc:
            raise UsageError(f"study: {exc}") from None
        if not hasattr(method, "offsets"):
            raise UsageError(f"study: {name} is an adaptive method: sweep it with "
                             "verigrad.studies.run_adaptive_study (or `verigrad study --scheme`)")
    direction = coordinate_direction(model, variable, index)
    case = model.case
    loss_values = loss_code_evaluator(case) if case.loss_code is not None else None
    out = []
    for d in dict.fromkeys(dtypes):
        for name in dict.fromkeys(schemes):
            if default and name == "complex-step" and Dtype(d).half:
                continue  # no complex step in float16/bfloat16 (Dtype.complex says why)
            out.append(run_study(model, dtype=Dtype(d), scheme=name, direction=direction, steps=steps,
                                 step_mode=StepMode(step_mode), representable=representable,
                                 loss_values=loss_values))
    return Studies(out)


# -- second order (docs/second-order.md) ------------------------------------------------------------


def _second_model(loss, point, constants, who: str) -> Model:
    if isinstance(loss, (str, Path)):
        return compile_case(load_case(loss))
    if isinstance(loss, sympy.Basic):
        if point is None:
            raise UsageError(f"{who}: a sympy loss needs point={{symbol: value}}")
        return model_from_sympy(loss, point, constants=constants)
    raise UsageError(f"{who}: loss must be a case-file path or a sympy expression, got {type(loss).__name__}")


def check_hvp(loss, hvp: Callable, *, vector: Mapping[str, np.ndarray] | None = None,
              point: Mapping[str, float] | None = None, dtypes: Sequence[str] = ("float32", "float64"),
              constants: Sequence[str] = (), tolerances=None, seed: int = 0) -> CheckResult:
    """Grade a Hessian-vector product function against the exact ``H v``.

    Parameters
    ----------
    loss : str, Path or sympy.Expr
        A case file, or a scalar sympy expression (then ``point`` is required).
    hvp : callable
        Called as ``hvp(vector=v, **symbols)`` (numpy arrays of the dtype; ``v`` a dict by variable);
        returns ``H v`` as ``{variable: array}`` or a sequence in declaration order.
    vector : mapping of str to array, optional
        The direction; default standard normal from ``numpy.random.default_rng(seed)``. Rounded to
        each dtype; the truth is the exact ``H(x_p) v_p``.
    dtypes, constants, tolerances : as :func:`check_gradient`

    Returns
    -------
    CheckResult
        One grade per dtype (the variables are those of ``H v``).

    Examples
    --------
    >>> import sympy
    >>> x, y = sympy.symbols("x y")
    >>> res = check_hvp(x**2 * y, lambda x, y, vector: {"x": 2*y*vector["x"] + 2*x*vector["y"],
    ...                                                 "y": 2*x*vector["x"]}, point={"x": 1.5, "y": 0.5})
    >>> res.passed
    True
    """
    from verigrad.engine.hessian import certify_hvp, hvp_baseline
    from verigrad.grading import DDTruth, Tolerances, grade
    from verigrad.runner.candidates import _plain, normalise_gradient

    model = _second_model(loss, point, constants, "check_hvp")
    shapes = {n: model.shape(n) for n in model.gradient}
    if vector is None:
        rng = np.random.default_rng(seed)
        vector = {n: rng.standard_normal(shapes[n]) for n in shapes}
    unknown = set(vector) - set(shapes)
    if unknown:
        raise UsageError(f"check_hvp: vector names {sorted(unknown)}, which are not variables; variables: "
                         f"{', '.join(shapes)}")
    grades = []
    for d in dtypes:
        dt = Dtype(d)
        p = point_in_dtype(model.point, dt)
        v = {n: np.asarray(vector.get(n, np.zeros(shapes[n])), dtype=np.float64).astype(dt.numpy) for n in shapes}
        truth = certify_hvp(model, p, v, dt)
        value = _plain(hvp(vector={n: a.copy() for n, a in v.items()}, **{k: np.array(a) for k, a in p.items()}))
        got, problems = normalise_gradient(value, shapes, f"{model.case.name} › hvp › {d}")
        if problems:
            raise UsageError("; ".join(problems))
        grades.append(grade(truth={n: DDTruth(truth.gradient_hi[n], truth.gradient_lo[n]) for n in shapes},
                            value={k: np.asarray(a) for k, a in got.items()},
                            baseline=hvp_baseline(model, p, v, dt), dtype=dt.numpy, case=model.case.name,
                            candidate=getattr(hvp, "__name__", "hvp"), tolerances=tolerances or Tolerances()))
    return CheckResult(tuple(grades), all(g.verdict.value == "pass" for g in grades))


def check_hessian(loss, hessian: Callable, *, point: Mapping[str, float] | None = None,
                  dtypes: Sequence[str] = ("float32", "float64"), constants: Sequence[str] = (),
                  tolerances=None) -> CheckResult:
    """Grade a Hessian function against the exact Hessian, block by block (``H[A,B]``).

    ``hessian(**symbols)`` returns the ``N x N`` matrix of the variables flattened in declaration
    order (C order within each); with one variable, ``shape + shape`` is accepted. The second-order
    bug shapes (missing symmetric half, factor on the diagonal, transposed block) are in
    :meth:`CheckResult.messages`. Other parameters as :func:`check_gradient`.

    Examples
    --------
    >>> import numpy as np, sympy
    >>> x, y = sympy.symbols("x y")
    >>> check_hessian(x**2 * y, lambda x, y: np.array([[2*y, 2*x], [2*x, 0*x]]),
    ...               point={"x": 1.5, "y": 0.5}).passed
    True
    """
    from verigrad.engine.hessian import certify_hessian, hessian_baseline
    from verigrad.grading import Tolerances
    from verigrad.grading.second import grade_hessian

    model = _second_model(loss, point, constants, "check_hessian")
    grades, extra = [], []
    for d in dtypes:
        dt = Dtype(d)
        p = point_in_dtype(model.point, dt)
        ht = certify_hessian(model, p, dt)
        raw = np.asarray(hessian(**{k: np.array(a) for k, a in p.items()}))
        n = ht.size
        if raw.shape != (n, n):
            if len(ht.shapes) == 1 and raw.size == n * n:
                raw = raw.reshape(n, n)
            else:
                raise UsageError(f"check_hessian: the Hessian has shape {raw.shape}, expected ({n}, {n}) "
                                 f"(variables {', '.join(ht.shapes)} flattened in declaration order)")
        g, diags = grade_hessian(truth=ht, value=raw, baseline=hessian_baseline(model, p, dt), dtype=dt.numpy,
                                 case=model.case.name, candidate=getattr(hessian, "__name__", "hessian"),
                                 tolerances=tolerances or Tolerances())
        grades.append(g)
        extra.extend(x.message for x in diags)
    res = CheckResult(tuple(grades), all(g.verdict.value == "pass" for g in grades))
    object.__setattr__(res, "_second_messages", tuple(extra))
    return res


def assert_hvp(loss, hvp: Callable, **kwargs) -> CheckResult:
    """Like :func:`check_hvp`, but raise ``AssertionError`` with the diagnosis on failure."""
    res = check_hvp(loss, hvp, **kwargs)
    if not res.passed:
        raise AssertionError("Hessian-vector product check failed:\n  " + "\n  ".join(res.messages()))
    return res


def assert_hessian(loss, hessian: Callable, **kwargs) -> CheckResult:
    """Like :func:`check_hessian`, but raise ``AssertionError`` with the diagnosis on failure."""
    res = check_hessian(loss, hessian, **kwargs)
    if not res.passed:
        lines = list(getattr(res, "_second_messages", ())) + res.messages()
        raise AssertionError("Hessian check failed:\n  " + "\n  ".join(lines))
    return res


def study_second_order(loss, *, entry: Sequence[int] = (0, 0), hvp: bool = False,
                       schemes: Sequence[str] | None = None, dtypes: Sequence[str] = ("float32", "float64"),
                       steps: Sequence[float] | None = None) -> Studies:
    """Sweep the step of second-order finite differences for one Hessian (or HVP) entry, as
    ``verigrad study --second-order`` does (docs/second-order.md).

    Parameters
    ----------
    loss : str or Path
        A case file.
    entry : (int, int) or (int,)
        Flattened ``(i, j)`` of ``H_ij`` (declaration order, C order within each variable); with
        ``hvp`` one index ``i`` of ``H v`` (the seeded direction of the case's ``hvp`` candidates).
    schemes : sequence of str, optional
        ``second3``, ``mixed4``, ``grad-central``, ``richardson(...)``; default the entry's loss scheme
        and ``grad-central`` (only ``grad-central`` with ``hvp``).
    dtypes : sequence of str
    steps : sequence of float, optional
        Nominal steps (default :func:`verigrad.studies.second.second_step_grid`).

    Returns
    -------
    Studies
        One :class:`~verigrad.studies.Study` per scheme × dtype: rows with ``E = T + S + R``,
        the model (``|T| ~ A h^p``, round-off ``~ 1/h^q``) and the measured optimum.
    """
    from verigrad.studies.second import run_second_study, second_target

    if not isinstance(loss, (str, Path)):
        raise UsageError(f"study_second_order: loss must be a case-file path, got {type(loss).__name__}")
    model = compile_case(load_case(loss))
    i = int(entry[0])
    j = None if hvp else int(entry[1] if len(entry) > 1 else entry[0])
    if schemes is None:
        schemes = ["grad-central"] if hvp else ["second3" if i == j else "mixed4", "grad-central"]
    out = []
    for name in dict.fromkeys(schemes):
        for d in dict.fromkeys(dtypes):
            target = second_target(model, Dtype(d), entry=(i, j), hvp=hvp)
            out.append(run_second_study(model, dtype=Dtype(d), scheme=name, target=target, steps=steps))
    return Studies(out)
