"""Reading the files mfactl is given, never more than a set size: `/dev/zero`, a FIFO or a
mistaken multi-gigabyte file must be refused rather than fill the memory or hang."""

from __future__ import annotations

import errno
from pathlib import Path

KIB = 1024
MIB = 1024 * KIB
CSV_MAX_BYTES = 64 * MIB  # a million users in a CSV take about 60 MiB
KEY_FILE_MAX_BYTES = 4 * KIB  # a Fernet key is 44 characters
VALUES_MAX_BYTES = 1 * MIB  # the longest real values.yaml is a few KiB


def size_text(limit: int) -> str:
    return f"{limit // MIB} MiB" if limit >= MIB else f"{limit // KIB} KiB"


def read_capped(path: Path, limit: int) -> bytes:
    """The file's bytes; an OSError (EFBIG) when it holds more than ``limit``."""
    with path.open("rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"it is larger than {size_text(limit)}, the most mfactl reads")
    return data
