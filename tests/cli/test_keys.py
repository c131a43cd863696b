from __future__ import annotations

import json
from pathlib import Path

import pytest

from mfactl.config import key_id
from mfactl.crypto import SecretStore, generate_key
from mfactl.db.engine import make_engine
from tests.cli.conftest import Mfactl, write_values
from tests.cli.test_user_mfa import enroll
from tests.conftest import FrozenClock
from tests.keyseed import Seeded, assert_all_open, seed_secrets
from tests.unit.helpers import phone_code


def rotated_values(path: Path, url: str, active: str, rolling: str) -> Path:
    write_values(path, url, active)
    text = path.read_text().replace(
        f'activeKey: "{active}"}}', f'activeKey: "{active}", rollingKey: "{rolling}"}}'
    )
    path.write_text(text)
    return path


@pytest.fixture
def old_key() -> str:
    return generate_key()


@pytest.fixture
def rotated(tmp_path: Path, sqlite_url: str, active_key: str, old_key: str) -> Mfactl:
    return Mfactl(rotated_values(tmp_path / "rotated.yaml", sqlite_url, active_key, old_key))


def seed(url: str, key: str, count: int, prefix: str = "u") -> list[Seeded]:
    engine = make_engine(url)
    try:
        return seed_secrets(engine, SecretStore(key), count, prefix=prefix)
    finally:
        engine.dispose()


def test_generate_prints_only_a_key(mfactl: Mfactl) -> None:
    result = mfactl("keys", "generate")
    assert result.exit_code == 0 and result.stderr == ""
    key = result.stdout.strip()
    assert result.stdout == key + "\n" and SecretStore(key).active_key_id == key_id(key)


def test_generate_loads_no_database_code() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.argv = ['mfactl', 'keys', 'generate']\n"
        "from mfactl.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
        "print('LOADED', 'sqlalchemy' in sys.modules, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stderr == "LOADED False\n", proc.stderr
    SecretStore(proc.stdout.strip())  # and the key is one


def test_status_json_and_text(
    rotated: Mfactl, sqlite_url: str, active_key: str, old_key: str
) -> None:
    seed(sqlite_url, old_key, 3, "o")
    seed(sqlite_url, active_key, 1, "n")
    assert rotated.json("keys", "status") == {
        "active_key_id": key_id(active_key),
        "rolling_key_id": key_id(old_key),
        "secrets": {"active": 1, "rolling": 3, "unknown": 0},
        "outbox": {"active": 0, "rolling": 0, "unknown": 0},
    }
    text = rotated("keys", "status")
    assert text.exit_code == 0
    assert text.stdout.splitlines() == [
        f"active key:    {key_id(active_key)}",
        f"rolling key:   {key_id(old_key)}",
        "secrets:       1 active, 3 rolling, 0 unknown key",
        "outbox bodies: 0 active, 0 rolling, 0 unknown key",
    ]
    assert "run `mfactl keys migrate`" in text.stderr


def test_migrate_json_and_alias_behave_the_same(
    tmp_path: Path, active_key: str, old_key: str
) -> None:
    from mfactl.db.engine import upgrade_schema

    outputs = []
    for command in (["keys", "migrate"], ["migrate-keys"]):
        url = f"sqlite:///{tmp_path / (command[-1] + '.db')}"
        engine = make_engine(url)
        upgrade_schema(engine)
        engine.dispose()
        seeded = seed(url, old_key, 12)
        cli = Mfactl(rotated_values(tmp_path / f"{command[-1]}.yaml", url, active_key, old_key))
        dry = cli.json(*command, "--dry-run", "--batch-size", "5")
        assert dry["dry_run"] is True and dry["migrated"] == 12
        result = cli(*command, "--batch-size", "5", "--json")
        assert result.exit_code == 0, result.output
        outputs.append(json.loads(result.stdout))
        engine = make_engine(url)
        assert_all_open(engine, SecretStore(active_key), seeded)
        engine.dispose()
        assert all(s.secret not in result.stdout + result.stderr for s in seeded)
        text = cli(*command)
        assert text.exit_code == 0 and text.stdout == ""
        assert text.stderr == (
            "migrated 0 secrets and 0 outbox bodies; 12 secrets were already under the active key\n"
        )
    assert (
        outputs[0]
        == outputs[1]
        == {
            "dry_run": False,
            "migrated": 12,
            "already_active": 0,
            "failed": [],
            "outbox": {"migrated": 0, "already_active": 0},
            "changed_meanwhile": 0,
        }
    )


