from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Mfactl, write_values
from tests.integration.smtp_server import SmtpServer, free_port


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


def smtp_values(tmp_path: Path, url: str, key: str, smtp: dict[str, object]) -> Path:
    """values.yaml on the database, sending through the SMTP server ``smtp`` describes."""
    names = {"timeout_seconds": "timeoutSeconds", "ca_file": "caFile"}
    fields = ", ".join(f"{names.get(k, k)}: {json.dumps(v)}" for k, v in smtp.items() if v)
    values = write_values(tmp_path / "smtp.yaml", url, key)
    values.write_text(
        values.read_text().replace(
            "  transport: file\n", f"  transport: smtp\n  smtp: {{{fields}}}\n"
        )
    )
    return values


def test_config_check_smtp_reachable_with_starttls_and_login(
    tmp_path: Path, sqlite_url: str, active_key: str
) -> None:
    server = SmtpServer(tmp_path, security="starttls", users={"mailer": "s3cret-pw"}).start()
    try:
        cli = Mfactl(smtp_values(tmp_path, sqlite_url, active_key, server.settings()))
        result = cli("config", "check", "--json")
        text = cli("config", "check")
    finally:
        server.stop()
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["mail_folder"] is None
    assert report["smtp"] == {
        "server": f"127.0.0.1:{server.port} (starttls)",
        "reachable": True,
        "error": None,
    }
    assert text.exit_code == 0
    assert f"smtp: 127.0.0.1:{server.port} (starttls) answers\n" in text.stdout
    assert server.received == []  # connected and logged in, sent nothing


def test_config_check_smtp_wrong_password_exits_7_without_the_password(
    tmp_path: Path, sqlite_url: str, active_key: str
) -> None:
    server = SmtpServer(tmp_path, security="starttls", users={"mailer": "right-pw"}).start()
    try:
        settings = server.settings(password="Wr0ng-pa55word")
        cli = Mfactl(smtp_values(tmp_path, sqlite_url, active_key, settings))
        result = cli("config", "check", "--json")
        text = cli("config", "check")
    finally:
        server.stop()
    assert result.exit_code == 7
    smtp = json.loads(result.stdout)["smtp"]
    assert smtp["reachable"] is False
    assert smtp["error"].startswith(
        f"the SMTP server 127.0.0.1:{server.port} refused the credentials of mailer: 535"
    )
    assert text.exit_code == 7
    assert f"smtp: 127.0.0.1:{server.port} (starttls) does not answer (" in text.stdout
    assert "ok\n" not in text.stdout
    for output in (result.stdout, result.stderr, text.stdout, text.stderr):
        assert "Wr0ng-pa55word" not in output and "right-pw" not in output


def test_config_check_smtp_nothing_listening_exits_7(
    tmp_path: Path, sqlite_url: str, active_key: str
) -> None:
    port = free_port()
    settings = {"host": "127.0.0.1", "port": port, "security": "none", "timeout_seconds": 2}
    result = Mfactl(smtp_values(tmp_path, sqlite_url, active_key, settings))(
        "config", "check", "--json"
    )
    assert result.exit_code == 7
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["database"]["reachable"] is True
    assert report["smtp"]["server"] == f"127.0.0.1:{port} (none)"
    assert report["smtp"]["reachable"] is False
    assert report["smtp"]["error"].startswith(f"the SMTP server 127.0.0.1:{port} is unavailable: ")


def test_config_check_file_transport_reports_the_folder(mfactl: Mfactl, values_file: Path) -> None:
    report = mfactl.json("config", "check")
    assert report["smtp"] is None
    assert report["mail_folder"] == str(values_file.parent / "mail")
    text = mfactl("config", "check").stdout
    assert f"mail: written as .eml files to {values_file.parent / 'mail'}\n" in text
