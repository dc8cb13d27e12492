"""Independent self-check of the shipped case library (does not import verigrad).

For every ``cases/*.toml`` this script

1. reads the file with ``tomllib`` and checks the basic format rules (name,
   symbols, candidates, schemes);
2. draws the point exactly as the format prescribes (``numpy`` =
   ``default_rng(seed)``, ``numpy-legacy`` = ``RandomState(seed)``; symbols with
   ``init`` draw once each, in ``[symbols]`` order);
3. evaluates the case's own ``loss`` expression (and its ``[define]`` block) in
   arbitrary precision with a small AST evaluator over numpy object arrays of
   mpmath numbers, and differentiates it by one-sided differences at 80 digits
   with a 1e-25 step, entry by entry. At a point where the loss is
   differentiable both one-sided derivatives agree to ~25 digits; at a kink they
   bracket the per-entry subdifferential interval;
4. calls every candidate in float64 and float32 (inputs rounded to the dtype,
   truth recomputed at the rounded point), checks keys, shapes and dtypes, and
   measures normwise and entrywise relative errors against the truth;
5. checks directional derivatives that exist even at kinks (the all-ones
   direction of each variable, and case-specific directions, e.g. one 2x2 pooling
   window at a time): g . d must equal the derivative along d;
6. checks the ``loss_code`` against the expression (float64 value), that it
   returns the dtype it is given, and, when the case lists the complex step, that
   it is complex-safe (Im f(x + i h e)/h reproduces the truth);
7. as the plain float64 sanity check, compares each candidate with a float64
   central difference of ``loss_code`` (h = 1e-6), for information.

A "pass" candidate must be accurate in both dtypes; a "fail" candidate must be
clearly wrong in at least one dtype (normwise error > 1e-3, an entry that is off
by more than 50% relative, a non-finite entry, a wrong shape/key, an exception,
or a violated directional derivative).

Run:  python cases/_selfcheck.py [--engine] [case-name ...]   (exit status 1 on problems)

With --engine it also runs ``python -m verigrad truth --json`` on each case (a
subprocess; verigrad is never imported) and compares the engine's certified
truth with this script's, entry by entry (at a kink: the engine's value must lie
in the one-sided interval).
"""
from __future__ import annotations

import ast
import importlib.util
import re
import sys
import tomllib
import warnings
from pathlib import Path

import mpmath
import numpy as np

HERE = Path(__file__).resolve().parent
DPS = 80
REL_STEP = mpmath.mpf(10) ** -25

SCHEMES = {"forward", "backward", "central", "central-half", "central4", "central6",
           "central8", "forward2", "richardson-central", "richardson-forward",
           "complex-step"}
FUNCTIONS = {"exp", "log", "log1p", "expm1", "sqrt", "square", "sin", "cos", "tan",
             "sinh", "cosh", "tanh", "arcsin", "arccos", "arctan", "erf", "sigmoid",
             "softplus", "relu", "abs", "maximum", "minimum", "sum", "mean", "prod",
             "max", "min", "logsumexp", "softmax", "log_softmax", "transpose", "dot",
             "matmul", "reshape", "einsum", "conv2d", "max_pool2d", "avg_pool2d", "var", "std"}
NON_ANALYTIC = {"abs", "relu", "maximum", "minimum", "max", "min", "max_pool2d"}

# Cases whose point deliberately sits on a kink (set-valued truth there).
KINK_CASES = {"maxpool-ties", "maxpool-ties-nested", "kinks-relu-l1"}

# Extra directions along which the loss is differentiable even at the kinks;
# g . d must equal the directional derivative.
def _window_directions(case):
    dirs = []
    for i in range(2):
        for j in range(2):
            d = np.zeros((4, 4))
            d[2 * i:2 * i + 2, 2 * j:2 * j + 2] = 1.0
            dirs.append((f"x window ({i},{j})", {"x": d}))
    return dirs


# The complex step of a loss_code is expected to reproduce the truth to ~1e-15
# (normwise). Exception: in cancellation-one-minus-cos the derivative of the
# stable form 2 sin^2(x/2)/x^2 still cancels (two terms ~1/x giving ~-x/12), and
# the complex step computes exactly those terms: ~8e-8 relative error at x = 1e-4.
CS_TOL = {"cancellation-one-minus-cos": 1e-10}

EXTRA_DIRECTIONS = {"maxpool-ties": _window_directions, "maxpool-ties-nested": _window_directions,
                    "maxpool-no-ties": _window_directions}


# --------------------------------------------------------------------------- #
# arbitrary-precision evaluator for the case expression language
# --------------------------------------------------------------------------- #

