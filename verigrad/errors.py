"""One exception tree for verigrad.

Every error subclasses :class:`VerigradError` *and* a builtin, so callers that
only know Python's builtins (``except ValueError``) still catch them.  Errors
carry structured fields next to their message so reports need not parse text.
"""

from __future__ import annotations

__all__ = [
    "VerigradError",
    "CaseError",
    "ExpressionError",
    "ShapeError",
    "DomainError",
    "CertificationError",
    "CandidateError",
    "LimitError",
    "UsageError",
]


class VerigradError(Exception):
    """Base of every error verigrad raises on purpose.

    Parameters
    ----------
    message : str
        What went wrong, in one line.
    **fields
        Structured details; ``hint`` (how to fix it) is shown on a second line
        ``  hint: ...`` of the text.

    Attributes
    ----------
    message : str
        The full text (message and hint line), as printed by the CLI.
    hint : str
    fields : dict
    """

    exit_code = 2

    def __init__(self, message: str, **fields: object) -> None:
        hint = fields.get("hint") or ""
        text = f"{message}\n  hint: {hint}" if hint else message
        super().__init__(text)
        self.message = text
        self.hint = str(hint)
        self.fields = fields

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        # Keyword-only constructors do not survive Exception's default pickling; errors cross
        # process boundaries (candidates run in children, corpora on process pools).
        return (_restore, (type(self), dict(self.__dict__)))


def _restore(cls: type, state: dict) -> "VerigradError":
    err = cls.__new__(cls)
    Exception.__init__(err, state.get("message", ""))
    err.__dict__.update(state)
    return err


class CaseError(VerigradError, ValueError):
    """A case file is invalid: the message names file, case, field, value and fix.

    The text reads ``file::case::field: message`` and, when there is one, a second
    line ``  hint: ...``.  A ``field`` keyword (``"[define] Z1"``,
    ``"[symbols] W1.shape"``) is appended to ``where`` unless ``where`` already
    ends with it, so an error raised deep down with only its field can be
    re-raised with the file and case in front and keep the field.

    Attributes
    ----------
    where : str
        ``file::case::field`` breadcrumb of the offending entry.
    reason : str
        The message without the breadcrumb and the hint.
    hint : str
        How to fix it (may be empty).
    """

    def __init__(self, message: str, *, where: str = "", hint: str = "", **fields: object) -> None:
        field = fields.get("field")
        if isinstance(field, str) and field and not (where == field or where.endswith("::" + field)):
            where = f"{where}::{field}" if where else field
        text = f"{where}: {message}" if where else message
        super().__init__(text, where=where, hint=hint, **fields)
        self.where = where
        self.reason = message


class ExpressionError(CaseError):
    """An expression string cannot be parsed or refers to something undeclared."""


class ShapeError(CaseError):
    """Operand shapes do not fit together (numpy broadcasting / matmul rules)."""


class LimitError(CaseError):
    """A configurable resource limit (size, depth, precision, time) was exceeded."""


class DomainError(VerigradError, ArithmeticError):
    """The loss is undefined at the point (log of a negative number, 0/0, ...).

    The message names the sub-expression whose value left the domain.
    """

    exit_code = 2


class CertificationError(VerigradError, ArithmeticError):
    """The truth could not be certified to the requested digits within the precision cap."""


class CandidateError(VerigradError, RuntimeError):
    """A candidate module or function cannot be loaded or called as documented."""


class UsageError(VerigradError, ValueError):
    """The command line or a Python API call was used wrongly."""
