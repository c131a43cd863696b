"""Shared fixtures: a database on each engine, an App with a frozen clock, and a CLI runner.

SQLite always runs. PostgreSQL (127.0.0.1:5432) and MariaDB (127.0.0.1:3306) run when they
answer, each in a throwaway database made for this test session and dropped after it; when a
server does not answer, its tests are skipped with the reason, and the run says so at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mfactl.app import App
from mfactl.config import Database, SecretStoreSettings, Settings, load_settings
from mfactl.crypto import generate_key

PG_ADMIN_URL = os.environ.get(
    "MFACTL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MARIADB_ADMIN_URL = os.environ.get(
    "MFACTL_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"
)
BACKENDS = ("sqlite", "postgres", "mariadb")
_SKIPPED_SERVERS: dict[str, str] = {}

os.environ.setdefault("NO_COLOR", "1")
os.environ.pop("MFACTL_VALUES", None)
for _name in [n for n in os.environ if n.startswith("MFACTL_") and n != "MFACTL_DEBUG"]:
    if not _name.startswith("MFACTL_TEST_"):
        os.environ.pop(_name)


class FrozenClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 1, 9, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _server_database(kind: str) -> Iterator[str]:
    """Create a throwaway database on a server, yield its URL, drop it afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin_url = PG_ADMIN_URL if kind == "postgres" else MARIADB_ADMIN_URL
    name = f"mfactl_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    engine = create_engine(
        admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )
    try:
        with engine.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except Exception as exc:  # the server is not there: skip, loudly
        engine.dispose()
        reason = (
            f"{kind} server at {make_url(admin_url).render_as_string(True)} "
            f"does not answer: {str(exc).splitlines()[0][:160]}"
        )
        _SKIPPED_SERVERS[kind] = reason
        pytest.skip(reason)
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            if kind == "postgres":
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
                    )
                )
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    yield from _server_database("postgres")


@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    yield from _server_database("mariadb")


@pytest.fixture(scope="session")
def _schema_urls() -> dict[str, str]:
    return {}


def _wipe(app: App) -> None:
    from sqlalchemy import delete

    from mfactl.db.models import Base

    with app.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(delete(table))


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL with the current schema, empty, on each engine in turn."""
    from mfactl.db.engine import make_engine, upgrade_schema

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'mfactl.db'}"
        engine = make_engine(url)
        upgrade_schema(engine)
        engine.dispose()
        return url
    url = request.getfixturevalue(f"{request.param}_url")
    engine = make_engine(url)
    upgrade_schema(engine)
    engine.dispose()
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    from mfactl.db.engine import make_engine, upgrade_schema

    url = f"sqlite:///{tmp_path / 'mfactl.db'}"
    engine = make_engine(url)
    upgrade_schema(engine)
    engine.dispose()
    return url


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def active_key() -> str:
    return generate_key()


def make_app(url: str, clock: FrozenClock, active_key: str, **overrides: Any) -> App:
    settings = load_settings(environ={})
    settings = replace(
        settings,
        database=Database(url=url),
        secret_store=SecretStoreSettings(
            active_key=active_key, rolling_key=overrides.pop("rolling_key", "")
        ),
        **overrides,
    )
    return App(settings=settings, clock=clock, actor="tester")


@pytest.fixture
def app(db_url: str, clock: FrozenClock, active_key: str) -> Iterator[App]:
    """An App on each engine, with an empty current schema and a frozen clock."""
    application = make_app(db_url, clock, active_key)
    _wipe(application)
    yield application
    application.close()


@pytest.fixture
def sqlite_app(sqlite_url: str, clock: FrozenClock, active_key: str) -> Iterator[App]:
    application = make_app(sqlite_url, clock, active_key)
    yield application
    application.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for kind, reason in _SKIPPED_SERVERS.items():
        terminalreporter.write_sep("!", f"{kind.upper()} TESTS SKIPPED", red=True, bold=True)
        terminalreporter.write_line(reason)


__all__ = ["FrozenClock", "Settings", "make_app"]
