"""Directions e along which a finite difference perturbs the point.

A coordinate direction is the unit vector of one variable entry
(:func:`coordinate_direction`); a random direction is a seeded unit vector over all
variables (:func:`random_direction`); a user direction is given per variable, as numbers or
arrays (:func:`user_direction`; the case file's ``[directions]``, the CLI's ``--direction``
and ``--direction-file``). All are :class:`Direction` records whose nonzero entries are
exact (``Direction.entries``): the derivative along ``e`` is ``g . e`` with the float64 values
of ``e`` taken exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

import numpy as np

from verigrad.engine.model import Model
from verigrad.errors import UsageError

__all__ = ["Direction", "coordinate_direction", "random_direction", "user_direction"]


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
        """Nonzero entries as (variable, flat index, exact value); computed once per direction."""
        cached = self.__dict__.get("_entries")
        if cached is None:
            cached = []
            for name, v in self.vector.items():
                flat = v.ravel()
                for i in np.flatnonzero(flat):
                    cached.append((name, int(i), Fraction(float(flat[i]))))
            object.__setattr__(self, "_entries", tuple(cached))
        return list(cached)


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


def user_direction(model: Model, vectors, *, label: str | None = None, normalize: bool = False) -> Direction:
    """A direction given per variable (numdifftools' ``directionaldiff(f, x0, vec)``).

    Parameters
    ----------
    model : Model
    vectors : mapping of str to array_like
        Per variable, its entries of the direction (a number for a scalar variable, nested
        lists or an array of the variable's shape); variables not named are 0.
    label : str, optional
        Shown in reports (default ``x=[1, -1]`` style, or the name given).
    normalize : bool, default False
        Divide by the 2-norm (in float64, like numdifftools' ``vec / norm(vec)``); otherwise the
        direction is used as given and the derivative along it is ``g . e``.

    Returns
    -------
    Direction
        A one-hot direction is returned as the coordinate direction (``variable``/``index`` set),
        so that the studies take their fast path along it.

    Raises
    ------
    UsageError
        An unknown variable, a wrong shape, a non-finite entry or an all-zero direction; the
        message names the variable and says what is expected.

    Examples
    --------
    Along ``[1, -1]/sqrt(2)`` (numdifftools' example): ``user_direction(model, {"x": [1, -1]},
    normalize=True)``.
    """
    names = list(model.gradient)
    if not isinstance(vectors, dict) or not vectors:
        raise UsageError("a direction needs at least one variable, e.g. x=[1, -1]")
    vec = {n: np.zeros(model.shape(n)) for n in names}
    for name, value in vectors.items():
        if name not in model.gradient:
            raise UsageError(f"direction: {name!r} is not a variable of {model.case.name} "
                             f"(variables: {', '.join(names)})")
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise UsageError(f"direction: {name}={value!r} must be numbers in the shape of {name}") from None
        shape = tuple(model.shape(name))
        if arr.shape != shape:
            if arr.size == int(np.prod(shape, dtype=np.int64)) and arr.ndim == 1 and len(shape) > 1:
                arr = arr.reshape(shape)  # a flat list in C order
            else:
                raise UsageError(f"direction: {name} has shape {list(arr.shape)}, the variable has shape "
                                 f"{list(shape)}", hint=f"give {int(np.prod(shape, dtype=np.int64))} numbers "
                                 "(nested lists, or a flat list in C order)")
        if not np.all(np.isfinite(arr)):
            raise UsageError(f"direction: {name} has a non-finite entry")
        vec[name] = arr.copy()
    norm = math.sqrt(sum(float(np.sum(v * v)) for v in vec.values()))
    if norm == 0:
        raise UsageError("direction: every entry is 0; a direction needs a nonzero entry")
    if normalize:
        vec = {n: v / norm for n, v in vec.items()}
    if label is None:
        def show(v):
            flat = v.reshape(-1)
            body = ", ".join(f"{x:.6g}" for x in flat[:6]) + (", ..." if flat.size > 6 else "")
            return body if v.ndim == 0 else f"[{body}]"
        label = "; ".join(f"{n}={show(v)}" for n, v in vec.items() if np.any(v))
    nonzero = [(n, i) for n, v in vec.items() for i in np.flatnonzero(v.reshape(-1))]
    if len(nonzero) == 1:
        n, i = nonzero[0]
        if float(vec[n].reshape(-1)[i]) == 1.0:
            index = tuple(int(k) for k in np.unravel_index(int(i), model.shape(n))) if vec[n].ndim else ()
            return Direction(label, vec, variable=n, index=index)
    return Direction(label, vec)
