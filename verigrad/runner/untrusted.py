"""Text and file descriptors of user code: captured, bounded and escaped, never trusted.

Everything a candidate (or ``loss_code``) says - what it prints, the message of what it
raises, the keys of the mapping it returns - becomes text in verigrad's records and then in
every report (terminal, JSON, JUnit XML, HTML).  That text is untrusted: it may hold unpaired
surrogates (``"\\ud800"``, which no UTF-8 stream can encode), control characters (a NUL is not
allowed in XML; ``ESC [`` sequences repaint a terminal) or megabytes of output.  It is escaped
once, where it enters the records (:func:`escape_text`, :func:`escape_values`), so that no
report can fail on it.

The worker process that runs user code also owns its file descriptors 0, 1 and 2
(:class:`FdCapture`): 0 reads ``/dev/null``; 1 and 2 write into a private temporary file
that is read back after each batch, so that ``os.write(1, ...)`` or a C library printing to
``stderr`` never interleaves with verigrad's own output, and a candidate that closes them
(``os.close(1)``) loses only its own output.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from typing import Any

import numpy as np

__all__ = ["FdCapture", "MAX_TEXT_CHARS", "escape_text", "escape_values", "safe_str", "unhide_numpy_warnings"]

#: captured text kept per batch (the start and the end are kept, the middle is elided)
MAX_TEXT_CHARS = 100_000

# C0 controls but tab and newline, DEL, C1 controls, surrogates and the two non-characters XML refuses
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def _escape_char(m: re.Match) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def escape_text(text: Any, limit: int = MAX_TEXT_CHARS) -> str:
    """Untrusted text made safe for every report.

    Parameters
    ----------
    text : str (anything else is turned into text by :func:`safe_str`)
    limit : int
        At most this many characters are kept: the first and last halves, with a note of how
        many were left out between them.

    Returns
    -------
    str
        Encodable as UTF-8 and valid in XML 1.0: unpaired surrogates, control characters other
        than tab and newline, and U+FFFE/U+FFFF are written as Python escapes (``\\ud800``,
        ``\\x1b``); everything else is unchanged.

    Examples
    --------
    >>> escape_text("bad \\ud800 \\x1b[31m")
    'bad \\\\ud800 \\\\x1b[31m'
    """
    if not isinstance(text, str):
        text = safe_str(text)
    if len(text) > limit:
        half = limit // 2
        text = f"{text[:half]}\n[... {len(text) - 2 * half} characters left out ...]\n{text[-half:]}"
    return _UNSAFE.sub(_escape_char, text) if _UNSAFE.search(text) else text


def escape_values(value: Any) -> Any:
    """A returned value (arrays, mappings, sequences) with every piece of text escaped.

    Mapping keys and strings are escaped; string arrays are escaped entry by entry; numeric
    arrays are returned as they are (no copy).
    """
    if isinstance(value, dict):
        return {escape_text(k, 200): escape_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [escape_values(v) for v in value]
    if isinstance(value, str):
        return escape_text(value, 1000)
    if isinstance(value, np.ndarray) and value.dtype.kind in "USO":
        if value.dtype.kind == "S":
            value = value.astype("U")
        return np.array([escape_text(safe_str(v), 200) for v in value.reshape(-1).tolist()],
                        dtype=object).reshape(value.shape).astype("U")
    return value


def safe_str(obj: Any) -> str:
    """``str(obj)``, or a description of ``obj`` if its ``__str__`` raises (user objects may)."""
    try:
        return str(obj)
    except BaseException:  # noqa: BLE001 - user code may raise anything from __str__
        try:
            return f"<{type(obj).__name__} object whose str() raised>"
        except BaseException:  # noqa: BLE001
            return "<object whose str() raised>"


class FdCapture:
    """The worker's descriptors 0, 1, 2: ``/dev/null`` in, a private temporary file out.

    :meth:`begin` (before a batch) points 1 and 2 at an emptied temporary file, reopening
    anything the previous batch closed; :meth:`end` (after it) returns what was written there,
    decoded with ``backslashreplace``.  Only the worker process uses this class.
    """

    def __init__(self):
        self._fd = -1
        self._fflush = None
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None)
            self._fflush = libc.fflush  # C stdio buffers of the candidate's extensions
        self._reopen()
        with contextlib.suppress(OSError):
            null = os.open(os.devnull, os.O_RDONLY)
            if null != 0:
                os.dup2(null, 0)
                os.close(null)

    def _reopen(self) -> None:
        fd, name = tempfile.mkstemp(prefix="verigrad-output-")
        with contextlib.suppress(OSError):
            os.unlink(name)
        self._fd = fd

    def _valid(self) -> bool:
        try:
            os.fstat(self._fd)
            return True
        except OSError:
            return False

    def begin(self) -> None:
        """Empty the capture file and point descriptors 1 and 2 at it."""
        for attempt in range(2):
            if attempt or not self._valid():
                self._reopen()  # the last batch closed it, or put something else under its number
            try:
                os.ftruncate(self._fd, 0)
                os.lseek(self._fd, 0, os.SEEK_SET)
                for target in (1, 2):
                    os.dup2(self._fd, target)
                return
            except OSError:
                if attempt:
                    raise

    def end(self, limit: int = MAX_TEXT_CHARS) -> str:
        """What the batch wrote to descriptors 1 and 2 (empty if nothing, or if it was lost)."""
        if self._fflush is not None:
            with contextlib.suppress(Exception):
                self._fflush(None)
        try:
            size = os.fstat(self._fd).st_size
            os.lseek(self._fd, 0, os.SEEK_SET)
            data = os.read(self._fd, min(size, 4 * limit)) if size else b""
        except OSError:
            return "[the output written to file descriptors 1 and 2 was lost: the code closed them]\n"
        text = data.decode("utf-8", "backslashreplace")
        if size > len(data):
            text += f"\n[... {size - len(data)} more bytes left out ...]\n"
        return text


def unhide_numpy_warnings() -> None:
    """In the worker: drop the filters that hide numpy's RuntimeWarnings in the verigrad process
    (the CLI's), and put numpy's default error state back, so that user code sees numpy's default
    warnings - captured as its output."""
    import warnings

    warnings.filters[:] = [f for f in warnings.filters
                           if not (f[0] == "ignore" and f[2] is RuntimeWarning and f[3] is not None
                                   and f[3].match("numpy._core.fromnumeric"))]
    np.seterr(divide="warn", over="warn", under="ignore", invalid="warn")
