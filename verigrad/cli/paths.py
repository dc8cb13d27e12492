"""Output paths of the CLI, checked before any work starts (a run never ends in a traceback
because a report cannot be written)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from verigrad.errors import UsageError

__all__ = ["check_output_path", "check_output_paths"]


def check_output_path(path: str, flag: str) -> None:
    """Refuse ``path`` for option ``flag`` unless a report can be written there.

    The parent directory is created if missing (as the writer would), then probed by
    creating and removing a temporary file in it; the path itself must not be a directory
    or any file other than a regular one (a FIFO, a device, ``/proc``).

    Raises
    ------
    UsageError
        Naming the option, the path, the reason and the fix (exit code 2).
    """
    p = Path(path)
    fix = f"choose another path for {flag}"
    try:
        st = os.stat(p)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot use this path ({exc.strerror})", hint=fix) from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{flag} {path}: this is a directory, not a file",
                             hint=f"give a file name, e.g. {flag} {p / ('report' + (p.suffix or '.out'))}")
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{flag} {path}: this is not a regular file (a device, FIFO or special file)",
                             hint=fix)
    parent = p.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=parent)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UsageError(f"{flag} {path}: cannot write in {parent} ({reason})", hint=fix) from None


def check_output_paths(args, flags: tuple[str, ...]) -> None:
    """:func:`check_output_path` for every given option of ``args`` among ``flags`` (e.g. ``("json", "html")``);
    two options naming the same file are refused too."""
    seen: dict[str, str] = {}
    for name in flags:
        value = getattr(args, name, None)
        if not value:
            continue
        flag = "--" + name.replace("_", "-")
        check_output_path(value, flag)
        key = os.path.realpath(value)
        if key in seen:
            raise UsageError(f"{flag} {value}: the same file as {seen[key]}", hint="give each report its own file")
        seen[key] = flag