def test_failures_exit_6_naming_each_user(rotated: Mfactl, sqlite_url: str, old_key: str) -> None:
    seed(sqlite_url, old_key, 2, "o")
    seed(sqlite_url, generate_key(), 1, "lost")
    result = rotated("keys", "migrate", "--json")
    assert result.exit_code == 6
    report = json.loads(result.stdout)
    assert report["migrated"] == 2
    reason = "the MFA secret of acme/lost0 cannot be decrypted with any configured key"
    assert report["failed"] == [{"org": "acme", "user": "lost0", "reason": reason}]
    error = json.loads(result.stderr)["error"]
    assert error["code"] == "secret_store"
    assert error["message"] == (
        "1 sealed value could not be migrated and was left untouched; every other row was migrated"
    )
    assert error["problems"] == [f"acme/lost0: {reason}"]
    verify = rotated("keys", "verify")
    assert verify.exit_code == 6
    assert verify.stderr.splitlines()[:3] == [
        "checked 3 secrets and 0 outbox bodies",
        "error: 1 sealed value cannot be opened or is bound to someone else; "
        "every other one is fine",
        f"  - acme/lost0: {reason}",
    ]


def test_verify_ok(rotated: Mfactl, sqlite_url: str, old_key: str, active_key: str) -> None:
    seed(sqlite_url, old_key, 2, "o")
    seed(sqlite_url, active_key, 2, "n")
    assert rotated.json("keys", "verify") == {"ok": True, "secrets": 4, "outbox": 0, "failed": []}


def test_refuses_without_rolling_key(mfactl: Mfactl, sqlite_url: str) -> None:
    seed(sqlite_url, generate_key(), 2)
    result = mfactl("keys", "migrate")
    assert result.exit_code == 6
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: 2 MFA secrets are sealed with a key that is not configured")
    assert lines[1] == (
        "hint: set secretStore.rollingKey to the previous active key, "
        "then run `mfactl keys migrate` again"
    )


def test_same_active_and_rolling_key_is_refused(
    tmp_path: Path, sqlite_url: str, active_key: str
) -> None:
    cli = Mfactl(rotated_values(tmp_path / "same.yaml", sqlite_url, active_key, active_key))
    result = cli("keys", "migrate")
    assert result.exit_code == 5
    assert "secretStore.rollingKey: is the same key as secretStore.activeKey" in result.stderr


def test_config_check_warns_while_the_rolling_key_holds_secrets(
    rotated: Mfactl, sqlite_url: str, old_key: str
) -> None:
    seed(sqlite_url, old_key, 2)
    report = rotated.json("config", "check")
    warning = (
        "2 MFA secrets and 0 outbox bodies are still sealed with secretStore.rollingKey; "
        "run `mfactl keys migrate` before removing that key"
    )
    assert warning in report["warnings"]
    assert f"warning: {warning}" in rotated("config", "check").stdout
    assert rotated("keys", "migrate").exit_code == 0
    assert rotated.json("config", "check")["warnings"] == []


def test_unknown_org_and_bad_batch_size(rotated: Mfactl) -> None:
    missing = rotated("keys", "migrate", "--org", "nope")
    assert missing.exit_code == 3
    assert missing.stderr == "error: organization 'nope' does not exist\n"
    bad = rotated("migrate-keys", "--batch-size", "0")
    assert bad.exit_code == 2
    assert bad.stderr == "error: --batch-size must be between 1 and 100000\n"


