"""The named built-in schemes (the CLI names), the parametrised methods, and lookup by string.

A new built-in scheme is one more entry in :func:`_build_registry`, built with
the constructors of :mod:`verigrad.schemes.scheme`; its order and error
coefficients follow from its weights. A parametrised method (``stencil(...)``,
``richardson(...)``, ``ridders(...)``, ``numderiv(...)``) is one entry in
:data:`METHOD_SIGNATURES` and ``_PARAMS`` and a builder below; the strings are parsed by
:mod:`verigrad.schemes.syntax` (never ``eval``).
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping
from fractions import Fraction
from types import MappingProxyType

from verigrad.schemes.adaptive import NumDeriv, Ridders
from verigrad.schemes.scheme import Scheme, SchemeKind, richardson_scheme, scheme_from_offsets
from verigrad.schemes.syntax import SyntaxProblem, format_value, parse_call
from verigrad.schemes.weights import _fmt, _formal_complex_moment, _leading_term

__all__ = ["METHOD_SIGNATURES", "SCHEME_NAMES", "get_scheme"]


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

#: The parametrised methods and their parameters (defaults shown), as listed to users.
METHOD_SIGNATURES: Mapping[str, str] = MappingProxyType({
    "stencil": "stencil(offsets=[...], deriv=1)",
    "richardson": 'richardson(base="central", terms=2, ratio=2)',
    "ridders": "ridders(h0=0.1, con=1.4, ntab=10, safe=2)",
    "numderiv": "numderiv(d=1e-4, eps=1e-4, zero_tol=1.78e-5, r=4, v=2, side=0)",
})

#: Parameters of the named linear schemes: every one takes the derivative order.
_NAMED_PARAMS = ("deriv",)
_PARAMS = {
    "stencil": ("offsets", "deriv"),
    "richardson": ("base", "terms", "ratio"),
    "ridders": ("h0", "con", "ntab", "safe"),
    "numderiv": ("d", "eps", "zero_tol", "r", "v", "side"),
}


def _valid_list() -> str:
    return ", ".join(SCHEME_NAMES) + ", " + ", ".join(METHOD_SIGNATURES.values())


def _unknown(name: str, text: str) -> ValueError:
    candidates = list(SCHEME_NAMES) + list(METHOD_SIGNATURES)
    close = difflib.get_close_matches(name, candidates, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    where = "" if text == name else f" in {text!r}"
    return ValueError(f"unknown scheme {name!r}{where}{hint}; valid schemes: {_valid_list()}")


def _param_error(text: str, method: str, key: str, value, allowed: tuple[str, ...]) -> ValueError:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    takes = ", ".join(allowed) if allowed else "no parameters"
    return ValueError(f"scheme {text!r}: unknown parameter {key}={format_value(value)}{hint}; "
                      f"{method} takes {takes}")


def _int_param(text: str, key: str, value, *, lo: int, hi: int, what: str) -> int:
    if not isinstance(value, Fraction) or value.denominator != 1 or not lo <= value <= hi:
        raise ValueError(f"scheme {text!r}: {key}={format_value(value)} must be a whole number from {lo} to {hi} "
                         f"({what})")
    return int(value)


def _number_param(text: str, key: str, value) -> Fraction:
    if not isinstance(value, Fraction):
        raise ValueError(f"scheme {text!r}: {key}={format_value(value)} must be a number")
    return value


def _central_offsets(order: int, q: int) -> range:
    k = order // 2 + (q - 1) // 2
    return range(-k, k + 1)


def _with_derivative(name: str, q: int, text: str) -> Scheme:
    """A named linear scheme for the q-th derivative (the same stencil family)."""
    if q == 1:
        return _SCHEMES[name]
    families = {
        "forward": lambda: range(0, q + 1),
        "backward": lambda: range(-q, 1),
        "central": lambda: _central_offsets(2, q),
        "forward2": lambda: range(0, q + 2),
        "central4": lambda: _central_offsets(4, q),
        "central6": lambda: _central_offsets(6, q),
        "central8": lambda: _central_offsets(8, q),
    }
    if name in ("richardson-forward", "richardson-central"):
        base = _with_derivative(name.split("-", 1)[1], q, text)
        return richardson_scheme(base, name=f"{name}(deriv={q})")
    if name not in families:
        raise ValueError(f"scheme {text!r}: {name} has no deriv={q} form; for derivative {q} use central, "
                         "forward, backward, forward2, central4, central6, central8, richardson-central, "
                         "richardson-forward or stencil(offsets=[...], deriv=...)")
    return scheme_from_offsets(list(families[name]()), name=f"{name}(deriv={q})", derivative=q,
                               description=f"{_SCHEMES[name].description.split(' (')[0]}, for derivative {q}")


def get_scheme(name: str) -> "Scheme | Ridders | NumDeriv":
    """A scheme or method by its string: a built-in name or the scheme syntax.

    Parameters
    ----------
    name : str
        One of :data:`SCHEME_NAMES` (optionally with ``(deriv=q)``), or a parametrised method
        (:data:`METHOD_SIGNATURES`): ``stencil(offsets=[-2, -1, 0, 1, 2], deriv=1)``,
        ``richardson(base="central", terms=3, ratio=2)``, ``ridders(h0=0.1)``,
        ``numderiv(d=1e-4, r=4, v=2)``. The grammar is in :mod:`verigrad.schemes.syntax`.

    Returns
    -------
    Scheme or Ridders or NumDeriv
        A linear (or complex-step) :class:`Scheme` for every name but ``ridders`` and
        ``numderiv``, which are adaptive methods (:mod:`verigrad.schemes.adaptive`).

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid names and suggests the closest one),
        an unknown parameter (it lists the method's parameters) or a value out of range (it
        echoes the value and says what is allowed).

    Examples
    --------
    >>> get_scheme("central").weights
    (Fraction(-1, 2), Fraction(1, 2))
    >>> get_scheme("stencil(offsets=[-1, 0, 1], deriv=2)").weights
    (Fraction(1, 1), Fraction(-2, 1), Fraction(1, 1))
    """
    if not isinstance(name, str):
        raise TypeError(f"scheme name must be a string, got {type(name).__name__} {name!r}")
    try:
        return _SCHEMES[name]
    except KeyError:
        pass
    return _parse(name)


@functools.lru_cache(maxsize=512)
def _parse(text: str):
    stripped = text.strip()
    if stripped in _SCHEMES:
        return _SCHEMES[stripped]
    try:
        call = parse_call(text)
    except SyntaxProblem as exc:
        if "(" not in text:
            raise _unknown(text, text) from None
        raise ValueError(str(exc)) from None
    kw = call.kwargs
    if call.name in _SCHEMES:
        allowed = () if call.name == "complex-step" else _NAMED_PARAMS
        for key, value in call.args:
            if key not in allowed:
                raise _param_error(text, call.name, key, value, allowed)
        q = _int_param(text, "deriv", kw["deriv"], lo=1, hi=12, what="the derivative order") if "deriv" in kw else 1
        return _with_derivative(call.name, q, text)
    if call.name not in _PARAMS:
        raise _unknown(call.name, text)
    allowed = _PARAMS[call.name]
    for key, value in call.args:
        if key not in allowed:
            raise _param_error(text, call.name, key, value, allowed)
    try:
        if call.name == "stencil":
            return _stencil(text, kw)
        if call.name == "richardson":
            return _richardson(text, kw)
        if call.name == "ridders":
            return Ridders(**{k: _number_param(text, k, v) for k, v in kw.items()})
        return NumDeriv(**{k: _number_param(text, k, v) for k, v in kw.items()})
    except (TypeError, ValueError) as exc:
        msg = str(exc)
        if msg.startswith(f"scheme {text!r}"):
            raise ValueError(msg) from None
        raise ValueError(f"scheme {text!r}: {msg}") from None


def _stencil(text: str, kw: dict) -> Scheme:
    if "offsets" not in kw:
        raise ValueError(f"scheme {text!r}: stencil needs offsets=[...], e.g. stencil(offsets=[-1, 0, 1], deriv=2)")
    offsets = kw["offsets"]
    if not isinstance(offsets, tuple) or not all(isinstance(c, Fraction) for c in offsets):
        raise ValueError(f"scheme {text!r}: offsets={format_value(offsets)} must be a list of numbers, "
                         "e.g. offsets=[-2, -1, 0, 1, 2] or [0, 1/2, 1]")
    q = _int_param(text, "deriv", kw["deriv"], lo=1, hi=12, what="the derivative order") if "deriv" in kw else 1
    if len(offsets) < q + 1:
        raise ValueError(f"scheme {text!r}: offsets={format_value(offsets)} has {len(offsets)} offsets; "
                         f"deriv={q} needs at least {q + 1}")
    if len(offsets) > 64:
        raise ValueError(f"scheme {text!r}: {len(offsets)} offsets; at most 64")
    canonical = f"stencil(offsets=[{', '.join(_fmt(c) for c in offsets)}]" + (f", deriv={q})" if q != 1 else ")")
    return scheme_from_offsets(list(offsets), name=canonical, derivative=q)


def _richardson(text: str, kw: dict) -> Scheme:
    base_text = kw.get("base", "central")
    if not isinstance(base_text, str):
        raise ValueError(f"scheme {text!r}: base={format_value(base_text)} must be a scheme name such as "
                         '"central" or "stencil(offsets=[0, 1, 2])"')
    base = get_scheme(base_text)
    if not isinstance(base, Scheme) or base.kind is not SchemeKind.LINEAR:
        raise ValueError(f"scheme {text!r}: base={format_value(base_text)} must be a linear scheme "
                         "(not the complex step, Ridders or numDeriv)")
    terms = _int_param(text, "terms", kw["terms"], lo=2, hi=8, what="the number of steps combined") \
        if "terms" in kw else 2
    ratio = _number_param(text, "ratio", kw["ratio"]) if "ratio" in kw else Fraction(2)
    if ratio <= 1:
        raise ValueError(f"scheme {text!r}: ratio={format_value(ratio)} must be > 1 (the step ratio h/r)")
    canonical = f'richardson(base="{base.name}", terms={terms}, ratio={format_value(ratio)})'
    return richardson_scheme(base, ratio=ratio, terms=terms, name=canonical, error_estimate=True)
