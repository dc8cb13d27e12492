"""Steps: from a nominal step to the step actually taken, and the recommended steps.

:func:`nominal_steps` (absolute or relative per-coordinate steps),
:func:`representable_step` (the step ``fl(x + h) - x`` really taken in a dtype),
:func:`default_step` (rule of thumb per scheme and dtype) and
:func:`default_step_grid` (a sweep showing both arms of the error curve). How a
nominal step is scaled is a :class:`verigrad.spec.StepMode`.

This module depends on the standard library and numpy only (and the records of
:mod:`verigrad.spec`).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from verigrad.schemes.scheme import Scheme, SchemeKind
from verigrad.spec import StepMode, is_float_dtype

__all__ = ["default_step", "default_step_grid", "nominal_steps", "representable_step"]


def _coerce_mode(mode: StepMode | str) -> StepMode:
    if isinstance(mode, StepMode):
        return mode
    try:
        return StepMode(mode)
    except ValueError:
        valid = ", ".join(m.value for m in StepMode)
        raise ValueError(f"unknown step mode {mode!r}; valid step modes: {valid}") from None


def _check_step(h: object) -> float:
    if isinstance(h, bool) or not isinstance(h, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"step h must be a real number, got {type(h).__name__} {h!r}")
    hf = float(h)
    if not (math.isfinite(hf) and hf > 0):
        raise ValueError(f"step h must be finite and > 0, got h={h!r}")
    return hf


def _real_float_array(x: object, *, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if not is_float_dtype(arr.dtype):
        raise TypeError(f"{what} must be a real floating-point array (float16, bfloat16, float32 or float64), "
                        f"got dtype {arr.dtype}")
    return arr


def _real_float_dtype(dtype: object, *, allow_complex: bool) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a numpy floating dtype such as float32 or float64, got {dtype!r}") from None
    kinds = "fc" if allow_complex else "f"
    if dt.kind not in kinds and not is_float_dtype(dt):
        allowed = ("float16, bfloat16, float32, float64 (or complex64, complex128)" if allow_complex
                   else "float16, bfloat16, float32 or float64")
        raise TypeError(f"dtype must be {allowed}, got {dt}")
    return dt


def nominal_steps(h: float, x: np.ndarray, mode: StepMode | str = StepMode.ABSOLUTE) -> np.ndarray:
    """Per-coordinate nominal step from a scalar step ``h``.

    Parameters
    ----------
    h : float
        Nominal step, finite and ``> 0``.
    x : ndarray of float32 or float64, any shape
        The point (only ``|x_i|`` is used, and only in ``RELATIVE`` mode).
    mode : StepMode or {'absolute', 'relative'}, default StepMode.ABSOLUTE

    Returns
    -------
    ndarray of float64, shape ``x.shape``
        ``h`` (absolute) or ``h * max(1, |x_i|)`` (relative). The widening of a
        float32 ``x`` to float64 is exact; rounding to the evaluation dtype is
        :func:`representable_step`'s job.

    Notes
    -----
    The relative mode keeps the truncation error ``C f^(p+1) h_i^p`` and the
    representation error of ``x_i + h_i`` balanced when ``|x_i| >> 1``.

    Examples
    --------
    >>> nominal_steps(1e-3, np.array([0.5, -4.0]), StepMode.RELATIVE)
    array([0.001, 0.004])
    """
    hf = _check_step(h)
    arr = _real_float_array(x, what="x")
    mode = _coerce_mode(mode)
    if mode is StepMode.ABSOLUTE:
        return np.full(arr.shape, hf, dtype=np.float64)
    return hf * np.maximum(np.float64(1.0), np.abs(arr.astype(np.float64)))


def representable_step(x: np.ndarray, h: np.ndarray, dtype: object) -> np.ndarray:
    """The step actually taken in ``dtype``: ``(x + h) - x`` computed in ``dtype``.

    Parameters
    ----------
    x : array_like of float, any shape
        Point; rounded to ``dtype`` (the suite evaluates at ``x_p = fl_p(x)``).
    h : array_like of float, broadcastable to ``x``
        Nominal step(s); rounded to ``dtype``.
    dtype : float32 or float64 (real floating dtype)

    Returns
    -------
    ndarray of ``dtype``, shape ``broadcast(x, h).shape``
        ``fl(fl(x + h) - x)``. Since ``x + h`` and ``x`` are both in ``dtype``,
        the subtraction is exact (Sterbenz), so ``x + result`` is exactly
        representable and equals ``fl(x + h)``. An entry is 0 when ``h`` is
        below half an ulp of ``x``; the caller decides what to do with it.

    Notes
    -----
    Using the representable step removes the step part ``S`` of the error for
    the node ``x + h`` (SciPy's ``_numdiff`` trick). Nodes ``x + c_k h`` with
    ``|c_k| != 1`` may still be rounded.

    Examples
    --------
    >>> representable_step(np.float32(1.0), np.float32(1e-7), np.float32)
    array(1.1920929e-07, dtype=float32)
    """
    dt = _real_float_dtype(dtype, allow_complex=False)
    xa = np.asarray(x)
    ha = np.asarray(h)
    for what, arr in (("x", xa), ("h", ha)):
        if arr.dtype.kind not in "fiu" or arr.dtype.kind == "b":
            raise TypeError(f"{what} must be a real array, got dtype {arr.dtype}")
    xp = xa.astype(dt)
    hp = ha.astype(dt)
    if not np.all(np.isfinite(hp)):
        raise ValueError(f"h must be finite in {dt}, got h={ha!r}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = (xp + hp) - xp
    return np.asarray(out, dtype=dt)


def default_step(scheme: Scheme, dtype: object) -> float:
    """Rule-of-thumb step for a well-scaled function.

    Parameters
    ----------
    scheme : Scheme
    dtype : float32 or float64 (complex64/complex128 accepted: their real eps)

    Returns
    -------
    float
        ``eps**(1/(p+1))`` for a linear scheme of order ``p`` (``eps**(1/(p+q))`` for the
        q-th derivative: the total ``|C| h^p + eps/h^q`` is smallest there); ``eps`` for the
        complex step. Use it as a nominal (ideally relative) step.

    Notes
    -----
    For a linear scheme the total error is about ``|C| |f^(p+1)| h^p +
    eps |f| sum|w_k| / h``, minimised at ``h* ~ eps**(1/(p+1))`` when ``f`` and
    its derivatives are of order 1 (forward: ``sqrt(eps)``, central:
    ``eps**(1/3)``, as in SciPy).

    The complex step has no subtractive cancellation, so there is no
    round-off arm and any ``h`` with ``h**2 |f'''| / 6 << eps |f'|`` is
    optimal. We take ``h = eps``: its truncation ``eps**2 / 6`` is far below
    ``eps``, while ``Im f(x+ih) ~ h f'(x)`` stays far above the underflow
    threshold (``tiny / eps`` is 1e-292 for float64, 1e-31 for float32). The
    popular ``1e-20`` is fine in float64 but pushes ``h f'`` toward
    underflow in complex64 for small gradients.

    Examples
    --------
    >>> default_step(get_scheme("forward"), np.float64)  # sqrt(eps)
    1.4901161193847656e-08
    """
    dt = _real_float_dtype(dtype, allow_complex=True)
    eps = float(np.finfo(dt).eps)
    if scheme.kind is SchemeKind.COMPLEX_STEP:
        return eps
    return eps ** (1.0 / (scheme.order + scheme.derivative))


def default_step_grid(scheme: Scheme, dtype: object, count: int = 30) -> np.ndarray:
    """Log-spaced steps that show both arms of the V-shaped error curve.

    Parameters
    ----------
    scheme : Scheme
    dtype : float32 or float64 (complex64/complex128 accepted)
    count : int, default 30
        Number of steps (``>= 2``).

    Returns
    -------
    ndarray of float64, shape ``(count,)``
        Ascending, from ``lo = min(100 eps, eps**(2/3))`` to ``1`` for linear schemes (``lo**(1/q)``
        for the q-th derivative, whose round-off grows as ``1/h**q``); from ``eps**2`` to ``1`` for
        the complex step. ``lo`` is ``100 eps`` in float32 and float64; in float16 (``eps = 2**-10``)
        and bfloat16 (``2**-7``) ``100 eps`` would be 0.1 and 0.8, past the optimal step, so the
        grid starts at ``eps**(2/3)`` (0.0099 and 0.039) instead.

    Notes
    -----
    Linear schemes: at ``h = 100 eps`` the round-off ``eps sum|w| / h`` is
    about 1e-2 relative, deep in the round-off arm (slope -1); at ``h = 1``
    the truncation ``C f^(p+1) h^p`` dominates (slope ``p``) even for
    ``central8`` in float32, whose optimum ``eps**(1/9)`` is about 0.17.
    The grid includes :func:`default_step` in its span.

    Complex step: the error is flat at about ``eps`` below ``sqrt(eps)`` and
    grows as ``h**2/6`` above; ``eps**2`` is deep in the flat region yet far
    above underflow.

    Examples
    --------
    >>> g = default_step_grid(get_scheme("central"), np.float64, count=5)
    >>> float(g[0]), float(g[-1])
    (2.220446049250313e-14, 1.0)
    """
    dt = _real_float_dtype(dtype, allow_complex=True)
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 2:
        raise ValueError(f"count must be an int >= 2, got count={count!r}")
    eps = float(np.finfo(dt).eps)
    # min(100 eps, eps**(2/3)): 100 eps for float32/float64; in half precision 100 eps is already
    # 0.1 (float16) or 0.8 (bfloat16), past the optimum, and eps**(2/3) keeps the round-off arm in view
    lo = eps**2 if scheme.kind is SchemeKind.COMPLEX_STEP else min(100.0 * eps, eps ** (2 / 3)) ** (1.0 / scheme.derivative)
    grid = np.logspace(math.log10(lo), 0.0, int(count), dtype=np.float64)
    grid[0], grid[-1] = lo, 1.0
    return grid