def test_off_a_terminal_no_progress_bar_is_even_imported(
    rotated: Mfactl, sqlite_url: str, old_key: str
) -> None:
    import subprocess
    import sys

    seed(sqlite_url, old_key, 3)
    code = (
        "import sys\n"
        f"sys.argv = ['mfactl', '--values', {str(rotated.values)!r}, 'keys', 'migrate']\n"
        "from mfactl.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
        "print('LOADED', 'rich.progress' in sys.modules, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stderr.endswith("LOADED False\n"), proc.stderr
    assert proc.stderr.startswith("migrated 3 secrets")


def test_migrate_counts_in_words(
    rotated: Mfactl, sqlite_url: str, old_key: str, active_key: str
) -> None:
    seed(sqlite_url, old_key, 1, "o")
    seed(sqlite_url, active_key, 1, "n")
    result = rotated("keys", "migrate")
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "migrated 1 secret and 0 outbox bodies; 1 secret was already under the active key\n"
    )
    assert (
        rotated("keys", "verify").stderr.splitlines()[0] == "checked 2 secrets and 0 outbox bodies"
    )


def test_verify_hint_for_an_outbox_body_is_a_reset_not_a_new_secret(
    tmp_path: Path, sqlite_url: str, active_key: str
) -> None:
    from tests.cli.test_config import smtp_values
    from tests.integration.smtp_server import free_port

    dead = {"host": "127.0.0.1", "port": free_port(), "security": "none", "timeout_seconds": 2}
    old = Mfactl(smtp_values(tmp_path, sqlite_url, active_key, dead))
    assert old("org", "add", "acme").exit_code == 0
    assert old("user", "add", "--org", "acme", "--user", "bob", "--email", "b@x.org").exit_code == 0
    assert old("user", "enable", "--org", "acme", "--user", "bob", "--send-email").exit_code == 9
    cli = Mfactl(write_values(tmp_path / "new.yaml", sqlite_url, generate_key()))
    result = cli("keys", "verify")
    assert result.exit_code == 6
    assert result.stderr.splitlines()[-1] == (
        "hint: set secretStore.rollingKey to the key that sealed them, or reset these users "
        "(a reset cancels their queued emails and mails a new link)"
    )
    # the hint, followed, works
    assert (
        cli("user", "reset", "--org", "acme", "--user", "bob", "--reason", "r", "--yes").exit_code
        == 0
    )
    assert cli("keys", "verify").exit_code == 0


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (
            "UPDATE mfa_secrets SET ciphertext = X'0102' WHERE user_id = 1",
            "the MFA secret of acme/alice is damaged: the database holds no text for it",
        ),
        (
            "UPDATE users SET uid = X'0102' WHERE handle = 'alice'",
            "the uid stored for acme/alice is damaged (not ASCII text), so its MFA secret "
            "cannot be checked",
        ),
        (
            "UPDATE users SET uid = 'ünïcode-uid' WHERE handle = 'alice'",
            "the uid stored for acme/alice is damaged (not ASCII text), so its MFA secret "
            "cannot be checked",
        ),
    ],
)
def test_verify_names_a_damaged_secret_row_and_checks_the_rest(
    mfactl: Mfactl, clock: FrozenClock, sqlite_url: str, damage: str, reason: str
) -> None:
    from sqlalchemy import text

    mfactl("org", "add", "acme")
    uris = {}
    for handle in ("alice", "bob"):
        mfactl("user", "add", "--org", "acme", "--user", handle, "--email", f"{handle}@ex.com")
        uris[handle] = enroll(mfactl, clock, handle)
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(text(damage))
    engine.dispose()
    result = mfactl("keys", "verify")
    assert result.exit_code == 6, result.output
    assert result.stderr.splitlines() == [
        "checked 2 secrets and 0 outbox bodies",
        "error: 1 sealed value cannot be opened or is bound to someone else; "
        "every other one is fine",
        f"  - acme/alice: {reason}",
        "hint: set secretStore.rollingKey to the key that sealed them, or reset the MFA of "
        "these users",
    ]
    clock.advance(30)
    for handle, expected in (("alice", f"error: {reason}\n"), ("bob", "")):
        code = phone_code(uris[handle], clock.now)
        verify = mfactl("user", "verify", "--org", "acme", "--user", handle, "--code", code)
        assert (verify.exit_code, verify.stderr) == (6 if expected else 0, expected)
