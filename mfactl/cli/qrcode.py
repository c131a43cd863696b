"""Drawing the otpauth URI as a QR code: in the terminal, or into a PNG or SVG file."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from mfactl.errors import InvalidInput, QrNotWritten, UsageError

FILE_SUFFIXES = (".png", ".svg")


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def parse_target(value: str) -> str | Path:
    """'terminal', 'none', or a Path ending in .png/.svg whose folder exists."""
    if value in ("terminal", "none"):
        return value
    path = Path(value).expanduser()
    if path.suffix.lower() not in FILE_SUFFIXES:
        raise UsageError(
            f"--qr {value!r}: must be terminal, none, or a file path ending in .png or .svg"
        )
    if not path.parent.is_dir():
        raise InvalidInput(f"--qr {value!r}: folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise InvalidInput(f"--qr {value!r}: folder {path.parent} is not writable")
    return path


def show(uri: str, target: str | Path, *, to_stderr: bool = False) -> None:
    """Draw the QR code; files are written atomically and readable by their owner only.

    ``to_stderr`` (with --json, whose document holds the URI on stdout) draws it for the person
    at the terminal only: a stderr going to a log file would keep the secret there."""
    if target == "none" or (target == "terminal" and to_stderr and not stderr_is_terminal()):
        return
    import segno

    code = segno.make(uri, error="m", micro=False)
    if target == "terminal":
        stream = sys.stderr if to_stderr else sys.stdout
        code.terminal(out=stream, compact=True)
        stream.flush()
        return
    assert isinstance(target, Path)
    kind = target.suffix.lower().lstrip(".")
    try:
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".mfactl-qr-", suffix=f".{kind}")
    except OSError as exc:
        raise QrNotWritten(target, exc) from None
    try:
        with os.fdopen(fd, "wb") as handle:  # mkstemp made it 0600: the QR holds the secret
            code.save(handle, kind=kind, scale=8, border=4)
        os.replace(temporary, target)
    except BaseException as exc:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise QrNotWritten(target, exc) from None
        raise
    sys.stderr.write(f"QR code written to {target}\n")
