from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Mfactl, write_values


def test_config_check_ok(mfactl: Mfactl) -> None:
    result = mfactl("config", "check", "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["problems"] == []
    assert report["database"]["reachable"] is True and report["database"]["schema"] == "current"


def test_config_check_lists_every_problem(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("secretStore: {activeKey: nope}\nemail: {smtp: {port: 0}}\n")
    result = Mfactl(values)("config", "check")
    assert result.exit_code == 5
    assert "problem: secretStore.activeKey: is not a valid Fernet key" in result.stdout
    assert "problem: email.smtp.port: must be at least 1" in result.stdout


def test_config_check_database_down(tmp_path: Path, active_key: str) -> None:
    values = write_values(tmp_path / "v.yaml", "postgresql+psycopg://x@127.0.0.1:1/db", active_key)
    result = Mfactl(values)("config", "check", "--json")
    assert result.exit_code == 7
    assert json.loads(result.stdout)["database"]["reachable"] is False


def test_init_creates_then_reports_current(tmp_path: Path, active_key: str) -> None:
    values = write_values(tmp_path / "v.yaml", f"sqlite:///{tmp_path / 'new.db'}", active_key)
    cli = Mfactl(values)
    first = cli.json("init")
    assert first["before"] is None and first["changed"] is True
    assert cli.json("init")["changed"] is False
