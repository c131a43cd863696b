"""`init`: create the schema, upgrade an older one, say when there is nothing to do."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from mfactl.db.engine import SCHEMA_REVISION
from tests.cli.conftest import Mfactl, write_values
from tests.conftest import _server_database


def test_init_creates_the_schema_then_says_it_is_current(tmp_path: Path, active_key: str) -> None:
    db = tmp_path / "new.db"
    cli = Mfactl(write_values(tmp_path / "v.yaml", f"sqlite:///{db}", active_key))
    created = cli("init")
    assert (created.exit_code, created.stdout, created.stderr) == (
        0,
        "",
        f"created the mfactl schema (revision {SCHEMA_REVISION}) in sqlite:///{db}\n",
    )
    again = cli("init")
    assert (again.exit_code, again.stdout, again.stderr) == (
        0,
        "",
        f"the schema of sqlite:///{db} is already current (revision {SCHEMA_REVISION})\n",
    )
    assert cli("org", "list").exit_code == 0


def test_init_json(tmp_path: Path, active_key: str) -> None:
    db = tmp_path / "new.db"
    cli = Mfactl(write_values(tmp_path / "v.yaml", f"sqlite:///{db}", active_key))
    created = cli("init", "--json")
    assert (created.exit_code, created.stderr) == (0, "")
    assert json.loads(created.stdout) == {
        "database": f"sqlite:///{db}",
        "before": None,
        "revision": SCHEMA_REVISION,
        "changed": True,
    }
    assert cli.json("init") == {
        "database": f"sqlite:///{db}",
        "before": SCHEMA_REVISION,
        "revision": SCHEMA_REVISION,
        "changed": False,
    }


def old_database(path: Path) -> Path:
    """A SQLite database at the first revision, holding one organization."""
    from alembic import command
    from alembic.config import Config

    from mfactl.db.engine import MIGRATIONS_DIR, make_engine

    engine = make_engine(f"sqlite:///{path}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
    engine.dispose()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO organizations VALUES (1, 'acme', 'Acme', '2026-01-01')")
    return path


@pytest.mark.parametrize("json_", [False, True])
def test_init_upgrades_an_older_schema_and_keeps_its_rows(
    tmp_path: Path, active_key: str, json_: bool
) -> None:
    db = old_database(tmp_path / "old.db")
    cli = Mfactl(write_values(tmp_path / "v.yaml", f"sqlite:///{db}", active_key))
    behind = cli("org", "list")
    assert (behind.exit_code, behind.stderr) == (
        5,
        f"error: the database schema is at revision 0001 but this mfactl needs "
        f"{SCHEMA_REVISION}; run `mfactl init` to upgrade it\n",
    )
    if json_:
        assert cli.json("init") == {
            "database": f"sqlite:///{db}",
            "before": "0001",
            "revision": SCHEMA_REVISION,
            "changed": True,
        }
    else:
        upgraded = cli("init")
        assert (upgraded.exit_code, upgraded.stdout, upgraded.stderr) == (
            0,
            "",
            f"upgraded the schema of sqlite:///{db} from 0001 to {SCHEMA_REVISION}\n",
        )
    assert [(o["org"], o["name"]) for o in cli.json("org", "list")] == [("acme", "Acme")]


@pytest.fixture(params=["postgres", "mariadb"])
def empty_server_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """A database on a server with nothing in it, dropped after the test."""
    yield from _server_database(request.param)


def test_init_on_a_server_creates_the_schema_once(
    empty_server_database: str, tmp_path: Path, active_key: str
) -> None:
    cli = Mfactl(write_values(tmp_path / "v.yaml", empty_server_database, active_key))
    before = cli("org", "list")
    assert before.exit_code == 5
    assert "has no mfactl schema; run `mfactl init` first" in before.stderr
    assert cli.json("init") == {
        "database": empty_server_database,
        "before": None,
        "revision": SCHEMA_REVISION,
        "changed": True,
    }
    again = cli("init")
    assert (again.exit_code, again.stderr) == (
        0,
        f"the schema of {empty_server_database} is already current (revision {SCHEMA_REVISION})\n",
    )
    assert cli("org", "add", "acme").exit_code == 0


@pytest.fixture
def empty_postgres_database() -> Iterator[str]:
    yield from _server_database("postgres")


def test_init_never_prints_the_database_password(
    empty_postgres_database: str, tmp_path: Path, active_key: str
) -> None:
    # the test server trusts local connections: any password gets in
    url = make_url(empty_postgres_database).set(password="s3cret-pw")
    cli = Mfactl(write_values(tmp_path / "v.yaml", url.render_as_string(False), active_key))
    result = cli("init")
    shown = url.render_as_string(hide_password=True)
    assert shown == empty_postgres_database.replace("postgres@", "postgres:***@", 1)
    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        "",
        f"created the mfactl schema (revision {SCHEMA_REVISION}) in {shown}\n",
    )
    assert cli.json("init")["database"] == shown


def test_a_sqlite_folder_that_does_not_exist_is_a_configuration_error(
    tmp_path: Path, active_key: str
) -> None:
    url = f"sqlite:///{tmp_path / 'nowhere' / 'mfactl.db'}"
    result = Mfactl(write_values(tmp_path / "v.yaml", url, active_key))("init")
    assert (result.exit_code, result.stderr) == (
        5,
        f"error: database.url: folder {tmp_path / 'nowhere'} does not exist\n",
    )
    assert not (tmp_path / "nowhere").exists()


def test_init_creates_then_reports_current(tmp_path: Path, active_key: str) -> None:
    values = write_values(tmp_path / "v.yaml", f"sqlite:///{tmp_path / 'new.db'}", active_key)
    cli = Mfactl(values)
    first = cli.json("init")
    assert first["before"] is None and first["changed"] is True
    assert cli.json("init")["changed"] is False
    # the new SQLite file holds addresses and the audit log: its owner's alone
    assert (tmp_path / "new.db").stat().st_mode & 0o777 == 0o600


def test_a_schema_from_a_newer_mfactl_is_left_alone(tmp_path: Path, active_key: str) -> None:
    import sqlite3

    db = tmp_path / "new.db"
    cli = Mfactl(write_values(tmp_path / "v.yaml", f"sqlite:///{db}", active_key))
    cli.json("init")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    for command in (("init",), ("org", "list")):
        result = cli(*command)
        assert result.exit_code == 5, result.output
        assert result.stderr == (
            "error: the database schema is at revision 9999, which this mfactl does not know; "
            "it was probably made by a newer mfactl\nhint: upgrade mfactl; nothing was changed\n"
        )
    check = cli("config", "check")
    assert check.exit_code == 5
    assert "schema: newer (made by a newer mfactl: upgrade mfactl)\n" in check.stdout
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("9999",)]


def test_init_leaves_the_mode_of_an_existing_sqlite_file(tmp_path: Path, active_key: str) -> None:
    existing = tmp_path / "shared.db"
    existing.touch(mode=0o640)
    existing.chmod(0o640)
    Mfactl(write_values(tmp_path / "v.yaml", f"sqlite:///{existing}", active_key)).json("init")
    assert existing.stat().st_mode & 0o777 == 0o640


def test_init_refuses_a_dangling_symlink_at_the_sqlite_path(
    tmp_path: Path, active_key: str
) -> None:
    link, target = tmp_path / "mfactl.db", tmp_path / "elsewhere.db"
    link.symlink_to(target)
    cli = Mfactl(write_values(tmp_path / "v.yaml", f"sqlite:///{link}", active_key))
    message = (
        f"error: database.url: {link} is a symbolic link to {target}, which does not exist; "
        "refused: create the database at its real path\n"
    )
    for command in (("init",), ("users", "list")):
        result = cli(*command)
        assert (result.exit_code, result.stderr) == (5, message)
    assert not target.exists()
    target.touch(mode=0o600)  # a link to a database that is there is fine
    assert cli("init").exit_code == 0 and target.stat().st_mode & 0o777 == 0o600


def test_a_schema_that_already_has_a_later_column_is_a_configuration_error(
    tmp_path: Path, active_key: str
) -> None:
    db = old_database(tmp_path / "old.db")
    with sqlite3.connect(db) as conn:  # 0002's column, added by hand; the stamp still 0001
        conn.execute("ALTER TABLE action_tokens ADD COLUMN opened_at DATETIME")
    cli = Mfactl(write_values(tmp_path / "v.yaml", f"sqlite:///{db}", active_key))
    result = cli("init")
    assert result.exit_code == 5
    assert result.stderr == (
        f"error: the schema of sqlite:///{db} does not match its recorded revision 0001 and "
        "cannot be upgraded (duplicate column name: opened_at): restore it from a backup, or "
        "correct the revision recorded in its alembic_version table\n"
    )
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]


def test_a_truncated_sqlite_file_is_a_configuration_error(tmp_path: Path, active_key: str) -> None:
    db = tmp_path / "whole.db"
    cli = Mfactl(write_values(tmp_path / "v.yaml", f"sqlite:///{db}", active_key))
    cli.json("init")
    cli("org", "add", "acme")
    truncated = tmp_path / "cut.db"
    truncated.write_bytes(db.read_bytes()[:5000])
    cut = Mfactl(write_values(tmp_path / "cut.yaml", f"sqlite:///{truncated}", active_key))
    for command in (("org", "list"), ("init",)):
        result = cut(*command)
        assert result.exit_code == 5, result.output
        assert result.stderr == (
            "error: the database is not an mfactl database or is damaged (database disk image "
            "is malformed): restore it from a backup, or point database.url at the right file\n"
        )
