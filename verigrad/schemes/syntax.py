"""The scheme syntax: a name with keyword parameters, parsed without ``eval``.

One string names a method everywhere (case files' ``[check] schemes``, the CLI's ``--scheme``,
Python's :func:`verigrad.schemes.get_scheme`)::

    central
    central(deriv=2)
    stencil(offsets=[-2, -1, 0, 1, 2], deriv=1)
    stencil(offsets=[0, 1/2, 1])
    richardson(base="central", terms=3, ratio=2)
    ridders(h0=0.1, con=1.4, ntab=10, safe=2)
    numderiv(d=1e-4, eps=1e-4, r=4, v=2)

Grammar (whitespace is free)::

    call   := NAME [ "(" [ arg { "," arg } ] ")" ]
    arg    := KEY "=" value
    value  := NUMBER | STRING | NAME | "[" [ value { "," value } ] "]"
    NUMBER := [+-] digits [ "." digits ] [ ("e"|"E") [+-] digits ] [ "/" digits ]

Numbers are kept exact (:class:`fractions.Fraction` of the decimal typed: ``0.1`` is 1/10,
``1/3`` is 1/3); each method decides how a parameter is used (a float step, an exact offset).
A parameter given twice, an unknown character or an unclosed bracket is refused with the
position. This module knows the grammar only; :mod:`verigrad.schemes.registry` knows the names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

__all__ = ["Call", "SyntaxProblem", "parse_call", "format_value"]

#: characters a scheme string may have at most (a stencil of a few hundred offsets)
MAX_LENGTH = 4000

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:\s*/\s*\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_\-]*)
  | (?P<string>"[^"]*"|'[^']*')
  | (?P<punct>[()\[\],=])
""", re.VERBOSE)


class SyntaxProblem(ValueError):
    """A scheme string that does not follow the grammar (message names the position)."""


@dataclass(frozen=True)
class Call:
    """A parsed scheme string: ``name(key=value, ...)``.

    Attributes
    ----------
    name : str
    args : tuple of (str, value)
        In the order typed; values are Fraction, str, or tuples of those.
    parenthesised : bool
        Whether the name was followed by ``(...)``.
    """

    name: str
    args: tuple[tuple[str, object], ...]
    parenthesised: bool = False

    @property
    def kwargs(self) -> dict[str, object]:
        return dict(self.args)


def _tokens(text: str):
    pos = 0
    out = []
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise SyntaxProblem(f"scheme {text!r}: unexpected character {text[pos]!r} at position {pos}; "
                                "write name(key=value, ...), e.g. stencil(offsets=[-1, 0, 1], deriv=2)")
        kind = m.lastgroup
        if kind != "space":
            out.append((kind, m.group(), pos))
        pos = m.end()
    out.append(("end", "", len(text)))
    return out


def _number(tok: str) -> Fraction:
    tok = re.sub(r"\s+", "", tok)
    if "/" in tok:
        num, den = tok.split("/")
        if int(den) == 0:
            raise ZeroDivisionError
        return Fraction(num) / int(den)
    return Fraction(tok)


def parse_call(text: str) -> Call:
    """Parse ``name(key=value, ...)`` into a :class:`Call`.

    Examples
    --------
    >>> parse_call('richardson(base="central", terms=3)')
    Call(name='richardson', args=(('base', 'central'), ('terms', Fraction(3, 1))), parenthesised=True)
    """
    if not isinstance(text, str):
        raise TypeError(f"scheme name must be a string, got {type(text).__name__} {text!r}")
    if len(text) > MAX_LENGTH:
        raise SyntaxProblem(f"scheme string of {len(text)} characters; at most {MAX_LENGTH}")
    toks = _tokens(text)
    i = 0

    def peek():
        return toks[i]

    def take(kind=None, value=None):
        nonlocal i
        tk = toks[i]
        if (kind is not None and tk[0] != kind) or (value is not None and tk[1] != value):
            want = repr(value) if value is not None else {"name": "a name", "end": "the end"}.get(kind, kind)
            got = "the end of the string" if tk[0] == "end" else repr(tk[1])
            raise SyntaxProblem(f"scheme {text!r}: expected {want} at position {tk[2]}, got {got}")
        i += 1
        return tk

    def value(depth=0):
        kind, tok, pos = peek()
        if kind == "number":
            take()
            try:
                return _number(tok)
            except ZeroDivisionError:
                raise SyntaxProblem(f"scheme {text!r}: division by zero in {tok!r} at position {pos}") from None
        if kind == "string":
            take()
            return tok[1:-1]
        if kind == "name":
            take()
            if peek()[1] == "(":  # a nested call written bare: base=central(deriv=2)
                start = pos
                level = 0
                while True:
                    k, t, p = take()
                    if k == "end":
                        raise SyntaxProblem(f"scheme {text!r}: unclosed '(' at position {start}")
                    level += t == "("
                    level -= t == ")"
                    if level == 0 and t == ")":
                        return text[start:p + 1]
            return tok
        if tok == "[":
            if depth > 4:
                raise SyntaxProblem(f"scheme {text!r}: lists nested too deeply at position {pos}")
            take()
            items = []
            if peek()[1] != "]":
                items.append(value(depth + 1))
                while peek()[1] == ",":
                    take()
                    items.append(value(depth + 1))
            take("punct", "]")
            return tuple(items)
        got = "the end of the string" if kind == "end" else repr(tok)
        raise SyntaxProblem(f"scheme {text!r}: expected a value (a number, a \"string\" or a [list]) at "
                            f"position {pos}, got {got}")

    name = take("name")[1]
    args: list[tuple[str, object]] = []
    paren = False
    if peek()[1] == "(":
        paren = True
        take()
        if peek()[1] != ")":
            while True:
                _, key, pos = take("name")
                if any(k == key for k, _ in args):
                    raise SyntaxProblem(f"scheme {text!r}: parameter {key!r} is given twice (position {pos})")
                take("punct", "=")
                args.append((key, value()))
                if peek()[1] == ",":
                    take()
                    continue
                break
        take("punct", ")")
    take("end")
    return Call(name, tuple(args), paren)


def format_value(v: object) -> str:
    """A parameter value as it is written in the syntax (exact)."""
    if isinstance(v, tuple):
        return "[" + ", ".join(format_value(x) for x in v) + "]"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Fraction):
        if v.denominator == 1:
            return str(v.numerator)
        d = v.denominator
        # a terminating decimal is written as one (0.1, 1e-4), anything else as p/q
        k = d
        while k % 2 == 0:
            k //= 2
        while k % 5 == 0:
            k //= 5
        if k == 1:
            from decimal import Decimal, localcontext

            with localcontext() as ctx:
                ctx.prec = 200
                dec = (Decimal(v.numerator) / Decimal(v.denominator)).normalize()
            sign, digits, exp = dec.as_tuple()
            if abs(dec) < Decimal("1e-3") or abs(dec) >= Decimal("1e6"):
                mant = "".join(map(str, digits))
                e10 = exp + len(digits) - 1
                mant = mant[0] + ("." + mant[1:] if len(mant) > 1 else "")
                return f"{'-' if sign else ''}{mant}e{e10}"
            return format(dec, "f")
        return f"{v.numerator}/{v.denominator}"
    return str(v)
