"""What the benchmarks share: throwaway databases with the current schema, and an App on them."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from mfactl.app import App
from mfactl.config import Database, SecretStoreSettings, load_settings
from mfactl.crypto import generate_key

PG_ADMIN_URL = os.environ.get(
    "MFACTL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


class BenchClock:
    """A clock the benchmark moves by hand, so every verification can use a fresh step."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@contextmanager
def database(engine: str) -> Iterator[str]:
    """A URL with the current schema on 'sqlite' (a temp file) or 'postgres' (a temp database)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from mfactl.db.engine import make_engine, upgrade_schema

    if engine == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{Path(folder) / 'bench.db'}"
            schema_engine = make_engine(url)
            upgrade_schema(schema_engine)
            schema_engine.dispose()
            yield url
        return
    name = f"mfactl_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
        schema_engine = make_engine(url)
        upgrade_schema(schema_engine)
        schema_engine.dispose()
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
                )
            )
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


def make_app(url: str, clock: Callable[[], datetime], key: str | None = None) -> App:
    settings = replace(
        load_settings(environ={}),
        database=Database(url=url),
        secret_store=SecretStoreSettings(active_key=key or generate_key()),
    )
    return App(settings=settings, clock=clock, actor="bench")


def enrolled_users(app: App, prefix: str, count: int) -> list[tuple[str, str]]:
    """``count`` users of the organization acme imported already enrolled (a totp_secret
    column), as (handle, secret): the phones' copies, to make codes with."""
    import csv

    from mfactl import totp
    from mfactl.services import user_import

    people = [(f"{prefix}{i}", totp.new_secret()) for i in range(count)]
    with tempfile.TemporaryDirectory() as folder:
        sheet = Path(folder) / "people.csv"
        with sheet.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["handle", "email", "totp_secret"])
            writer.writerows([(name, f"{name}@example.com", s) for name, s in people])
        user_import.import_users(app, "acme", sheet)
    return people


def verdict(target: str, measured: str, met: bool) -> None:
    """One line per target of the issues: PASS or MISS, what was measured, what was asked."""
    print(f"{'PASS' if met else 'MISS'}  {target}: {measured}", flush=True)
