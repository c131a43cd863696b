"""The acceptance sequence as a real process, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mfactl", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mariadb"])
def test_init_org_user_status_audit(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, active_key: str
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'seq.db'}"
        if backend == "sqlite"
        else request.getfixturevalue(f"{backend}_url")
    )
    env = {
        **os.environ,
        "MFACTL_DATABASE_URL": url,
        "MFACTL_SECRETSTORE_ACTIVEKEY": active_key,
        "MFACTL_ACTOR": "ci",
        "HOME": str(tmp_path),
    }
    if backend != "sqlite":  # the session database may hold another test's schema: start clean
        from sqlalchemy import MetaData

        from mfactl.db.engine import make_engine

        engine = make_engine(url)
        meta = MetaData()
        meta.reflect(engine)
        meta.drop_all(engine)
        engine.dispose()
    os.chdir(tmp_path)
    before = run(env, "org", "list")
    assert before.returncode == 5 and "mfactl init" in before.stderr
    assert run(env, "init").returncode == 0
    assert run(env, "org", "add", "acme").returncode == 0
    added = run(
        env, "user", "add", "--org", "acme", "--user", "alice", "--email", "alice@example.com"
    )
    assert added.returncode == 0, added.stderr
    dup = run(
        env, "user", "add", "--org", "acme", "--user", "alice", "--email", "alice@example.com"
    )
    assert dup.returncode == 4 and "Traceback" not in dup.stderr
    status = run(env, "user", "status", "--org", "acme", "--user", "alice", "--json")
    assert json.loads(status.stdout)["email"] == "alice@example.com"
    audit = json.loads(run(env, "audit", "list", "--json").stdout)
    assert [e["action"] for e in audit] == ["org.add", "user.add"]
    assert all(e["actor"] == "ci" for e in audit)
    unknown = run(env, "user", "status", "--org", "nope", "--user", "alice")
    assert unknown.returncode == 3
    assert unknown.stderr == "error: organization 'nope' does not exist\n"
