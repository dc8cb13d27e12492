"""Finite-difference steps: how a nominal step becomes the step h_p used per entry.

The rule of thumb eps^(1/(p+1)) (:func:`recommended_step`); the nominal step per entry,
h max(1, |x_i|) in relative mode (:func:`entry_steps`); and for a sweep along a
direction h_p = fl_p(h), or the representable step ``(x+h)-x`` on request
(:func:`_effective_steps`).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from verigrad.errors import UsageError
from verigrad.fd.directions import Direction
from verigrad.schemes import Scheme, StepMode, default_step
from verigrad.spec import Dtype

__all__ = ["entry_steps", "recommended_step"]


def entry_steps(step, name: str, x: np.ndarray, step_mode: StepMode) -> np.ndarray:
    """Nominal step per entry of variable ``name`` (float64, flat).

    ``step`` is one nominal step (relative mode: h max(1, |x_i|)) or a mapping of per-entry
    nominal steps by variable (as :func:`verigrad.kinks.recommend_steps` returns), used as given.
    """
    if isinstance(step, Mapping):
        return np.asarray(step[name], dtype=np.float64).reshape(-1)
    xf = np.abs(np.asarray(x).reshape(-1).astype(np.float64))
    return np.full(xf.size, float(step)) * (np.maximum(1.0, xf) if step_mode is StepMode.RELATIVE else 1.0)


def recommended_step(scheme: Scheme, dtype: Dtype) -> float:
    """The nominal relative step used when a case does not give one: eps^(1/(p+1)) (eps for the complex step)."""
    return default_step(scheme, dtype.numpy)


def _effective_steps(steps: np.ndarray, direction: Direction, point: dict, dtype: np.dtype, mode: StepMode,
                     representable: bool) -> np.ndarray:
    """h_p per nominal step, in ``dtype`` values (as float64 numbers)."""
    if mode is StepMode.RELATIVE:
        if direction.variable is not None:
            scale = max(1.0, abs(float(point[direction.variable][direction.index])))
        else:
            scale = max([1.0] + [float(np.max(np.abs(point[n]))) for n in direction.vector])
        steps = steps * scale
    with np.errstate(over="ignore"):
        hp = steps.astype(dtype).astype(np.float64)
    if not np.isfinite(hp).all():  # 1e5 in float16: x + h would be inf, every difference inf or nan
        big = float(steps[~np.isfinite(hp)][0])
        raise UsageError(f"the step {big:.3g}{' (relative, times max(1, |x|))' if mode is StepMode.RELATIVE else ''} "
                         f"overflows {np.dtype(dtype).name} (largest finite {float(np.finfo(dtype).max):.3g})",
                         hint=f"choose steps well below {float(np.finfo(dtype).max):.3g} for {np.dtype(dtype).name}")
    if representable:
        if direction.variable is None:
            raise UsageError("--representable needs a coordinate direction (--variable/--index)")
        x = point[direction.variable][direction.index]
        with np.errstate(all="ignore"):
            hp = ((x + steps.astype(dtype)) - x).astype(np.float64)
    return hp
