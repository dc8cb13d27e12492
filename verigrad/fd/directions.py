"""Directions e along which a finite difference perturbs the point.

A coordinate direction is the unit vector of one variable entry
(:func:`coordinate_direction`); a random direction is a seeded unit vector over all
variables (:func:`random_direction`). Both are :class:`Direction` records whose
nonzero entries are exact (``Direction.entries``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

import numpy as np

from verigrad.engine.model import Model
from verigrad.errors import UsageError

__all__ = ["Direction", "coordinate_direction", "random_direction"]


@dataclass(frozen=True, eq=False)
class Direction:
    """A direction e over all variables: a coordinate (one-hot) or a seeded random unit vector.

    Attributes
    ----------
    label : str
        ``W1[1, 2]`` or ``random(seed=0)``.
    vector : dict of str to ndarray
        float64 arrays in each variable's shape.
    variable, index : str or None, tuple or None
        Set for coordinate directions.
    seed : int or None
        Set for random directions.
    """

    label: str
    vector: dict[str, np.ndarray]
    variable: str | None = None
    index: tuple[int, ...] | None = None
    seed: int | None = None

    def entries(self) -> list[tuple[str, int, Fraction]]:
        """Nonzero entries as (variable, flat index, exact value)."""
        out = []
        for name, v in self.vector.items():
            flat = v.ravel()
            for i in np.flatnonzero(flat):
                out.append((name, int(i), Fraction(float(flat[i]))))
        return out


def coordinate_direction(model: Model, variable: str | None = None, index: Sequence[int] | None = None) -> Direction:
    """The unit vector of one variable entry (default: the first entry of the first variable)."""
    names = list(model.gradient)
    variable = variable or names[0]
    if variable not in model.gradient:
        raise UsageError(f"--variable {variable!r} is not a variable of {model.case.name} "
                         f"(variables: {', '.join(names)})")
    shape = model.shape(variable)
    index = tuple(index) if index is not None else (0,) * len(shape)
    if len(index) != len(shape) or any(not -n <= i < n for i, n in zip(index, shape)):
        raise UsageError(f"--index {','.join(map(str, index)) or '(none)'} does not fit {variable} of shape "
                         f"{list(shape)}", hint="give one integer per axis, e.g. --index 1,2")
    index = tuple(i % n for i, n in zip(index, shape))
    vec = {n: np.zeros(model.shape(n)) for n in names}
    vec[variable][index] = 1.0
    label = variable + (f"[{', '.join(map(str, index))}]" if index else "")
    return Direction(label, vec, variable=variable, index=index)


def random_direction(model: Model, seed: int = 0) -> Direction:
    """A seeded random unit direction (``numpy.random.default_rng(seed)``, normal entries, unit 2-norm)."""
    rng = np.random.default_rng(seed)
    vec = {n: rng.standard_normal(model.shape(n)) for n in model.gradient}
    norm = math.sqrt(sum(float(np.sum(v * v)) for v in vec.values()))
    vec = {n: v / norm for n, v in vec.items()}
    return Direction(f"random(seed={seed})", vec, seed=seed)
