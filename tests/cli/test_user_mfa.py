"""user enable / confirm / verify / unlock / remember, the `enable` alias, and secret hygiene."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image
from sqlalchemy import create_engine, text
from typer.main import get_command
from typer.testing import Result

from mfactl.cli.app import app as cli_app
from tests.cli.conftest import Mfactl, write_values
from tests.conftest import FrozenClock
from tests.unit.helpers import phone_code, secret_of

BLOCKS = {" ": (1, 1), "\u2580": (0, 1), "\u2584": (1, 0), "\u2588": (0, 0)}  # 1 = dark


def decode_png(path: Path) -> str:
    found = zxingcpp.read_barcodes(Image.open(path))
    assert len(found) == 1
    return str(found[0].text)


def decode_terminal(drawing: str) -> str:
    """Turn segno's compact terminal drawing back into pixels, and read it with zxing."""
    rows = [line for line in drawing.splitlines() if line and set(line) <= set(BLOCKS)]
    pixels: list[list[int]] = []
    for line in rows:
        top, bottom = zip(*(BLOCKS[ch] for ch in line), strict=True)
        pixels += [list(top), list(bottom)]
    scale = 6
    image = Image.new("L", (len(pixels[0]) * scale, len(pixels) * scale), 255)
    for y, row in enumerate(pixels):
        for x, dark in enumerate(row):
            if dark:
                image.paste(0, (x * scale, y * scale, (x + 1) * scale, (y + 1) * scale))
    found = zxingcpp.read_barcodes(image)
    assert len(found) == 1
    return str(found[0].text)


@pytest.fixture
def acme(mfactl: Mfactl) -> Mfactl:
    assert mfactl("org", "add", "acme").exit_code == 0
    for handle in ("alice", "bob"):
        added = mfactl(
            "user", "add", "--org", "acme", "--user", handle, "--email", f"{handle}@example.com"
        )
        assert added.exit_code == 0
    return mfactl


def verify(cli: Mfactl, user: str, code: str, *extra: str) -> Result:
    return cli("user", "verify", "--org", "acme", "--user", user, "--code", code, *extra)


def enroll(mfactl: Mfactl, clock: FrozenClock, user: str = "alice") -> str:
    started = mfactl.json(
        "user", "enable", "--org", "acme", "--user", user, "--no-confirm", "--qr", "none"
    )
    code = phone_code(started["otpauth_uri"], clock.now)
    done = mfactl.json("user", "confirm", "--org", "acme", "--user", user, "--code", code)
    assert done == {"org": "acme", "user": user, "state": "active", "otpauth_uri": None}
    return str(started["otpauth_uri"])


def test_enable_png_qr_then_confirm(acme: Mfactl, clock: FrozenClock, tmp_path: Path) -> None:
    png = tmp_path / "alice.png"
    started = acme.json(
        "user", "enable", "--org", "acme", "--user", "alice", "--no-confirm", "--qr", str(png)
    )
    assert set(started) == {"org", "user", "state", "otpauth_uri"}
    assert started["state"] == "pending"
    assert started["otpauth_uri"].startswith("otpauth://totp/Example%20Platform:alice?secret=")
    assert decode_png(png) == started["otpauth_uri"]
    assert png.stat().st_mode & 0o777 == 0o600
    svg = tmp_path / "alice.svg"
    again = acme(
        "user", "enable", "--org", "acme", "--user", "alice", "--no-confirm", "--qr", str(svg)
    )
    assert again.exit_code == 0 and svg.read_text().lstrip().startswith("<?xml")
    uri = again.stdout.split("otpauth URI: ")[1].strip()
    assert acme.json("user", "status", "--org", "acme", "--user", "alice")["mfa"] == "pending"
    wrong = acme(
        "user",
        "confirm",
        "--org",
        "acme",
        "--user",
        "alice",
        "--code",
        phone_code(started["otpauth_uri"], clock.now),
    )
    assert wrong.exit_code == 4 and wrong.stderr == "error: the code is wrong for acme/alice\n"
    clock.advance(1)  # the wrong code's back-off
    ok = acme(
        "user", "confirm", "--org", "acme", "--user", "alice", "--code", phone_code(uri, clock.now)
    )
    assert ok.exit_code == 0 and ok.stderr == "MFA is now active for acme/alice\n"
    status = acme.json("user", "status", "--org", "acme", "--user", "alice")
    assert status["mfa"] == "active" and status["mfa_key_active"] is True
    assert (
        status["enrolled_at"] == "2026-11-01T09:00:01Z"
        and status["last_used_at"] == "2026-11-01T09:00:01Z"
    )


