"""Who may read or write the files the settings name: values.yaml, key files, templates.

A file others can read gives away the keys in it (a warning); one others can write lets them
put in their own keys, settings or template code (refused).
"""

from __future__ import annotations

import stat
from pathlib import Path


def readable_by_others(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))
    except OSError:
        return False


def others_can_write(path: Path) -> bool:
    """Group- or world-writable: someone else could put their own keys, settings or template
    code in it (a folder: add or replace files in it)."""
    try:
        return bool(path.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH))
    except OSError:
        return False


def writable_refusal(path: Path) -> str:
    return f"{path} can be written by users other than its owner; run: chmod go-w {path}"


def template_refusals(folder: Path) -> list[str]:
    """The templates folder, and every folder and file in it, writable by its owner alone."""
    found = [folder, *sorted(folder.rglob("*"))]
    return [writable_refusal(p) for p in found if others_can_write(p)]
