"""Words shared by every report: counts with the right plural."""

from __future__ import annotations

__all__ = ["plural"]


def plural(n: int, singular: str, plural_form: str | None = None) -> str:
    """``"1 parameter"``, ``"2 parameters"``, ``"1 entry"``, ``"1,000 entries"`` (thousands separated).

    Examples
    --------
    >>> plural(1, "parameter"), plural(2, "parameter"), plural(1_000, "entry", "entries")
    ('1 parameter', '2 parameters', '1,000 entries')
    """
    word = singular if n == 1 else (plural_form or singular + "s")
    return f"{n:,} {word}"
