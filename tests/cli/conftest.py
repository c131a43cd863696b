"""CLI fixtures: a values file on a fresh SQLite database, and a runner that invokes mfactl."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from mfactl.cli.app import app as cli_app
from tests.conftest import FrozenClock


def write_values(path: Path, db_url: str, key: str, extra: str = "") -> Path:
    path.write_text(
        f'database: {{url: "{db_url}"}}\n'
        f'secretStore: {{activeKey: "{key}"}}\n'
        "email:\n  transport: file\n"
        f'  fileDir: "{path.parent / "mail"}"\n' + extra,
        encoding="utf-8",
    )
    path.chmod(0o600)
    return path


class Mfactl:
    """Runs mfactl in-process with CliRunner, NO_COLOR and a fixed width."""

    def __init__(self, values: Path) -> None:
        self.values = values
        self.runner = CliRunner()

    def __call__(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> Result:
        return self.runner.invoke(
            cli_app,
            ["--values", str(self.values), "--actor", "tester", *args],
            input=input,
            env={"NO_COLOR": "1", "COLUMNS": "100", "TERM": "dumb", **(env or {})},
        )

    def json(self, *args: str, **kwargs: Any) -> Any:
        result = self(*args, "--json", **kwargs)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


@pytest.fixture
def values_file(tmp_path: Path, sqlite_url: str, active_key: str) -> Path:
    return write_values(tmp_path / "values.yaml", sqlite_url, active_key)


@pytest.fixture
def mfactl(
    values_file: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Mfactl]:
    monkeypatch.setattr("mfactl.bootstrap.system_clock", clock)
    yield Mfactl(values_file)