def _obj(a):
    return np.asarray(a, dtype=object)


def _ufunc(f):
    g = np.frompyfunc(f, 1, 1)
    return lambda a: g(_obj(a))


def _max2(a, b):
    return a if a >= b else b


def _min2(a, b):
    return a if a <= b else b


_vmax2 = np.frompyfunc(_max2, 2, 1)
_vmin2 = np.frompyfunc(_min2, 2, 1)


def _axis_norm(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    return tuple(a % ndim for a in axis)


def _reduce(fn):
    def red(x, axis=None, keepdims=False):
        x = _obj(x)
        return fn(x, axis=axis, keepdims=keepdims)
    return red


def _mean(x, axis=None, keepdims=False):
    x = _obj(x)
    count = 1
    for a in _axis_norm(axis, x.ndim):
        count *= x.shape[a]
    return np.sum(x, axis=axis, keepdims=keepdims) / count


def _logsumexp(x, axis=None, keepdims=False):
    x = _obj(x)
    s = np.sum(_ufunc(mpmath.exp)(x), axis=axis, keepdims=keepdims)
    return _ufunc(mpmath.log)(s)


def _softmax(x, axis=-1):
    e = _ufunc(mpmath.exp)(_obj(x))
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax(x, axis=-1):
    x = _obj(x)
    return x - _logsumexp(x, axis=axis, keepdims=True)


MP_FUNCTIONS = {
    "exp": _ufunc(mpmath.exp), "log": _ufunc(mpmath.log), "log1p": _ufunc(mpmath.log1p),
    "expm1": _ufunc(mpmath.expm1), "sqrt": _ufunc(mpmath.sqrt),
    "square": _ufunc(lambda v: v * v), "sin": _ufunc(mpmath.sin), "cos": _ufunc(mpmath.cos),
    "tan": _ufunc(mpmath.tan), "sinh": _ufunc(mpmath.sinh), "cosh": _ufunc(mpmath.cosh),
    "tanh": _ufunc(mpmath.tanh), "arcsin": _ufunc(mpmath.asin),
    "arccos": _ufunc(mpmath.acos), "arctan": _ufunc(mpmath.atan), "erf": _ufunc(mpmath.erf),
    "sigmoid": _ufunc(lambda v: 1 / (1 + mpmath.exp(-v))),
    "softplus": _ufunc(lambda v: mpmath.log(1 + mpmath.exp(v))),
    "relu": _ufunc(lambda v: v if v > 0 else mpmath.mpf(0)),
    "abs": _ufunc(abs),
    "maximum": lambda a, b: _vmax2(_obj(a), _obj(b)),
    "minimum": lambda a, b: _vmin2(_obj(a), _obj(b)),
    "sum": _reduce(np.sum), "prod": _reduce(np.prod), "max": _reduce(np.max),
    "min": _reduce(np.min), "mean": _mean, "logsumexp": _logsumexp,
    "softmax": _softmax, "log_softmax": _log_softmax,
    "transpose": lambda x: np.transpose(_obj(x)),
    "dot": lambda a, b: np.dot(_obj(a), _obj(b)),
    "matmul": lambda a, b: np.matmul(_obj(a), _obj(b)),
    "reshape": lambda x, shape: np.reshape(_obj(x), shape),
    # array constructs, written from their definitions (loops, not verigrad's im2col lowering)
    "einsum": lambda sub, *ops: np.einsum(sub, *[_obj(o) for o in ops]),
    "conv2d": lambda x, w, stride=1, padding=0, dilation=1, groups=1: _conv2d(x, w, stride, padding, dilation,
                                                                             groups),
    "max_pool2d": lambda x, kernel_size, stride=None: _pool2d(x, kernel_size, stride, "max"),
    "avg_pool2d": lambda x, kernel_size, stride=None: _pool2d(x, kernel_size, stride, "avg"),
    "var": lambda x, axis=None, ddof=0, keepdims=False: _var(x, axis, ddof, keepdims),
    "std": lambda x, axis=None, ddof=0, keepdims=False: _ufunc(mpmath.sqrt)(_var(x, axis, ddof, keepdims)),
}


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _conv2d(x, w, stride, padding, dilation, groups):
    """out[n, o, i, j] = sum_{c, u, v} w[o, c, u, v] x[n, g*C/G + c, i*s - p + u*d, j*s - p + v*d] (zero outside)."""
    x, w = _obj(x), _obj(w)
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    ho, wo = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    og = o // groups
    out = np.empty((n, o, ho, wo), dtype=object)
    for b, oc, i, j in np.ndindex(n, o, ho, wo):
        acc = mpmath.mpf(0)
        g = oc // og
        for ci, u, v in np.ndindex(cg, kh, kw):
            r, q = i * sh - ph + u * dh, j * sw - pw + v * dw
            if 0 <= r < h and 0 <= q < wd:
                acc += w[oc, ci, u, v] * x[b, g * cg + ci, r, q]
        out[b, oc, i, j] = acc
    return out


def _pool2d(x, kernel, stride, kind):
    x = _obj(x)
    (kh, kw) = _pair(kernel)
    (sh, sw) = (kh, kw) if stride is None else _pair(stride)
    h, w = x.shape[-2:]
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    out = np.empty(x.shape[:-2] + (ho, wo), dtype=object)
    for idx in np.ndindex(*x.shape[:-2], ho, wo):
        *lead, i, j = idx
        win = list(x[tuple(lead) + (slice(i * sh, i * sh + kh), slice(j * sw, j * sw + kw))].ravel())
        out[idx] = max(win) if kind == "max" else sum(win) / (kh * kw)
    return out


def _var(x, axis, ddof, keepdims):
    x = _obj(x)
    n = x.size if axis is None else int(np.prod([x.shape[a] for a in np.atleast_1d(axis)]))
    d = x - _mean(x, axis=axis, keepdims=True)
    return _reduce(np.sum)(d * d, axis=axis, keepdims=keepdims) / (n - ddof)


class ExprError(ValueError):
    pass


class Evaluator:
    """Evaluates one expression of the case language over object arrays."""

    def __init__(self, text, env):
        self.text = text
        self.env = env
        try:
            self.tree = ast.parse(text, mode="eval")
        except SyntaxError as exc:
            raise ExprError(f"syntax error in {text!r}: {exc}") from None

    def names(self):
        return {n.id for n in ast.walk(self.tree) if isinstance(n, ast.Name)}

    def functions(self):
        return {n.func.id for n in ast.walk(self.tree)
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}

    def run(self):
        return self._ev(self.tree.body)

    def _literal(self, node):
        seg = ast.get_source_segment(self.text, node)
        if isinstance(node.value, bool):
            return node.value
        if isinstance(node.value, int) and re.fullmatch(r"\d+", seg or ""):
            return node.value
        return mpmath.mpf(seg)          # exact decimal at the working precision

    def _ev(self, node):
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return self._literal(node)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value              # einsum subscripts
        if isinstance(node, ast.Name):
            if node.id in self.env:
                return self.env[node.id]
            if node.id == "pi":
                return +mpmath.pi
            if node.id == "e":
                return +mpmath.e
            raise ExprError(f"unknown name {node.id!r} in {self.text!r}")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = self._ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp):
            a, b = self._ev(node.left), self._ev(node.right)
            op = type(node.op)
            if op is ast.Add:
                return a + b
            if op is ast.Sub:
                return a - b
            if op is ast.Mult:
                return a * b
            if op is ast.Div:
                if isinstance(a, int) and isinstance(b, int):
                    return mpmath.mpf(a) / b      # exact rational literal, not a float
                return a / b
            if op is ast.Pow:
                return a ** b
            if op is ast.MatMult:
                return np.matmul(_obj(a), _obj(b))
            raise ExprError(f"operator {op.__name__} not allowed in {self.text!r}")
        if isinstance(node, ast.Attribute):
            if node.attr != "T":
                raise ExprError(f"attribute .{node.attr} not allowed in {self.text!r}")
            return _obj(self._ev(node.value)).T
        if isinstance(node, ast.Subscript):
            base = _obj(self._ev(node.value))
            return base[self._index(node.slice)]
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                raise ExprError(f"function {ast.unparse(node.func)!r} not allowed in {self.text!r}")
            args = [self._ev(a) if not isinstance(a, ast.Tuple) else ast.literal_eval(a)
                    for a in node.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
            return MP_FUNCTIONS[node.func.id](*args, **kwargs)
        raise ExprError(f"construct {ast.dump(node)[:60]} not allowed in {self.text!r}")

    def _index(self, node):
        if isinstance(node, ast.Tuple):
            return tuple(self._index(e) for e in node.elts)
        if isinstance(node, ast.Slice):
            part = lambda n: None if n is None else int(ast.literal_eval(n))
            return slice(part(node.lower), part(node.upper), part(node.step))
        return int(ast.literal_eval(node))


def mp_array(a):
    """Exact conversion of a float array to an object array of mpf."""
    a = np.asarray(a, dtype=np.float64)
    out = np.empty(a.shape, dtype=object)
    for idx in np.ndindex(a.shape):
        out[idx] = mpmath.mpf(float(a[idx]))
    return out


# --------------------------------------------------------------------------- #
# case loading and point drawing
# --------------------------------------------------------------------------- #

_INIT = re.compile(r"^\s*(normal|uniform)\s*(?:\(\s*([^,()]+)\s*,\s*([^,()]+)\s*\))?\s*$")


def draw_point(case):
    """float64 values of every symbol, drawn as the case format prescribes."""
    seed = case.get("seed", 0)
    kind = case.get("rng", "numpy")
    if kind == "numpy":
        rng, legacy = np.random.default_rng(seed), False
    elif kind == "numpy-legacy":
        rng, legacy = np.random.RandomState(seed), True
    else:
        raise ValueError(f"unknown rng {kind!r}")
    point = {}
    for name, spec in case["symbols"].items():
        if "init" in spec:
            shape = tuple(spec["shape"])
            m = _INIT.match(spec["init"])
            if not m:
                raise ValueError(f"{name}: bad init {spec['init']!r}")
            dist = m.group(1)
            p1 = float(m.group(2)) if m.group(2) else (0.0 if dist == "normal" else None)
            p2 = float(m.group(3)) if m.group(3) else (1.0 if dist == "normal" else None)
            if dist == "normal":
                z = rng.randn(*shape) if legacy else rng.standard_normal(shape)
                val = p1 + p2 * np.asarray(z, dtype=np.float64)
            else:
                if p1 is None:
                    raise ValueError(f"{name}: uniform needs (a, b)")
                val = rng.uniform(p1, p2, size=shape)
        elif "value" in spec:
            val = np.array(spec["value"], dtype=np.float64)
            if "shape" in spec:
                val = np.broadcast_to(val, tuple(spec["shape"])).copy()
        else:
            raise ValueError(f"{name}: needs init or value")
        point[name] = np.asarray(val, dtype=np.float64)
    return point


def load_function(case_path, ref):
    file_part, func_name = ref.rsplit(":", 1)
    path = (case_path.parent / file_part).resolve()
    mod_name = "_selfcheck_" + re.sub(r"\W", "_", str(path.relative_to(HERE)))
    mod = sys.modules.get(mod_name)
    if mod is None:
        spec = importlib.util.spec_from_file_location(mod_name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules[mod_name] = mod
    return getattr(mod, func_name)


class Problems(list):
    def add(self, where, msg):
        self.append(f"{where}: {msg}")


def validate_format(path, case, problems):
    where = path.name
    for key in case:
        if key not in {"name", "description", "seed", "rng", "loss", "loss_code",
                       "symbols", "define", "candidate", "check"}:
            problems.add(where, f"unknown top-level key {key!r}")
    name = case.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9-]+", name):
        problems.add(where, f"bad name {name!r}")
    elif path.stem != name:
        problems.add(where, f"file name does not match name {name!r}")
    if not case.get("description"):
        problems.add(where, "missing description")
    if "loss" not in case:
        problems.add(where, "missing loss")
    cands = case.get("candidate", [])
    if not any(c.get("expect") == "pass" for c in cands):
        problems.add(where, "no candidate with expect = 'pass'")
    if not any(c.get("expect") == "fail" for c in cands):
        problems.add(where, "no candidate with expect = 'fail'")
    names = [c.get("name") for c in cands]
    if len(set(names)) != len(names):
        problems.add(where, "duplicate candidate names")
    for spec in case.get("symbols", {}).values():
        for key in spec:
            if key not in {"constant", "shape", "init", "value"}:
                problems.add(where, f"unknown symbol key {key!r}")
    check = case.get("check", {})
    for s in check.get("schemes", []):
        if s not in SCHEMES:
            problems.add(where, f"unknown scheme {s!r}")
    for d in check.get("dtypes", []):
        if d not in {"float32", "float64"}:
            problems.add(where, f"unknown dtype {d!r}")


# --------------------------------------------------------------------------- #
# exact loss and one-sided derivative intervals
# --------------------------------------------------------------------------- #

class ExactLoss:
    def __init__(self, case):
        self.case = case
        self.variables = [n for n, s in case["symbols"].items() if not s.get("constant")]
        self.defines = list(case.get("define", {}).items())
        self.loss_text = case["loss"]

    def functions_used(self):
        texts = [t for _, t in self.defines] + [self.loss_text]
        used = set()
        for t in texts:
            used |= Evaluator(t, {}).functions()
        return used

    def value(self, mp_point):
        env = dict(mp_point)
        for name, text in self.defines:
            env[name] = Evaluator(text, env).run()
        v = _obj(Evaluator(self.loss_text, env).run())
        if v.size != 1:
            raise ExprError(f"loss has shape {v.shape}, not a scalar")
        if v.shape != ():
            raise ExprError(f"loss has shape {v.shape}; make it 0-d")
        return v[()]

    def derivative_intervals(self, point):
        """Per variable: (lo, hi, f0) object arrays of one-sided derivatives."""
        with mpmath.workdps(DPS):
            mp_point = {k: mp_array(v) for k, v in point.items()}
            f0 = self.value(mp_point)
            out = {}
            for var in self.variables:
                base = mp_point[var]
                lo = np.empty(base.shape, dtype=object)
                hi = np.empty(base.shape, dtype=object)
                for idx in np.ndindex(base.shape):
                    h = REL_STEP * max(abs(base[idx]), 1)
                    pert = dict(mp_point)
                    xp = base.copy()
                    xp[idx] = base[idx] + h
                    pert[var] = xp
                    dplus = (self.value(pert) - f0) / h
                    xm = base.copy()
                    xm[idx] = base[idx] - h
                    pert[var] = xm
                    dminus = (f0 - self.value(pert)) / h
                    lo[idx], hi[idx] = min(dplus, dminus), max(dplus, dminus)
                out[var] = (lo, hi)
            return out, f0

    def directional(self, point, direction):
        """One-sided derivatives along direction (dict var -> array)."""
        with mpmath.workdps(DPS):
            mp_point = {k: mp_array(v) for k, v in point.items()}
            f0 = self.value(mp_point)
            h = REL_STEP
            res = []
            for sgn in (1, -1):
                pert = dict(mp_point)
                for var, d in direction.items():
                    pert[var] = mp_point[var] + mp_array(d) * (sgn * h)
                res.append(sgn * (self.value(pert) - f0) / h)
            return res[0], res[1]


# --------------------------------------------------------------------------- #
# grading
# --------------------------------------------------------------------------- #

def to_float(a):
    return np.array([float(v) for v in np.ravel(a)], dtype=np.float64).reshape(np.shape(a))


def interval_error(g, lo, hi):
    """Distance of each entry of g to [lo, hi], in float64 (computed exactly-ish)."""
    with mpmath.workdps(DPS):
        out = np.empty(lo.shape, dtype=np.float64)
        for idx in np.ndindex(lo.shape):
            x = g[idx]
            if not np.isfinite(x):
                out[idx] = np.inf
                continue
            x = mpmath.mpf(float(x))
            d = lo[idx] - x if x < lo[idx] else (x - hi[idx] if x > hi[idx] else 0)
            out[idx] = float(d)
        return out


def grade(result, truth_intervals, variables, dtype):
    """Return (ok_shape_msg or None, per-variable stats)."""
    if not isinstance(result, dict):
        return f"returned {type(result).__name__}, not a dict", {}
    if set(result) != set(variables):
        return f"keys {sorted(result)} != variables {sorted(variables)}", {}
    stats = {}
    for var in variables:
        lo, hi = truth_intervals[var]
        g = result[var]
        if not isinstance(g, (np.ndarray, np.generic)):
            return f"{var}: returned {type(g).__name__}, not a numpy array", {}
        g = np.asarray(g)
        if g.shape != lo.shape:
            return f"{var}: shape {g.shape}, expected {lo.shape}", {}
        err = interval_error(g.astype(np.float64), lo, hi)
        mid = (to_float(lo) + to_float(hi)) / 2
        scale = float(np.max(np.abs(mid))) if mid.size else 0.0
        tnorm = float(np.linalg.norm(mid))
        normwise = float(np.linalg.norm(err)) / tnorm if tnorm > 0 else float(np.linalg.norm(err))
        absmid = np.abs(mid)
        with np.errstate(divide="ignore", invalid="ignore"):
            pure = np.where(absmid > 0, err / absmid, np.where(err > 0, np.inf, 0.0))
        floor = (1e-13 if dtype == np.float64 else 1e-5) * scale
        floored = err / np.maximum(absmid, floor) if scale > 0 else err
        stats[var] = dict(dtype=str(g.dtype), normwise=normwise,
                          entry_pure=float(np.max(pure)) if pure.size else 0.0,
                          entry_floored=float(np.max(floored)) if floored.size else 0.0,
                          finite=bool(np.all(np.isfinite(g))), scale=scale)
    return None, stats


PASS_TOL = {np.float64: dict(normwise=1e-11, entry_floored=1e-8),
            np.float32: dict(normwise=1e-5, entry_floored=1e-2)}


def check_case(path, problems, verbose=True):
    with open(path, "rb") as fh:
        case = tomllib.load(fh)
    validate_format(path, case, problems)
    name = case.get("name", path.stem)
    where = name
    point = draw_point(case)
    exact = ExactLoss(case)
    variables = exact.variables
    consts = [n for n in case["symbols"] if n not in variables]
    used = exact.functions_used()
    schemes = case.get("check", {}).get("schemes", [])
    if "complex-step" in schemes and used & NON_ANALYTIC:
        problems.add(where, f"lists complex-step but uses {sorted(used & NON_ANALYTIC)}")
    dtypes = case.get("check", {}).get("dtypes", ["float32", "float64"])
    nparams = sum(point[v].size for v in variables)
    print(f"\n=== {name}  ({nparams} parameters; variables {variables}; constants {consts})")

    truths = {}
    for dt in (np.float64, np.float32):
        p = {k: v.astype(dt).astype(np.float64) for k, v in point.items()}
        intervals, f0 = exact.derivative_intervals(p)
        truths[dt] = (p, intervals, f0)
        # kink report
        kinks = []
        for var, (lo, hi) in intervals.items():
            for idx in np.ndindex(lo.shape):
                width = abs(hi[idx] - lo[idx])
                if width > mpmath.mpf(10) ** -15 * (abs(hi[idx]) + 1):
                    kinks.append(f"{var}{list(idx)}: [{mpmath.nstr(lo[idx], 6)}, {mpmath.nstr(hi[idx], 6)}]")
        if kinks and name not in KINK_CASES:
            problems.add(where, f"{dt.__name__}: unexpected kink(s) at the point: {kinks}")
        if name in KINK_CASES and dt is np.float64:
            print(f"  kinks (set-valued entries): {kinks}")
        if name in KINK_CASES and not kinks:
            problems.add(where, "kink case but no kink at the point")
        if dt is np.float64:
            print(f"  loss (exact at float64 point) = {mpmath.nstr(f0, 17)}")

    # loss_code consistency
    loss_fn = None
    if "loss_code" in case:
        loss_fn = load_function(path, case["loss_code"])
        for dt in (np.float64, np.float32):
            args = {k: v.astype(dt) for k, v in point.items()}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                val = loss_fn(**args)
            if np.asarray(val).dtype != dt or np.asarray(val).shape != ():
                problems.add(where, f"loss_code returns {np.asarray(val).dtype}{np.asarray(val).shape} for {dt.__name__}")
            if dt is np.float64:
                f0 = truths[np.float64][2]
                rel = abs(float(val) - float(f0)) / max(abs(float(f0)), 1e-300)
                print(f"  loss_code(float64) rel. diff. from exact loss: {rel:.2e}")
                if not rel < 1e-12:
                    problems.add(where, f"loss_code differs from loss expression (rel {rel:.2e})")
        if "complex-step" in schemes:
            p64, intervals, _ = truths[np.float64]
            h = 1e-30
            worst = 0.0
            for var in variables:
                lo, hi = intervals[var]
                mid = (to_float(lo) + to_float(hi)) / 2
                cs = np.empty(mid.shape)
                for idx in np.ndindex(mid.shape):
                    args = {k: v.astype(np.complex128) for k, v in point.items()}
                    args[var][idx] += 1j * h
                    cs[idx] = np.imag(loss_fn(**args)) / h
                worst = max(worst, float(np.linalg.norm(cs - mid) / max(np.linalg.norm(mid), 1e-300)))
            print(f"  complex step of loss_code (h=1e-30): normwise rel. error {worst:.2e}")
            if not worst < CS_TOL.get(name, 1e-12):
                problems.add(where, f"loss_code not complex-step safe (rel err {worst:.2e})")

    # candidates
    for cand in case.get("candidate", []):
        if cand.get("kind") in ("hessian", "hvp", "hessian_diag"):
            # second-order candidates are checked against closed forms and 60-digit differences of
            # the exact gradient in tests/test_second_order.py (docs/second-order.md)
            print(f"  candidate {cand['name']!r} [{cand['expect']}] -> second order ({cand['kind']}): not checked here")
            continue
        fn = load_function(path, cand["code"])
        expect = cand["expect"]
        lines, caught, bad_pass = [], [], []
        for dt in (np.float64, np.float32):
            if dt.__name__ not in dtypes:
                continue
            p, intervals, _ = truths[dt]
            args = {k: point[k].astype(dt) for k in point}
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = fn(**args)
            except Exception as exc:  # noqa: BLE001 - reported
                caught.append(f"{dt.__name__}: raised {type(exc).__name__}: {exc}")
                bad_pass.append(caught[-1])
                continue
            msg, stats = grade(res, intervals, variables, dt)
            if msg:
                caught.append(f"{dt.__name__}: {msg}")
                bad_pass.append(caught[-1])
                continue
            for var, st in stats.items():
                lines.append(f"    {dt.__name__:7s} {var:>4s}: normwise {st['normwise']:.1e}  "
                             f"entry(floored) {st['entry_floored']:.1e}  entry(pure) {st['entry_pure']:.1e}  "
                             f"returned {st['dtype']}")
                if st["dtype"] != dt.__name__:
                    bad_pass.append(f"{dt.__name__} {var}: returned dtype {st['dtype']}")
                if not st["finite"]:
                    caught.append(f"{dt.__name__} {var}: non-finite entries")
                elif st["normwise"] > 1e-3 or st["entry_pure"] > 0.5:
                    caught.append(f"{dt.__name__} {var}: normwise {st['normwise']:.1e}, worst entry {st['entry_pure']:.1e}")
                tol = PASS_TOL[dt]
                if not (st["normwise"] <= tol["normwise"] and st["entry_floored"] <= tol["entry_floored"]):
                    bad_pass.append(f"{dt.__name__} {var}: normwise {st['normwise']:.1e}, entry {st['entry_floored']:.1e}")
            # directional derivatives (exist even at kinks)
            if not msg and not any("raised" in c for c in caught):
                dirs = [(f"{v} all-ones", {v: np.ones_like(point[v])}) for v in variables]
                if name in EXTRA_DIRECTIONS:
                    dirs += EXTRA_DIRECTIONS[name](case)
                for label, d in dirs:
                    dp, dm = exact.directional(p, d)
                    with mpmath.workdps(DPS):
                        if abs(dp - dm) > mpmath.mpf(10) ** -15 * (abs(dp) + 1):
                            continue            # not differentiable along d
                        gd = sum(float(np.sum(np.asarray(res[v], dtype=np.float64) * d[v])) for v in d)
                        ref = float(dp)
                    scale = sum(float(np.sum(np.abs(np.asarray(res[v], dtype=np.float64) * d[v]))) for v in d)
                    tol = (1e-10 if dt is np.float64 else 1e-4) * max(abs(ref), scale, 1e-300)
                    if not abs(gd - ref) <= tol:
                        caught.append(f"{dt.__name__} directional derivative along {label}: "
                                      f"g.d = {gd:.6g}, exact {ref:.6g}")
                        bad_pass.append(caught[-1])
        # float64 central differences of loss_code, for information
        fd_note = ""
        if loss_fn is not None:
            try:
                res = fn(**{k: v.copy() for k, v in point.items()})
                worst = 0.0
                for var in variables:
                    g = np.asarray(res[var], dtype=np.float64)
                    fd = np.empty(point[var].shape)
                    for idx in np.ndindex(fd.shape):
                        xp = {k: v.copy() for k, v in point.items()}
                        xm = {k: v.copy() for k, v in point.items()}
                        xp[var][idx] += 1e-6
                        xm[var][idx] -= 1e-6
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            fd[idx] = (loss_fn(**xp) - loss_fn(**xm)) / 2e-6
                    worst = max(worst, float(np.linalg.norm(g - fd) / max(np.linalg.norm(fd), 1e-300)))
                fd_note = f"  [float64 central FD h=1e-6 vs candidate: {worst:.1e}]"
            except Exception as exc:  # noqa: BLE001
                fd_note = f"  [FD comparison impossible: {type(exc).__name__}]"
        if expect == "pass":
            ok = not bad_pass and not caught
            verdict = "OK (pass as expected)" if ok else "PROBLEM: expected pass"
            if not ok:
                problems.add(where, f"candidate {cand['name']!r} expected pass: {bad_pass or caught}")
        else:
            ok = bool(caught)
            verdict = "OK (fails as expected)" if ok else "PROBLEM: expected fail but looks correct"
            if not ok:
                problems.add(where, f"candidate {cand['name']!r} expected fail but was not caught")
        print(f"  candidate {cand['name']!r} [{expect}] -> {verdict}{fd_note}")
        if verbose:
            for ln in lines:
                print(ln)
            for c in caught[:6]:
                print(f"      caught: {c}")
            if expect == "fail":
                for b in bad_pass:
                    if b.endswith("returned dtype float64"):
                        print(f"      note: {b}")
    if name == "gradient-checking-3layer":
        diffs = exercise_difference(path, case, point)
        for cname, d in diffs.items():
            print(f"  exercise's own check (eps=1e-7): {cname}: difference = {float(d)!r}")
        # The published exercise prints 0.2850931567761624 for its buggy backprop:
        # this confirms the point is the exercise's point.
        if abs(diffs["exercise-buggy-backprop-verbatim"] - 0.2850931567761624) > 1e-12:
            problems.add(where, f"point differs from the exercise's (difference {diffs})")
    return case


def exercise_difference(path, case, point):
    """gradient-checking-3layer: reproduce the exercise's own check (eps = 1e-7
    central differences, difference = |g - a| / (|g| + |a|)) in float64."""
    forward = load_function(path, case["loss_code"])
    variables = [n for n, s in case["symbols"].items() if not s.get("constant")]
    out = {}
    for cand in case["candidate"]:
        grads = load_function(path, cand["code"])(**{k: v.copy() for k, v in point.items()})
        g, a = [], []
        for var in variables:
            g.append(np.asarray(grads[var], dtype=np.float64).ravel())
            for idx in np.ndindex(point[var].shape):
                xp = {k: v.copy() for k, v in point.items()}
                xm = {k: v.copy() for k, v in point.items()}
                xp[var][idx] += 1e-7
                xm[var][idx] -= 1e-7
                a.append((forward(**xp) - forward(**xm)) / 2e-7)
        g, a = np.concatenate(g), np.array(a)
        out[cand["name"]] = np.linalg.norm(g - a) / (np.linalg.norm(g) + np.linalg.norm(a))
    return out


def engine_cross_check(path, case, problems):
    """Optional (--engine): run the verigrad CLI (a subprocess; nothing is
    imported) and compare its certified truth with this script's independent
    one, entry by entry, at both dtype points."""
    import json
    import subprocess
    import tempfile

    name = case["name"]
    exact = ExactLoss(case)
    point = draw_point(case)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "truth.json"
        proc = subprocess.run([sys.executable, "-m", "verigrad", "truth", "--no-color",
                               str(path), "--json", str(out)],
                              capture_output=True, text=True, cwd=HERE.parent, timeout=1800)
        if proc.returncode != 0 or not out.exists():
            last = (proc.stderr.strip().splitlines() or ["?"])[-1]
            problems.add(name, f"engine: 'verigrad truth' exit {proc.returncode}: {last}")
            print(f"  engine truth: exit {proc.returncode}: {last}")
            return
        report = json.loads(out.read_text())
    for dt in (np.float64, np.float32):
        rep = report.get("by_dtype", {}).get(dt.__name__)
        if rep is None:
            continue
        p = {k: v.astype(dt).astype(np.float64) for k, v in point.items()}
        intervals, f0 = exact.derivative_intervals(p)
        worst = 0.0
        with mpmath.workdps(DPS):
            eng_loss = mpmath.mpf(rep["loss"])
            loss_rel = abs(eng_loss - f0) / max(abs(f0), mpmath.mpf(10) ** -300)
            for var, (lo, hi) in intervals.items():
                eng = np.array(rep["gradient"][var], dtype=object)
                for idx in np.ndindex(lo.shape):
                    v = mpmath.mpf(eng[idx])
                    if v < lo[idx]:
                        d = lo[idx] - v
                    elif v > hi[idx]:
                        d = v - hi[idx]
                    else:
                        d = 0
                    rel = d / max(abs(hi[idx]), abs(lo[idx]), mpmath.mpf(10) ** -300)
                    worst = max(worst, float(rel))
        print(f"  engine truth at {dt.__name__} point: loss rel. diff. {float(loss_rel):.1e}, "
              f"worst entry rel. diff. {worst:.1e}")
        if worst > 1e-18 or loss_rel > 1e-18:
            problems.add(name, f"engine truth differs at {dt.__name__} point (worst {worst:.1e})")


def main(argv):
    problems = Problems()
    engine = "--engine" in argv
    argv = [a for a in argv if a != "--engine"]
    paths = sorted(HERE.glob("*.toml"))
    if argv:
        paths = [p for p in paths if p.stem in argv]
    names = {}
    for path in paths:
        try:
            case = check_case(path, problems)
            if engine:
                engine_cross_check(path, case, problems)
            names.setdefault(case.get("name"), []).append(path.name)
        except Exception as exc:  # noqa: BLE001 - reported
            import traceback
            traceback.print_exc()
            problems.add(path.name, f"crashed: {type(exc).__name__}: {exc}")
    for n, files in names.items():
        if len(files) > 1:
            problems.add(n, f"name used by several files: {files}")
    print("\n" + "=" * 70)
    if problems:
        print(f"{len(problems)} problem(s):")
        for p in problems:
            print("  - " + p)
        return 1
    print(f"all {len(paths)} cases consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
