from __future__ import annotations

import json
from pathlib import Path

from mfactl.config import key_id
from tests.cli.conftest import Mfactl, write_values
from tests.cli.test_keys import rotated_values
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


def test_config_check_renders_the_templates(
    mfactl: Mfactl, values_file: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "enroll.subject.txt").write_text("{{ org.__class__.__mro__ }}")
    with values_file.open("a") as values:
        values.write(f'  templatesDir: "{folder}"\n')
    result = mfactl("config", "check")
    assert result.exit_code == 5
    assert (
        f"problem: email template {folder / 'enroll.subject.txt'} is refused by the sandbox: "
        "access to attribute '__class__' of 'str' object is unsafe\n"
    ) in result.stdout


def test_config_check_refuses_a_values_file_others_can_write(
    mfactl: Mfactl, values_file: Path
) -> None:
    values_file.chmod(0o620)
    result = mfactl("config", "check")
    assert result.exit_code == 5
    assert result.stdout.endswith(
        f"problem: values file {values_file} can be written by users other than its owner; "
        f"run: chmod go-w {values_file}\n"
    )
    assert mfactl("users", "list").stderr == (
        f"error: values file {values_file} can be written by users other than its owner; "
        f"run: chmod go-w {values_file}\n"
    )


def test_config_check_warns_on_settings_that_weaken_the_guessing_bound(
    tmp_path: Path, sqlite_url: str, active_key: str
) -> None:
    throttle = "{baseDelaySeconds: 0, maxFailuresPerDay: 100}"
    values = write_values(
        tmp_path / "v.yaml",
        sqlite_url,
        active_key,
        f"userLogin:\n  mfa:\n    validWindow: 3\n    throttle: {throttle}\n",
    )
    result = Mfactl(values)("config", "check")
    assert [line for line in result.stdout.splitlines() if line.startswith("warning: ")] == [
        "warning: userLogin.mfa.throttle.baseDelaySeconds: 0 lets wrong codes come as fast as "
        "they are sent, with no back-off between them; 1 or more slows a guessing script down",
        "warning: userLogin.mfa.throttle.maxFailuresPerDay: 100 gives someone who has a user's "
        "password 100 guesses a day, about 22.5% a year of finding a code (10: about 2.5%)",
        "warning: userLogin.mfa.validWindow: 3 accepts 7 codes for every guess; 1 (3 codes, 30 s "
        "of clock drift either way) is usually enough",
    ]
    # at the edge of the bound, and at the defaults, nothing to say
    bounded = "userLogin:\n  mfa:\n    validWindow: 2\n    throttle: {maxFailuresPerDay: 10}\n"
    values = write_values(tmp_path / "v.yaml", sqlite_url, active_key, bounded)
    assert "warning:" not in Mfactl(values)("config", "check").stdout


def test_the_defaults_give_about_one_percent_a_year() -> None:
    from mfactl.services.config_check import guessing_odds_per_year

    assert round(guessing_odds_per_year(10, 1, 6), 4) == 0.0109  # the README's 1.1%


def test_config_check_counts_what_no_configured_key_opens(
    tmp_path: Path, sqlite_url: str, active_key: str
) -> None:
    from mfactl.crypto import generate_key

    port = free_port()
    dead = {"host": "127.0.0.1", "port": port, "security": "none", "timeout_seconds": 2}
    old = Mfactl(smtp_values(tmp_path, sqlite_url, active_key, dead))
    steps = [
        (0, "org", "add", "acme"),
        (0, "user", "add", "--org", "acme", "--user", "alice", "--email", "alice@acme.example"),
        (0, "user", "add", "--org", "acme", "--user", "bob", "--email", "bob@acme.example"),
        (0, "user", "enable", "--org", "acme", "--user", "alice", "--no-confirm", "--qr", "none"),
        (9, "user", "enable", "--org", "acme", "--user", "bob", "--send-email"),  # stays queued
    ]
    for code, *args in steps:
        assert old(*args).exit_code == code
    new_key = generate_key()
    # the old key as rollingKey: everything opens
    rotated = rotated_values(tmp_path / "rotated.yaml", sqlite_url, new_key, active_key)
    result = Mfactl(rotated)("config", "check", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["keys"]["secrets"] == {"active": 0, "rolling": 1, "unknown": 0}
    # the rolling key removed too soon
    values = write_values(tmp_path / "new.yaml", sqlite_url, new_key)
    result = Mfactl(values)("config", "check", "--json")
    assert result.exit_code == 6
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["problems"] == []
    assert report["keys"] == {
        "active_key_id": key_id(new_key),
        "rolling_key_id": None,
        "secrets": {"active": 0, "rolling": 0, "unknown": 1},
        "outbox": {"active": 0, "rolling": 0, "unknown": 1},
    }
    text = Mfactl(values)("config", "check")
    assert text.exit_code == 6
    assert (
        "keys: 1 MFA secret and 1 outbox body are sealed with a key that is neither "
        "secretStore.activeKey nor rollingKey, so no configured key opens them; set "
        "secretStore.rollingKey to the key that sealed them (`mfactl keys status` counts them)\n"
    ) in text.stdout
    assert "ok\n" not in text.stdout


def test_config_check_without_an_active_key_exits_5(tmp_path: Path, sqlite_url: str) -> None:
    values = write_values(tmp_path / "v.yaml", sqlite_url, "")
    cli = Mfactl(values)
    assert cli("init").exit_code == 0
    result = cli("config", "check")
    assert result.exit_code == 5
    assert (
        "problem: secretStore.activeKey: is not set, so secrets cannot be sealed or opened; "
        "generate one with `mfactl keys generate` and put it in values.yaml\n"
    ) in result.stdout
    assert "ok\n" not in result.stdout
    report = json.loads(cli("config", "check", "--json").stdout)
    assert report["ok"] is False and report["keys"]["active_key_id"] is None


def test_a_key_file_past_4_kib_is_refused_unread(tmp_path: Path, sqlite_url: str) -> None:
    key_file = tmp_path / "active.key"
    key_file.write_text("A" * 4097)
    key_file.chmod(0o600)
    values = write_values(tmp_path / "values.yaml", sqlite_url, "")
    values.write_text(values.read_text().replace('activeKey: ""', f'activeKeyFile: "{key_file}"'))
    result = Mfactl(values)("org", "list")
    assert result.exit_code == 5
    assert result.stderr.splitlines()[1] == (
        f"  - secretStore.activeKeyFile: cannot read {key_file}: "
        "it is larger than 4 KiB, the most mfactl reads"
    )
    zero = values.read_text().replace(str(key_file), "/dev/zero")
    values.write_text(zero)
    assert Mfactl(values)("org", "list").exit_code == 5


def test_a_values_file_past_1_mib_is_refused_unread(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("# padding\n" * 110_000)
    values.chmod(0o600)
    result = Mfactl(values)("org", "list")
    assert result.exit_code == 5
    assert result.stderr == (
        f"error: cannot read values file {values}: it is larger than 1 MiB, the most mfactl reads\n"
    )


def test_a_values_file_nested_5000_deep_is_a_configuration_error(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("database: " + "[" * 5000 + "]" * 5000 + "\n")
    values.chmod(0o600)
    result = Mfactl(values)("org", "list")
    assert result.exit_code == 5
    assert result.stderr == f"error: values file {values} nests its settings too deeply\n"
