"""What the bad-input suite checks after each case: every stored row, and the one sentence on
stderr."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

Dump = dict[str, list[tuple[object, ...]]]


def dump(db_path: Path) -> Dump:
    """Every row of every table of a SQLite file, and the schema itself, in a stable order."""
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        tables = [
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        rows: Dump = {
            "sqlite_master": connection.execute(
                "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
            ).fetchall()
        }
        for table in tables:
            rows[table] = connection.execute(f'SELECT * FROM "{table}" ORDER BY rowid').fetchall()
        return rows
    finally:
        connection.close()


def columns(db_path: Path, table: str) -> list[str]:
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return [row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')]
    finally:
        connection.close()


def _boxed(lines: list[str]) -> str:
    """The message inside Click's error box (``╭─ Error ─╮ │ … │ ╰─╯``), its lines joined."""
    assert lines[0].startswith("╭─ Error") and lines[-1].startswith("╰"), lines
    inner = [line.strip().strip("│").strip() for line in lines[1:-1]]
    assert inner and all(inner), lines
    return " ".join(inner)


def one_sentence(stderr: str, status: tuple[str, ...] = ()) -> str:
    """The error mfactl reported, after checking stderr holds that one error and nothing else:
    ``error: …``, then only ``  - problem`` lines and at most one closing ``hint:`` line; or
    Click's own usage error (Usage, Try, and one boxed message). No traceback, nothing
    "unexpected". ``status``: the exact lines a command prints before it fails (a summary).
    With ``--json`` the error is one JSON document instead."""
    assert "Traceback" not in stderr and "unexpected error" not in stderr, stderr
    lines = stderr.splitlines()
    assert tuple(lines[: len(status)]) == status, stderr
    lines = lines[len(status) :]
    assert lines, "nothing on stderr"
    if lines[0].startswith("{"):
        [line] = lines
        error = json.loads(line)["error"]
        assert set(error) <= {"code", "message", "problems", "hint"} and error["message"], line
        return str(error["message"])
    if lines[0].startswith("Usage: "):  # Click parsed the line and refused it
        assert len(lines) >= 5 and lines[1].startswith("Try '"), stderr
        return _boxed(lines[2:])
    assert lines[0].startswith("error: ") and len(lines[0]) > len("error: "), stderr
    rest = lines[1:]
    problems = [line for line in rest if line.startswith("  - ") and line[4:].strip()]
    hints = [line for line in rest if line.startswith("hint: ")]
    assert len(hints) <= 1 and len(problems) + len(hints) == len(rest), stderr
    assert not hints or rest[-1] == hints[0], stderr
    return lines[0][len("error: ") :]
