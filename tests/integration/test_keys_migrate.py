"""`keys migrate` as real processes: killed with SIGKILL and re-run; two at once on PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import MetaData, func, select
from sqlalchemy.engine import Engine

from mfactl import totp
from mfactl.crypto import SecretStore, generate_key
from mfactl.db.engine import make_engine, upgrade_schema
from mfactl.db.models import AuditEvent, MfaSecret
from tests.keyseed import MOMENT, PARAMS, assert_all_open, seed_secrets, stored


def fresh_engine(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    url = (
        f"sqlite:///{tmp_path / 'keys.db'}"
        if backend == "sqlite"
        else request.getfixturevalue(f"{backend}_url")
    )
    engine = make_engine(url)
    if backend != "sqlite":  # the session database may hold another test's schema: start clean
        meta = MetaData()
        meta.reflect(engine)
        meta.drop_all(engine)
    upgrade_schema(engine)
    return engine


def spawn(
    engine: Engine, tmp_path: Path, active: str, rolling: str, *args: str
) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "MFACTL_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "MFACTL_SECRETSTORE_ACTIVEKEY": active,
        "MFACTL_SECRETSTORE_ROLLINGKEY": rolling,
        "MFACTL_ACTOR": "ci",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "mfactl", "keys", "migrate", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def under(engine: Engine, key_id: str) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).where(MfaSecret.key_id == key_id)) or 0)


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie nobody reaps)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.parametrize(("backend", "workers"), [("sqlite", 1), ("sqlite", 2), ("postgres", 1)])
def test_sigkill_mid_run_then_rerun_loses_nothing(
    backend: str, workers: int, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    old_key, new_key = generate_key(), generate_key()
    engine = fresh_engine(backend, request, tmp_path)
    total = 8_000
    seeded = seed_secrets(engine, SecretStore(old_key), total)
    new = SecretStore(new_key, old_key)
    process = spawn(
        engine, tmp_path, new_key, old_key, "--batch-size", "10", "--workers", str(workers)
    )
    deadline = time.monotonic() + 60
    done = 0
    pool: list[int] = []
    while time.monotonic() < deadline and process.poll() is None:
        done = under(engine, new.active_key_id)
        if done >= 200:
            pool = children(process.pid)
            process.kill()  # SIGKILL: no cleanup of any kind
            break
        time.sleep(0.002)
    process.wait(timeout=30)
    assert process.returncode == -9, "the migration ended before it could be killed"
    # the crypto processes do not outlive it, waiting for work forever
    assert len(pool) == workers
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pool) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in pool)
    at_kill = under(engine, new.active_key_id)
    assert 200 <= at_kill < total
    # every row is whole: under one key or the other, bound to its user, with the same codes
    rows = stored(engine)
    for s in seeded:
        ciphertext, kid = rows[s.user_id]
        opened = new.open_secret(s.uid, ciphertext, s.handle)
        assert opened.key_id == kid
        assert totp.code_at(opened.plaintext, MOMENT, PARAMS) == s.code()
    rerun = spawn(engine, tmp_path, new_key, old_key, "--batch-size", "500", "--json")
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    report = json.loads(out)
    assert report["migrated"] == total - at_kill
    assert report["already_active"] == at_kill
    assert_all_open(engine, new, seeded)
    engine.dispose()


def test_two_processes_share_the_work_on_postgres(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from sqlalchemy import text

    old_key, new_key = generate_key(), generate_key()
    engine = fresh_engine("postgres", request, tmp_path)
    total = 6_000
    seeded = seed_secrets(engine, SecretStore(old_key), total)
    # hold both processes at their first FOR UPDATE until both are there, so they really race
    gate = engine.connect()
    gate.execute(text("LOCK TABLE mfa_secrets IN EXCLUSIVE MODE"))
    processes = [
        spawn(engine, tmp_path, new_key, old_key, "--batch-size", "50", "--json") for _ in range(2)
    ]
    deadline = time.monotonic() + 60
    waiting = 0
    with engine.connect() as watcher:
        while waiting < 2 and time.monotonic() < deadline:
            waiting = int(
                watcher.scalar(
                    text(
                        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                        "WHERE c.relname = 'mfa_secrets' AND NOT l.granted"
                    )
                )
                or 0
            )
            time.sleep(0.02)
    assert waiting == 2
    gate.rollback()
    gate.close()
    reports = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        reports.append(json.loads(out))
    migrated = [r["migrated"] for r in reports]
    assert sum(migrated) == total and all(m > 0 for m in migrated), migrated
    assert sum(r["changed_meanwhile"] for r in reports) == 0
    with engine.connect() as conn:
        details = list(conn.scalars(select(AuditEvent.details)))
    assert sorted(d["migrated"] for d in details) == sorted(migrated)
    assert_all_open(engine, SecretStore(new_key, old_key), seeded)
    engine.dispose()
