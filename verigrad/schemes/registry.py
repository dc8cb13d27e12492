"""The named built-in schemes (the CLI names), and lookup by name.

A new built-in scheme is one more entry in :func:`_build_registry`, built with
the constructors of :mod:`verigrad.schemes.scheme`; its order and error
coefficients follow from its weights.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from fractions import Fraction
from types import MappingProxyType

from verigrad.schemes.scheme import Scheme, SchemeKind, richardson_scheme, scheme_from_offsets
from verigrad.schemes.weights import _formal_complex_moment, _leading_term

__all__ = ["SCHEME_NAMES", "get_scheme"]


def _complex_step() -> Scheme:
    p, c, j = _leading_term(_formal_complex_moment, 3)
    return Scheme(
        name="complex-step",
        kind=SchemeKind.COMPLEX_STEP,
        offsets=(),
        weights=(),
        order=p,
        leading_coefficient=c,
        leading_derivative=j,
        requires_analytic=True,
        description="complex step Im f(x+ih)/h (Squire & Trapp 1998); needs f analytic",
    )


def _build_registry() -> Mapping[str, Scheme]:
    half = Fraction(1, 2)
    forward = scheme_from_offsets([0, 1], name="forward", description="forward difference (f(x+h)-f(x))/h")
    central = scheme_from_offsets([-1, 1], name="central", description="central difference (f(x+h)-f(x-h))/(2h)")
    schemes = [
        forward,
        scheme_from_offsets([-1, 0], name="backward", description="backward difference (f(x)-f(x-h))/h"),
        central,
        scheme_from_offsets(
            [-half, half], name="central-half", description="central difference (f(x+h/2)-f(x-h/2))/h"
        ),
        scheme_from_offsets([0, 1, 2], name="forward2", description="second-order one-sided forward difference"),
        scheme_from_offsets(range(-2, 3), name="central4", description="fourth-order central difference"),
        scheme_from_offsets(range(-3, 4), name="central6", description="sixth-order central difference"),
        scheme_from_offsets(range(-4, 5), name="central8", description="eighth-order central difference"),
        richardson_scheme(
            forward,
            name="richardson-forward",
            description="Richardson extrapolation of forward differences: 2 D_f(h/2) - D_f(h)",
        ),
        richardson_scheme(
            central,
            name="richardson-central",
            description="Richardson extrapolation of central differences: (4 D_c(h/2) - D_c(h))/3",
        ),
        _complex_step(),
    ]
    return MappingProxyType({s.name: s for s in schemes})


_SCHEMES: Mapping[str, Scheme] = _build_registry()

#: Names of the built-in schemes, in the order they are listed to users.
SCHEME_NAMES: tuple[str, ...] = tuple(_SCHEMES)


def get_scheme(name: str) -> Scheme:
    """Built-in scheme by its CLI name.

    Parameters
    ----------
    name : str
        One of :data:`SCHEME_NAMES`.

    Returns
    -------
    Scheme

    Raises
    ------
    ValueError
        For an unknown name; the message lists the valid names and suggests
        the closest one.

    Examples
    --------
    >>> get_scheme("central").weights
    (Fraction(-1, 2), Fraction(1, 2))
    """
    if not isinstance(name, str):
        raise TypeError(f"scheme name must be a string, got {type(name).__name__} {name!r}")
    try:
        return _SCHEMES[name]
    except KeyError:
        pass
    close = difflib.get_close_matches(name, SCHEME_NAMES, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown scheme {name!r}{hint}; valid schemes: {', '.join(SCHEME_NAMES)}")
