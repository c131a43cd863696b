"""The migrations, the models and the schema check, on every engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from mfactl.app import App
from mfactl.db.engine import MIGRATIONS_DIR, SCHEMA_REVISION, check_schema, make_engine
from mfactl.db.models import Base
from mfactl.errors import ConfigError, Unavailable


def test_schema_revision_is_the_migration_head() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_REVISION


def test_migrated_schema_matches_the_models(app: App) -> None:
    with app.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    check_schema(app.engine)


def test_missing_schema_is_refused_with_a_hint(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(ConfigError, match="run `mfactl init` first") as caught:
        check_schema(engine)
    assert caught.value.exit_code == 5


def test_schema_behind_or_unknown(sqlite_app: App) -> None:
    from sqlalchemy import text

    with sqlite_app.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(ConfigError, match="newer mfactl"):
        check_schema(sqlite_app.engine)


def test_unreachable_server_is_unavailable() -> None:
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(Unavailable) as caught:
        check_schema(engine)
    assert caught.value.exit_code == 7


def test_init_upgrades_a_0001_database_and_keeps_its_rows(tmp_path: Path) -> None:
    from alembic import command
    from sqlalchemy import text

    from mfactl.db.engine import current_revision, upgrade_schema

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO organizations VALUES (1, 'acme', 'Acme', '2026-01-01')"))
        conn.execute(
            text(
                "INSERT INTO users VALUES (1, 'u-1', 1, 'alice', 'alice@example.com', '', 0,"
                " '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO action_tokens (id, user_id, purpose, token_hash, created_at,"
                " expires_at) VALUES (1, 1, 'reset', 'h', '2026-01-01', '2026-01-04')"
            )
        )
    with pytest.raises(ConfigError, match="run `mfactl init` to upgrade it"):
        check_schema(engine)
    assert upgrade_schema(engine) == ("0001", SCHEMA_REVISION)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT token_hash, opened_at FROM action_tokens")).one()
    assert tuple(row) == ("h", None)
    assert current_revision(engine) == SCHEMA_REVISION
    check_schema(engine)


def test_revision_0005_upgrades_from_0004_keeping_rows_and_downgrades(app: App) -> None:
    """`mfactl init` on a database of the previous release: the recovery_codes table appears,
    every row stays; the downgrade removes the table alone."""
    from alembic import command
    from sqlalchemy import inspect, select

    from mfactl.db.engine import current_revision, upgrade_schema
    from mfactl.services import recovery
    from tests.unit.helpers import enrolled, people

    people(app, "alice", "bob")
    enrolled(app, "alice")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))

    def rows() -> list[object]:
        with app.engine.connect() as conn:
            return [
                sorted(tuple(r) for r in conn.execute(select(table)).all())
                for table in Base.metadata.sorted_tables
                if table.name != "recovery_codes"
            ]

    try:
        with app.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0004")
        assert "recovery_codes" not in inspect(app.engine).get_table_names()
        assert current_revision(app.engine) == "0004"
        before = rows()
    finally:
        assert upgrade_schema(app.engine)[1] == SCHEMA_REVISION
    assert "recovery_codes" in inspect(app.engine).get_table_names()
    assert rows() == before
    app._schema_checked = False
    check_schema(app.engine)
    code = recovery.generate(app, "acme", "alice").codes[0]
    assert recovery.use(app, "acme", "alice", code).ok
