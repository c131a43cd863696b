"""Engines for SQLite (the embedded default), PostgreSQL and MariaDB, and the schema check."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, NoSuchModuleError, ProgrammingError
from sqlalchemy.exc import OperationalError as SAOperationalError
from sqlalchemy.pool import NullPool

from mfactl.errors import ConfigError, DatabaseMissing, Unavailable

if TYPE_CHECKING:
    from mfactl.config import Pool


# The Alembic revision this mfactl expects; tests check it is the head of db/migrations.
SCHEMA_REVISION = "0005"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def redact(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


def make_engine(
    url: str, *, create_file: bool = True, pool: Pool | None = None, **kwargs: Any
) -> Engine:
    """An engine for ``url``. A SQLite file that is not there yet is created (readable by its
    owner only) with ``create_file``; without it, that is a configuration error: commands other
    than `mfactl init` leave no stray empty database behind a mistyped path. ``pool`` sizes the
    connection pool (database.pool)."""
    from sqlalchemy import create_engine

    try:
        parsed = make_url(url)
    except Exception:
        raise ConfigError("database.url: is not a valid database URL") from None
    options: dict[str, Any] = {}
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        options["connect_args"] = {"timeout": 30}
        if parsed.database and parsed.database != ":memory:":
            path = Path(parsed.database).expanduser()
            if not path.parent.exists():
                raise ConfigError(f"database.url: folder {path.parent} does not exist")
            if path.is_symlink() and not path.exists():
                # SQLite would create the target itself, readable by others (the umask's mode)
                raise ConfigError(
                    f"database.url: {path} is a symbolic link to {os.readlink(path)}, which does "
                    "not exist; refused: create the database at its real path"
                )
            if create_file:
                _create_private(path)
            elif not path.exists():
                raise DatabaseMissing(
                    f"the database at {redact(url)} does not exist; run `mfactl init` to create it"
                )
    elif backend in ("mysql", "mariadb"):
        if "charset" not in parsed.query:
            parsed = parsed.update_query_dict({"charset": "utf8mb4"})
        options["connect_args"] = {"connect_timeout": 10}
        options["poolclass"] = NullPool
        # each statement sees what is committed when it starts, as on PostgreSQL: a read after
        # taking a user's lock must see the change that held it (REPEATABLE READ, MariaDB's
        # default, would keep showing the transaction's first snapshot), and no gap locks
        options["isolation_level"] = "READ COMMITTED"
    elif backend == "postgresql":
        options["connect_args"] = {"connect_timeout": 10}
    if pool is not None and options.get("poolclass") is not NullPool and not _in_memory(parsed):
        options.update(
            pool_size=pool.size, max_overflow=pool.max_overflow, pool_timeout=pool.timeout_seconds
        )
    options.update(kwargs)
    try:
        engine = create_engine(parsed, hide_parameters=True, **options)
    except (NoSuchModuleError, ImportError) as exc:
        raise ConfigError(f"database.url: unsupported database driver ({exc})") from None
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    elif backend == "postgresql":
        event.listen(engine, "checkout", _ping_if_idle)
        event.listen(engine, "checkin", _note_checkin)
    return engine


def _in_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


# A pooled connection the server has closed (a restart, a failover) is replaced before use when
# it has been idle this long; a busy pool's connections (a login server's) are not pinged, which
# would cost every verification a round trip: those that find their connection dead are tried
# once more on a fresh one (``db.driver``).
IDLE_PING_SECONDS = 10.0


def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
    if record is not None:
        record.info["checked_in_at"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    checked_in_at = record.info.get("checked_in_at")
    if checked_in_at is None or time.monotonic() - checked_in_at < IDLE_PING_SECONDS:
        return
    try:
        cursor = dbapi_connection.cursor()
        cursor.execute("SELECT 1")
        cursor.close()
        if not dbapi_connection.autocommit:
            dbapi_connection.rollback()
    except Exception as exc:
        # the pool discards this connection and checks out another
        raise DisconnectionError(str(exc)) from exc


def _create_private(path: Path) -> None:
    """A new SQLite file is made readable by its owner only (SQLite gives its -wal and -shm
    files the same mode): it holds email addresses and the audit log, if no secret in clear."""
    # there already, or not possible here (a read-only folder, a directory by that name):
    # connecting reports the latter in its own words
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def unavailable(engine: Engine, exc: BaseException) -> Unavailable:
    reason = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0][:300]
    return Unavailable(
        f"the database at {redact(engine.url.render_as_string(False))} is unavailable: {reason}"
    )


def current_revision(engine: Engine) -> str | None:
    """The schema revision stored in the database, or None when there is no mfactl schema."""
    try:
        with engine.connect() as conn:
            try:
                row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
            except (ProgrammingError, SAOperationalError) as exc:
                if _is_missing_table(exc):
                    return None
                raise
            return None if row is None else str(row[0])
    except DBAPIError as exc:
        if "file is not a database" in str(exc.orig):
            raise ConfigError(
                f"database.url: {redact(engine.url.render_as_string(False))} is not an SQLite "
                "database file"
            ) from None
        if isinstance(exc, (SAOperationalError,)) or exc.connection_invalidated:
            raise unavailable(engine, exc) from None
        raise


def _is_missing_table(exc: DBAPIError) -> bool:
    message = str(exc.orig).lower()
    return "no such table" in message or "does not exist" in message or "doesn't exist" in message


def check_schema(engine: Engine) -> None:
    """Refuse with one sentence (exit 5) when the schema is missing, behind or ahead."""
    revision = current_revision(engine)
    where = redact(engine.url.render_as_string(False))
    if revision is None:
        raise ConfigError(f"the database at {where} has no mfactl schema; run `mfactl init` first")
    if revision != SCHEMA_REVISION:
        if is_known_revision(revision):
            raise ConfigError(
                f"the database schema is at revision {revision} but this mfactl needs "
                f"{SCHEMA_REVISION}; run `mfactl init` to upgrade it"
            )
        raise _newer_schema(revision)


def is_known_revision(revision: str) -> bool:
    """A revision of this mfactl's migrations (the current one or an older one)."""
    return any(p.name.split("_")[0] == revision for p in (MIGRATIONS_DIR / "versions").glob("*.py"))


def _newer_schema(revision: str) -> ConfigError:
    return ConfigError(
        f"the database schema is at revision {revision}, which this mfactl does not know; "
        "it was probably made by a newer mfactl",
        hint="upgrade mfactl; nothing was changed",
    )


def upgrade_schema(engine: Engine) -> tuple[str | None, str]:
    """Create or upgrade the schema to the head revision; returns (before, after)."""
    from alembic import command
    from alembic.config import Config

    before = current_revision(engine)
    if before is not None and not is_known_revision(before):
        raise _newer_schema(before)  # Alembic would fail with "Can't locate revision"
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise
        # the database answered but refused a migration step: its tables are not what their
        # recorded revision says (changed by hand, or an earlier upgrade stopped half-way)
        reason = str(exc.orig or exc).strip().splitlines()[0][:300]
        raise ConfigError(
            f"the schema of {redact(engine.url.render_as_string(False))} does not match its "
            f"recorded revision {before or '(none)'} and cannot be upgraded ({reason}): restore "
            "it from a backup, or correct the revision recorded in its alembic_version table"
        ) from None
    after = current_revision(engine)
    assert after is not None
    return before, after
