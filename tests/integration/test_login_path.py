"""The login path (verify, requirement, remember-me checks): what it costs the database, and
that its lean shape keeps every guarantee.

Round trips are counted on the wire, by libpq's own trace of the protocol (each query ends in
one ReadyForQuery from the server): what a login server waits for, whatever the driver hides.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.pool import NullPool

import mfactl.api
from mfactl.app import App
from mfactl.config import Database, Pool, load_settings
from mfactl.db import engine as engine_module
from mfactl.services import remember, verification
from tests.conftest import FrozenClock, _wipe, make_app
from tests.unit.helpers import people, phone_code
from tests.unit.test_verification import enrolled


@pytest.fixture
def pg_app(postgres_url: str, clock: FrozenClock, active_key: str) -> Iterator[App]:
    from mfactl.db.engine import make_engine, upgrade_schema

    engine = make_engine(postgres_url)
    upgrade_schema(engine)
    engine.dispose()
    application = make_app(postgres_url, clock, active_key)
    _wipe(application)
    yield application
    application.close()


@contextmanager
def round_trips(app: App) -> Iterator[list[int]]:
    """Count the queries the server answers on every connection the App checks out inside."""
    import psycopg

    traces: list[Any] = []

    def trace(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed once counted
        dbapi_connection.pgconn.trace(log.fileno())
        dbapi_connection.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        traces.append((dbapi_connection, log))

    counted: list[int] = []
    event.listen(app.engine, "checkout", trace)
    try:
        yield counted
    finally:
        event.remove(app.engine, "checkout", trace)
    for dbapi_connection, log in traces:
        dbapi_connection.pgconn.untrace()
        log.seek(0)
        counted.append(sum("ReadyForQuery" in line for line in log if line.startswith("B")))
        log.close()


def test_a_login_costs_at_most_4_round_trips_on_postgres(pg_app: App, clock: FrozenClock) -> None:
    people(pg_app, "alice")
    uri = enrolled(pg_app)
    mfa = mfactl.api.Mfa(pg_app)
    clock.advance(30)
    assert mfa.verify("acme", "alice", phone_code(uri, clock())).ok  # the pool is warm now
    token = mfa.remember("acme", "alice").token
    clock.advance(30)
    with round_trips(pg_app) as verify_trips:
        assert mfa.verify("acme", "alice", phone_code(uri, clock())).ok
    assert sum(verify_trips) == 2, verify_trips  # the read, then the UPDATE: no BEGIN, no ping
    with round_trips(pg_app) as requirement_trips:
        assert mfa.requirement("acme", "alice").decision == "code"
    with round_trips(pg_app) as remembered_trips:
        assert mfa.requirement("acme", "alice", remember_token=token).decision == "allow"
    assert sum(requirement_trips) == 1 and sum(remembered_trips) == 2
    with round_trips(pg_app) as replay_trips:  # an outcome the read alone decides
        assert mfa.verify("acme", "alice", phone_code(uri, clock())).result == "replayed"
    assert sum(replay_trips) == 1


def test_the_pool_is_sized_by_the_settings(tmp_path: Path, clock: FrozenClock) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(
        "database:\n"
        f"  url: sqlite:///{tmp_path / 'm.db'}\n"
        "  pool: {size: 3, maxOverflow: 2, timeoutSeconds: 4.5}\n"
    )
    settings = load_settings(values, environ={})
    assert settings.database.pool == Pool(size=3, max_overflow=2, timeout_seconds=4.5)
    pool: Any = App(settings=settings, clock=clock).engine.pool
    assert (pool.size(), pool._max_overflow, pool._timeout) == (3, 2, 4.5)
    default = load_settings(environ={}).database.pool
    assert default.size + default.max_overflow >= 16  # 16 login threads at once, documented


def test_sixteen_threads_each_hold_a_connection_at_the_default_pool(
    pg_app: App, clock: FrozenClock
) -> None:
    import threading

    barrier = threading.Barrier(16)
    held: list[Any] = []
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with pg_app.engine.connect() as connection:
                held.append(connection.execute(text("SELECT 1")).scalar())
                barrier.wait(30)  # all sixteen hold theirs at once
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hold) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and held == [1] * 16


def test_an_idle_pooled_connection_the_server_closed_is_replaced_before_use(
    pg_app: App, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    people(pg_app, "alice", "bob")
    mfa = mfactl.api.Mfa(pg_app)
    assert mfa.enroll("acme", "alice")  # a pooled connection
    admin = create_engine(pg_app.settings.database.url, poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    admin.dispose()
    # the connection has been idle longer than the ping's threshold: pinged, and replaced
    monkeypatch.setattr(engine_module, "IDLE_PING_SECONDS", 0.0)
    assert mfa.enroll("acme", "bob")  # an admin call, no retry of its own: it needs the ping


def test_the_crypto_of_a_login_runs_while_sqlite_write_lock_is_free(
    sqlite_app: App, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    people(sqlite_app, "alice")
    uri = enrolled(sqlite_app)
    clock.advance(30)
    path = sqlite_app.engine.url.database
    assert path
    free_at_decrypt: list[bool] = []
    original = sqlite_app.secrets.open_secret

    def opening(*args: Any, **kwargs: Any) -> Any:
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # fails at once while anyone holds the lock
            other.execute("ROLLBACK")
            free_at_decrypt.append(True)
        except sqlite3.OperationalError:
            free_at_decrypt.append(False)
        finally:
            other.close()
        return original(*args, **kwargs)

    monkeypatch.setattr(sqlite_app.secrets, "open_secret", opening)
    assert verification.verify(sqlite_app, "acme", "alice", phone_code(uri, clock())).ok
    assert free_at_decrypt == [True]  # other logins' writes were not waiting on this one


def test_a_login_changed_meanwhile_is_decided_again_from_a_fresh_read(
    sqlite_app: App, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    people(sqlite_app, "alice")
    uri = enrolled(sqlite_app)
    clock.advance(30)
    code = phone_code(uri, clock())
    original = sqlite_app.secrets.open_secret

    def another_login_first(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(sqlite_app.secrets, "open_secret", original)
        # the same code, used by another login between this one's read and its UPDATE
        assert verification.verify(sqlite_app, "acme", "alice", code).ok
        return original(*args, **kwargs)

    monkeypatch.setattr(sqlite_app.secrets, "open_secret", another_login_first)
    assert verification.verify(sqlite_app, "acme", "alice", code).result == "replayed"


def test_remember_me_is_checked_on_the_login_path_with_the_same_rule(
    sqlite_app: App, clock: FrozenClock
) -> None:
    people(sqlite_app, "alice")
    enrolled(sqlite_app)
    issued = remember.issue(sqlite_app, "acme", "alice")
    assert remember.check(sqlite_app, "acme", "alice", issued.token)
    assert not remember.check(sqlite_app, "acme", "alice", issued.token + "x")
    days = sqlite_app.settings.user_login.remember_me.days
    clock.advance(days * 86400 - 1)
    assert remember.check(sqlite_app, "acme", "alice", issued.token)
    clock.advance(1)
    assert not remember.check(sqlite_app, "acme", "alice", issued.token)


def test_a_database_with_an_old_schema_is_refused_on_the_login_path(
    tmp_path: Path, clock: FrozenClock, active_key: str
) -> None:
    from mfactl.errors import ConfigError

    url = f"sqlite:///{tmp_path / 'empty.db'}"
    application = make_app(url, clock, active_key)
    application.settings = replace(application.settings, database=Database(url=url))
    try:
        with pytest.raises(ConfigError, match="has no mfactl schema"):
            verification.verify(application, "acme", "alice", "123456")
        with pytest.raises(ConfigError, match="has no mfactl schema"):
            remember.check(application, "acme", "alice", "token")
    finally:
        application.close()


def test_a_login_hands_its_connection_back_as_it_found_it(pg_app: App, clock: FrozenClock) -> None:
    """The driver's autocommit is the login statements' own: the next unit of work drawing the
    same pooled connection gets a transaction that rolls back as a whole."""
    people(pg_app, "alice")
    uri = enrolled(pg_app)
    pg_app.engine.dispose()
    clock.advance(30)
    assert verification.verify(pg_app, "acme", "alice", phone_code(uri, clock())).ok
    assert pg_app.engine.pool.checkedin() == 1  # the one connection the login used
    with pg_app.engine.connect() as connection:
        assert connection.connection.dbapi_connection.autocommit is False  # type: ignore[union-attr]
        connection.execute(text("UPDATE users SET display_name = 'changed'"))
        connection.rollback()
    with pg_app.engine.connect() as connection:
        assert (
            "changed"
            not in connection.execute(text("SELECT display_name FROM users")).scalars().all()
        )


def test_a_login_hands_its_sqlite_connection_back_as_it_found_it(
    sqlite_app: App, clock: FrozenClock
) -> None:
    people(sqlite_app, "alice")
    uri = enrolled(sqlite_app)
    sqlite_app.engine.dispose()
    clock.advance(30)
    assert verification.verify(sqlite_app, "acme", "alice", phone_code(uri, clock())).ok
    with sqlite_app.engine.connect() as connection:
        raw: Any = connection.connection.dbapi_connection
        assert raw.isolation_level == ""  # pysqlite's transactions, which SQLAlchemy's rely on
        connection.execute(text("UPDATE users SET display_name = 'changed'"))
        connection.rollback()
    with sqlite_app.engine.connect() as connection:
        names = connection.execute(text("SELECT display_name FROM users")).scalars().all()
        assert "changed" not in names