def test_terminal_qr_decodes_to_the_uri_and_non_tty_leaves_it_pending(
    acme: Mfactl, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = acme("user", "enable", "--org", "acme", "--user", "alice")
    assert result.exit_code == 0
    uri = result.stdout.split("otpauth URI: ")[1].strip()
    assert decode_terminal(result.stdout) == uri
    assert result.stderr.endswith(
        "stdin is not a terminal, so the secret stays pending; confirm it with: "
        "mfactl user confirm --org acme --user alice --code CODE\n"
    )
    as_json = acme("user", "enable", "--org", "acme", "--user", "alice", "--json")
    assert json.loads(as_json.stdout)["state"] == "pending"
    assert not set(as_json.stderr) & (set(BLOCKS) - {" "})  # no drawing in a stderr log file
    with monkeypatch.context() as patch:  # for the person at a terminal, it goes to stderr
        patch.setattr("mfactl.cli.qrcode.stderr_is_terminal", lambda: True)
        again = acme("user", "enable", "--org", "acme", "--user", "alice", "--json")
    assert decode_terminal(again.stderr) == json.loads(again.stdout)["otpauth_uri"]


def test_interactive_prompt(
    acme: Mfactl, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("mfactl.cli.user._interactive", lambda: True)
    monkeypatch.setattr("mfactl.totp.new_secret", lambda: "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
    png = tmp_path / "qr.png"
    args = ("user", "enable", "--org", "acme", "--user", "alice", "--qr", str(png))
    gave_up = acme(*args, input="000000\n\n")
    assert gave_up.exit_code == 4
    assert gave_up.stderr.count("warning: the code is wrong for acme/alice") == 1
    assert "the secret stays pending; confirm it later with: mfactl user confirm" in gave_up.stderr
    out_of_input = acme(*args, input="000000\n")
    assert out_of_input.exit_code == 4 and "Traceback" not in out_of_input.stderr
    code = phone_code(decode_png(png), clock.now)
    done = acme(*args, "--json", input=f"1\n{code}\n")
    assert done.exit_code == 0, done.stderr
    # CliRunner echoes the typed input to stdout, where a terminal would echo it on screen
    assert json.loads(done.stdout.splitlines()[-1])["state"] == "active"
    assert "Code from the authenticator app" in done.stderr


def test_code_confirms_an_existing_pending_secret(acme: Mfactl, clock: FrozenClock) -> None:
    started = acme.json(
        "user", "enable", "--org", "acme", "--user", "alice", "--no-confirm", "--qr", "none"
    )
    code = phone_code(started["otpauth_uri"], clock.now)
    done = acme.json("user", "enable", "--org", "acme", "--user", "alice", "--code", code)
    assert done == {"org": "acme", "user": "alice", "state": "active", "otpauth_uri": None}
    again = acme("user", "enable", "--org", "acme", "--user", "alice", "--no-confirm")
    assert again.exit_code == 4 and again.stdout == ""
    assert again.stderr == (
        "error: MFA is already active for acme/alice\n"
        "hint: reset it first: mfactl user reset --org acme --user alice\n"
    )
    # --code without a pending secret: no code can be right for a secret made just now
    early = acme("user", "enable", "--org", "acme", "--user", "bob", "--code", "123456", "--json")
    assert early.exit_code == 4 and early.stdout == ""
    assert json.loads(early.stderr)["error"] == {
        "code": "conflict",
        "message": "acme/bob has no pending MFA enrollment for a code to confirm",
        "hint": "start one with `mfactl user enable --org acme --user bob --no-confirm`, "
        "then give the code the app shows",
    }
    assert acme.json("user", "status", "--org", "acme", "--user", "bob")["mfa"] == "none"
    # with one pending, a wrong code leaves it pending
    acme("user", "enable", "--org", "acme", "--user", "bob", "--no-confirm", "--qr", "none")
    wrong = acme("user", "enable", "--org", "acme", "--user", "bob", "--code", "1234", "--json")
    assert wrong.exit_code == 4
    assert json.loads(wrong.stdout)["state"] == "pending"
    assert json.loads(wrong.stderr)["error"]["message"] == "the code is wrong for acme/bob"
    both = acme("user", "enable", "--org", "acme", "--user", "bob", "--code", "1", "--no-confirm")
    assert both.exit_code == 2 and "--code and --no-confirm cannot be used together" in both.stderr
    bad_qr = acme("user", "enable", "--org", "acme", "--user", "bob", "--qr", "qr.jpg")
    assert bad_qr.exit_code == 2
    assert (
        bad_qr.stderr
        == "error: --qr 'qr.jpg': must be terminal, none, or a file path ending in .png or .svg\n"
    )


def test_a_qr_file_that_cannot_be_written_is_one_sentence_and_shows_no_secret(
    acme: Mfactl, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(**kwargs: object) -> tuple[int, str]:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("mfactl.cli.qrcode.tempfile.mkstemp", disk_full)
    target = tmp_path / "alice.png"
    result = acme("user", "enable", "--org", "acme", "--user", "alice", "--qr", str(target))
    assert result.exit_code == 2 and result.stdout == "" and not target.exists()
    assert result.stderr == (
        f"error: cannot write the QR code to {target}: No space left on device\n"
        "hint: the MFA of acme/alice stays pending, its secret unshown: run `mfactl user enable` "
        "again with another --qr (it makes a new secret)\n"
    )
    assert acme.json("user", "status", "--org", "acme", "--user", "alice")["mfa"] == "pending"


def test_alias_behaves_like_the_grouped_command(acme: Mfactl) -> None:
    grouped = acme.json(
        "user", "enable", "--org", "acme", "--user", "alice", "--no-confirm", "--qr", "none"
    )
    alias = acme.json("enable", "--org", "acme", "--user", "bob", "--no-confirm", "--qr", "none")
    assert {k: v for k, v in grouped.items() if k != "otpauth_uri"} == {
        "org": "acme",
        "user": "alice",
        "state": "pending",
    }
    assert {k: v for k, v in alias.items() if k != "otpauth_uri"} == {
        "org": "acme",
        "user": "bob",
        "state": "pending",
    }
    assert alias["otpauth_uri"].startswith("otpauth://totp/Example%20Platform:bob?secret=")
    root = get_command(cli_app)
    flat, grouped_command = root.commands["enable"], root.commands["user"].commands["enable"]  # type: ignore[attr-defined]
    assert [p.opts for p in flat.params] == [p.opts for p in grouped_command.params]
    assert "Aliases" in acme("--help").stdout and "Alias of `user enable`" in acme("--help").stdout
    assert (
        acme("enable", "--org", "acme", "--user", "nobody").stderr
        == acme("user", "enable", "--org", "acme", "--user", "nobody").stderr
    )


def test_mfa_disabled_by_policy(tmp_path: Path, sqlite_url: str, active_key: str) -> None:
    values = write_values(
        tmp_path / "v.yaml", sqlite_url, active_key, "userLogin:\n  mfa: {enabled: false}\n"
    )
    cli = Mfactl(values)
    cli("org", "add", "acme")
    cli("user", "add", "--org", "acme", "--user", "alice", "--email", "alice@example.com")
    result = cli("user", "enable", "--org", "acme", "--user", "alice", "--no-confirm")
    assert result.exit_code == 4
    assert result.stderr.startswith(
        "error: MFA is disabled by policy (userLogin.mfa.enabled is false)"
    )


def test_missing_active_key_is_exit_5(tmp_path: Path, sqlite_url: str) -> None:
    values = write_values(tmp_path / "v.yaml", sqlite_url, "")
    cli = Mfactl(values)
    cli("org", "add", "acme")
    cli("user", "add", "--org", "acme", "--user", "alice", "--email", "alice@example.com")
    result = cli("user", "enable", "--org", "acme", "--user", "alice", "--no-confirm")
    assert result.exit_code == 5
    assert "hint: generate one with `mfactl keys generate`" in result.stderr


def test_verify_words_drift_in_the_secrets_own_period(
    mfactl: Mfactl, clock: FrozenClock, tmp_path: Path
) -> None:
    """An imported 60 s secret five steps behind is 300 s behind, whatever the configured
    period (30 s) would say."""
    import pyotp

    secret = pyotp.random_base32(32)
    people = tmp_path / "people.csv"
    people.write_text(
        f"handle,email,totp_secret,period\nslow,slow@example.com,{secret},60\n", encoding="utf-8"
    )
    assert mfactl("org", "add", "acme").exit_code == 0
    assert mfactl("user", "import", "--org", "acme", str(people)).exit_code == 0
    behind = pyotp.TOTP(secret, interval=60).at(clock.now.timestamp() - 5 * 60)
    wrong = verify(mfactl, "slow", behind)
    assert (wrong.exit_code, wrong.stdout) == (
        4,
        "wrong: the code is not valid now (it was valid 5 steps earlier: the device clock is "
        "about 300 s behind); retry after 1 s\n",
    )


def test_malformed_says_the_users_own_digits(mfactl: Mfactl, tmp_path: Path) -> None:
    import pyotp

    people = tmp_path / "people.csv"
    people.write_text(
        f"handle,email,totp_secret,digits\neight,eight@example.com,{pyotp.random_base32(32)},8\n",
        encoding="utf-8",
    )
    assert mfactl("org", "add", "acme").exit_code == 0
    assert mfactl("user", "import", "--org", "acme", str(people)).exit_code == 0
    slip = verify(mfactl, "eight", "123456")
    assert (slip.exit_code, slip.stdout) == (
        4,
        "malformed: not a code of the user's app (8 digits); not counted\n",
    )
    as_json = verify(mfactl, "eight", "12ab", "--json")
    assert json.loads(as_json.stdout) == {
        "result": "malformed",
        "drift_steps": None,
        "retry_after_seconds": None,
    }


def test_verify_explains(acme: Mfactl, clock: FrozenClock, values_file: Path) -> None:
    uri = enroll(acme, clock)
    clock.advance(30)
    code = phone_code(uri, clock.now)
    ok = verify(acme, "alice", code)
    assert (ok.exit_code, ok.stdout) == (0, "ok: the code is right; it cannot be used again\n")
    replayed = verify(acme, "alice", code, "--json")
    assert replayed.exit_code == 4
    assert json.loads(replayed.stdout) == {
        "result": "replayed",
        "drift_steps": None,
        "retry_after_seconds": None,
    }
    clock.advance(60)
    behind = phone_code(uri, clock.now, offset_steps=-5)
    wrong = verify(acme, "alice", behind)
    assert wrong.exit_code == 4
    assert wrong.stdout == (
        "wrong: the code is not valid now (it was valid 5 steps earlier: the device clock is about "
        "150 s behind); retry after 1 s\n"
    )
    result = verify(acme, "alice", phone_code(uri, clock.now), "--json")
    assert result.exit_code == 4
    assert json.loads(result.stdout) == {
        "result": "throttled",
        "drift_steps": None,
        "retry_after_seconds": 1,
    }
    assert verify(acme, "bob", "123456").stdout == "not_enrolled: the user has no active MFA\n"
    unlocked = acme.json("user", "unlock", "--org", "acme", "--user", "alice")
    assert unlocked == {"org": "acme", "user": "alice", "was_locked": False, "failed_attempts": 1}
    assert verify(acme, "alice", phone_code(uri, clock.now)).exit_code == 0
    actions = [e["action"] for e in acme.json("audit", "list")]
    assert actions[-6:] == ["mfa.verify"] * 4 + ["mfa.unlock", "mfa.verify"]


def test_lock_and_unlock(
    tmp_path: Path,
    sqlite_url: str,
    active_key: str,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = write_values(
        tmp_path / "v.yaml",
        sqlite_url,
        active_key,
        "userLogin:\n  mfa:\n    throttle: {baseDelaySeconds: 0, lockAfterFailures: 2}\n",
    )
    monkeypatch.setattr("mfactl.bootstrap.system_clock", clock)
    cli = Mfactl(values)
    cli("org", "add", "acme")
    cli("user", "add", "--org", "acme", "--user", "alice", "--email", "alice@example.com")
    uri = enroll(cli, clock)
    clock.advance(30)
    for _ in range(2):
        assert verify(cli, "alice", "000000").exit_code == 4
    locked = verify(cli, "alice", phone_code(uri, clock.now))
    assert locked.stdout == "locked: too many wrong codes; clear it with `mfactl user unlock`\n"
    assert cli.json("user", "status", "--org", "acme", "--user", "alice")["locked"] is True
    assert cli("user", "unlock", "--org", "acme", "--user", "alice").stderr == (
        "unlocked acme/alice (was locked, 2 failed attempts cleared)\n"
    )
    assert verify(cli, "alice", phone_code(uri, clock.now)).exit_code == 0


def test_unlock_counts_one_failed_attempt_in_the_singular(acme: Mfactl, clock: FrozenClock) -> None:
    enroll(acme, clock)
    assert verify(acme, "alice", "000000").exit_code == 4
    assert acme("user", "unlock", "--org", "acme", "--user", "alice").stderr == (
        "unlocked acme/alice (was not locked, 1 failed attempt cleared)\n"
    )


def test_remember_list_and_revoke(acme: Mfactl, clock: FrozenClock, values_file: Path) -> None:
    from mfactl.bootstrap import bootstrap
    from mfactl.services import remember

    enroll(acme, clock)
    app = bootstrap(values_file, clock=lambda: clock.now)
    first = remember.issue(app, "acme", "alice")
    remember.issue(app, "acme", "alice")
    app.close()
    listed = acme.json("user", "remember", "list", "--org", "acme", "--user", "alice")
    assert [t["state"] for t in listed] == ["live", "live"]
    assert first.token not in json.dumps(listed)
    human = acme("user", "remember", "list", "--org", "acme", "--user", "alice")
    assert human.stdout.splitlines()[0].split() == ["ID", "STATE", "CREATED", "EXPIRES", "REVOKED"]
    one = acme(
        "user", "remember", "revoke", "--org", "acme", "--user", "alice", "--id", str(first.id)
    )
    assert one.stderr == "revoked 1 remember-me token\n"
    assert acme.json("user", "remember", "revoke", "--org", "acme", "--user", "alice") == {
        "org": "acme",
        "user": "alice",
        "revoked": 1,
    }
    missing = acme("user", "remember", "revoke", "--org", "acme", "--user", "alice", "--id", "999")
    assert missing.exit_code == 3


def test_revoking_an_id_past_64_bits_is_not_found(acme: Mfactl) -> None:
    huge = "99999999999999999999999"
    result = acme("user", "remember", "revoke", "--org", "acme", "--user", "alice", "--id", huge)
    assert result.exit_code == 3
    assert result.stderr == f"error: remember-me token {huge} does not exist for acme/alice\n"


def test_swapped_ciphertext_is_exit_6_naming_the_user(
    acme: Mfactl, clock: FrozenClock, sqlite_url: str
) -> None:
    enroll(acme, clock, "alice")
    enroll(acme, clock, "bob")
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE mfa_secrets SET ciphertext = (SELECT s.ciphertext FROM mfa_secrets s "
                "JOIN users u ON u.id = s.user_id WHERE u.handle = 'alice') "
                "WHERE user_id = (SELECT id FROM users WHERE handle = 'bob')"
            )
        )
    engine.dispose()
    result = verify(acme, "bob", "123456")
    assert result.exit_code == 6
    assert result.stderr == (
        "error: the MFA secret stored for acme/bob is bound to another user; it was refused\n"
    )


def test_the_secret_never_shows_after_enrollment(
    acme: Mfactl, clock: FrozenClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    started = acme.json(
        "user", "enable", "--org", "acme", "--user", "alice", "--no-confirm", "--qr", "none"
    )
    secret = secret_of(started["otpauth_uri"])
    code = phone_code(started["otpauth_uri"], clock.now)
    outputs = [acme("user", "confirm", "--org", "acme", "--user", "alice", "--code", code)]
    clock.advance(30)
    for args in (
        ("user", "status", "--org", "acme", "--user", "alice"),
        ("user", "status", "--org", "acme", "--user", "alice", "--json"),
        ("audit", "list"),
        ("audit", "list", "--json"),
        ("user", "verify", "--org", "acme", "--user", "alice", "--code", "000000"),
        (
            "user",
            "verify",
            "--org",
            "acme",
            "--user",
            "alice",
            "--code",
            phone_code(started["otpauth_uri"], clock.now),
        ),
        ("user", "verify", "--org", "acme", "--user", "alice", "--code", "1", "--json"),
        ("user", "enable", "--org", "acme", "--user", "alice"),
        ("user", "enable", "--org", "acme", "--user", "alice", "--json"),
        ("user", "confirm", "--org", "acme", "--user", "alice", "--code", code),
        ("user", "remember", "list", "--org", "acme", "--user", "alice"),
        ("policy", "check", "--json"),
    ):
        outputs.append(acme(*args))
    captured = "".join(r.stdout + r.stderr for r in outputs) + caplog.text
    assert "mfa.confirm" in captured and "acme/alice" in captured
    for needle in (secret, secret.lower(), code):
        assert needle not in captured
    for file in tmp_path.rglob("*"):
        if file.is_file() and file.suffix not in (".db", ".db-wal", ".db-shm"):
            assert secret not in file.read_text(errors="replace")


def test_rolling_key_still_opens_and_an_unknown_key_is_exit_6(
    acme: Mfactl, clock: FrozenClock, tmp_path: Path, sqlite_url: str, active_key: str
) -> None:
    from mfactl.crypto import generate_key

    uri = enroll(acme, clock)
    clock.advance(30)
    new_key = generate_key()
    rolled_values = tmp_path / "rolled.yaml"
    rolled_values.write_text(
        f'database: {{url: "{sqlite_url}"}}\n'
        f'secretStore: {{activeKey: "{new_key}", rollingKey: "{active_key}"}}\n',
        encoding="utf-8",
    )
    rolled_values.chmod(0o600)
    rolled = Mfactl(rolled_values)
    ok = verify(rolled, "alice", phone_code(uri, clock.now))
    assert ok.exit_code == 0, ok.stderr
    status = rolled.json("user", "status", "--org", "acme", "--user", "alice")
    assert status["mfa_key_active"] is False
    stranger = Mfactl(write_values(tmp_path / "stranger.yaml", sqlite_url, generate_key()))
    refused = verify(stranger, "alice", "123456")
    assert refused.exit_code == 6
    assert refused.stderr == (
        "error: the MFA secret of acme/alice cannot be decrypted with any configured key\n"
    )


def damage(url: str, statement: str) -> None:
    """Write a row past mfactl's checks, as a hand edit or a broken import would."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(statement))
    engine.dispose()


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("period", "0", "period '0' is not a positive number of seconds"),
        ("period", "-30", "period '-30' is not a positive number of seconds"),
        ("algorithm", "'MD5'", "algorithm 'MD5' is not SHA1, SHA256 or SHA512"),
        ("last_failed_at", "'yesterday'", "'yesterday' is not a time"),
    ],
)
def test_a_damaged_secret_row_is_exit_6_naming_the_user(
    acme: Mfactl, clock: FrozenClock, sqlite_url: str, column: str, value: str, reason: str
) -> None:
    uris = {handle: enroll(acme, clock, handle) for handle in ("alice", "bob")}
    damage(sqlite_url, f"UPDATE mfa_secrets SET {column} = {value} WHERE user_id = 1")
    clock.advance(30)
    alice = ("--org", "acme", "--user", "alice")
    result = acme("user", "verify", *alice, "--code", phone_code(uris["alice"], clock.now))
    assert (result.exit_code, result.stderr) == (
        6,
        f"error: the MFA secret of the user acme/alice is damaged: {reason}\n"
        "hint: correct the row from a backup, or reset the user's MFA (`mfactl user reset`)\n",
    )
    bob = ("--org", "acme", "--user", "bob", "--code", phone_code(uris["bob"], clock.now))
    assert acme.json("user", "verify", *bob)["result"] == "ok"
    assert acme("user", "reset", *alice, "--reason", "damaged", "--yes").exit_code == 0
    assert acme.json("user", "status", *alice)["mfa"] == "none"


def test_the_api_raises_the_documented_error_for_a_damaged_secret(
    acme: Mfactl, clock: FrozenClock, sqlite_url: str, values_file: Path
) -> None:
    from mfactl import api
    from mfactl.errors import SecretStoreError

    uri = enroll(acme, clock, "alice")
    damage(sqlite_url, "UPDATE mfa_secrets SET period = 0 WHERE user_id = 1")
    with (
        api.connect(values_file, clock=clock) as mfa,
        pytest.raises(SecretStoreError, match="period '0'"),
    ):
        mfa.verify("acme", "alice", phone_code(uri, clock.now + timedelta(seconds=30)))


def test_an_empty_qr_target_is_refused_before_a_secret_is_made(acme: Mfactl) -> None:
    result = acme("user", "enable", "--org", "acme", "--user", "alice", "--qr", "")
    assert (result.exit_code, result.stderr) == (
        2,
        "error: --qr is empty: terminal, none, or a file PATH.png / PATH.svg\n",
    )
    assert acme.json("user", "status", "--org", "acme", "--user", "alice")["mfa"] == "none"
