"""An administrator's story across features, through the real CLI, on SQLite, PostgreSQL, MariaDB.

Enroll alice; reset bob while the mail server is down (the email waits in the outbox, sealed);
rotate the key (migrate alice's secret and the sealed email), drop the old key; start the mail
server and retry: bob gets one email whose link opens once and confirms with a code. The TOTP
secret and the link token are never printed after enrollment, nor written to the audit log.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from typer.testing import Result

import mfactl.api
from mfactl.config import key_id
from mfactl.crypto import generate_key
from tests.cli.conftest import Mfactl
from tests.conftest import FrozenClock
from tests.integration.smtp_server import SmtpServer, free_port
from tests.unit.helpers import phone_code, secret_of


def write_smtp_values(path: Path, url: str, port: int, active: str, rolling: str = "") -> Path:
    """values.yaml: the keys, and SMTP (no TLS, short timeout) on a loopback port."""
    keys = f'activeKey: "{active}"' + (f', rollingKey: "{rolling}"' if rolling else "")
    path.write_text(
        f'database: {{url: "{url}"}}\n'
        f"secretStore: {{{keys}}}\n"
        "email:\n"
        "  transport: smtp\n"
        f"  smtp: {{host: 127.0.0.1, port: {port}, security: none, timeoutSeconds: 2}}\n",
        encoding="utf-8",
    )
    path.chmod(0o600)
    return path


class Story:
    """The CLI at the frozen clock, every command's output kept for the leak check."""

    def __init__(self, values: Path) -> None:
        self.cli = Mfactl(values)
        self.outputs: list[str] = []

    def __call__(self, *args: str, code: int = 0) -> Result:
        result = self.cli(*args)
        self.outputs.append(result.stdout + result.stderr)
        assert result.exit_code == code, (args, result.exit_code, result.output)
        return result

    def json(self, *args: str, code: int = 0) -> Any:
        return json.loads(self(*args, "--json", code=code).stdout)


def fresh_database(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'story.db'}"
    url: str = request.getfixturevalue(f"{backend}_url")
    from sqlalchemy import MetaData

    from mfactl.db.engine import make_engine

    engine = make_engine(url)  # the session database may hold another test's schema
    meta = MetaData()
    meta.reflect(engine)
    meta.drop_all(engine)
    engine.dispose()
    return url


@pytest.fixture
def frozen(clock: FrozenClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[FrozenClock]:
    monkeypatch.setattr("mfactl.bootstrap.system_clock", clock)
    yield clock


def enroll(story: Story, clock: FrozenClock, org: str, user: str) -> str:
    """`user enable --qr none --json`, then `user confirm` with the app's code; the URI."""
    started = story.json("user", "enable", "--org", org, "--user", user, "--qr", "none")
    assert started["state"] == "pending"
    uri: str = started["otpauth_uri"]
    story.outputs.clear()  # from here on, no output may hold the secret
    code = phone_code(uri, clock())
    story("user", "confirm", "--org", org, "--user", user, "--code", code)
    return uri


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mariadb"])
def test_reset_during_an_outage_rotate_keys_then_deliver(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, frozen: FrozenClock
) -> None:
    clock = frozen
    url = fresh_database(backend, request, tmp_path)
    port = free_port()  # nothing listens here until step 6
    key_a, key_b = generate_key(), generate_key()
    values = write_smtp_values(tmp_path / "values.yaml", url, port, key_a)
    story = Story(values)

    # 1. schema, organization, users
    story("init")
    story("org", "add", "acme")
    story("user", "add", "--org", "acme", "--user", "alice", "--email", "a@example.com", "--admin")
    story("user", "add", "--org", "acme", "--user", "bob", "--email", "bob@example.com")

    # 2. enroll alice: the URI is printed this once
    uri = enroll(story, clock, "acme", "alice")
    alice_secret = secret_of(uri)
    alice = story.json("user", "status", "--org", "acme", "--user", "alice")
    assert (alice["mfa"], alice["key_id"]) == ("active", key_id(key_a))

    # 3. reset bob while SMTP is down: the reset stands, the email waits (sealed under A)
    reset = story.json(
        "user", "reset", "--org", "acme", "--user", "bob", "--reason", "lost phone", "--yes", code=9
    )
    assert reset["reset"] is True and reset["email"]["status"] == "queued"
    assert f"127.0.0.1:{port} is unavailable" in reset["email"]["error"]
    assert story.json("user", "status", "--org", "acme", "--user", "bob")["mfa"] == "none"
    [queued] = story.json("mail", "list")
    assert (queued["user"], queued["recipient"], queued["status"], queued["attempts"]) == (
        "bob",
        "bob@example.com",
        "queued",
        1,
    )
    assert queued["subject"] == "Your MFA has been reset for acme"
    assert not {"body", "body_ciphertext", "token", "link", "url"} & set(queued)
    assert "token" not in story("mail", "list").stdout
    still_down = story("mail", "retry", "--json", code=9)  # by hand: now, before its time
    assert json.loads(still_down.stdout)["queued"] == 1
    assert json.loads(still_down.stderr)["error"]["message"].startswith(  # stderr: JSON only
        "1 email could not be sent and waits in the outbox: "
        f"the SMTP server 127.0.0.1:{port} is unavailable: "
    )

    # 4. rotate: B active, A rolling; both sealed values are reported, migrated, verified
    write_smtp_values(values, url, port, key_b, rolling=key_a)
    assert story.json("keys", "status") == {
        "active_key_id": key_id(key_b),
        "rolling_key_id": key_id(key_a),
        "secrets": {"active": 0, "rolling": 1, "unknown": 0},
        "outbox": {"active": 0, "rolling": 1, "unknown": 0},
    }
    check = story.json("config", "check", code=7)  # SMTP is still down
    assert check["warnings"] == [
        "1 MFA secret and 1 outbox body are still sealed with secretStore.rollingKey; "
        "run `mfactl keys migrate` before removing that key"
    ]
    assert check["smtp"]["reachable"] is False
    assert check["database"]["reachable"] is True
    human = story("config", "check", code=7).stdout
    assert f"smtp: 127.0.0.1:{port} (none) does not answer (" in human
    migrated = story.json("keys", "migrate")
    assert migrated == {
        "dry_run": False,
        "migrated": 1,
        "already_active": 0,
        "failed": [],
        "outbox": {"migrated": 1, "already_active": 0},
        "changed_meanwhile": 0,
    }
    assert story.json("keys", "status")["secrets"] == {"active": 1, "rolling": 0, "unknown": 0}
    assert story.json("keys", "status")["outbox"] == {"active": 1, "rolling": 0, "unknown": 0}
    assert story.json("keys", "verify") == {"ok": True, "secrets": 1, "outbox": 1, "failed": []}
    assert story.json("config", "check", code=7)["warnings"] == []

    # 5. drop key A: alice's next code still verifies
    write_smtp_values(values, url, port, key_b)
    clock.advance(30)
    verified = story.json(
        "user", "verify", "--org", "acme", "--user", "alice", "--code", phone_code(uri, clock())
    )
    assert verified == {"result": "ok", "drift_steps": None, "retry_after_seconds": None}
    story("keys", "verify")
    as_process = subprocess.run(  # and as a real process, as cron would run it
        [sys.executable, "-m", "mfactl", "--values", str(values), "keys", "verify", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    story.outputs.append(as_process.stdout + as_process.stderr)
    assert (as_process.returncode, as_process.stderr) == (0, ""), as_process.stderr
    assert json.loads(as_process.stdout) == {"ok": True, "secrets": 1, "outbox": 1, "failed": []}

    # 6. the mail server is back on the same port: one retry delivers one email
    clock.advance(90)  # past the second back-off (2 min)
    server = SmtpServer(tmp_path, port=port).start()
    try:
        delivered = story("mail", "retry", "--json")
        assert delivered.stderr == ""
        assert json.loads(delivered.stdout) == {
            "sent": 1,
            "queued": 0,
            "cancelled": 0,
            "held": 0,
            "error": None,
        }
        again = story.json("mail", "retry")
        assert again == {
            "sent": 0,
            "queued": 0,
            "cancelled": 0,
            "held": 0,
            "error": None,
        }
        assert story.json("config", "check")["smtp"]["reachable"] is True
    finally:
        server.stop()
    [received] = server.received
    assert received.rcpt_tos == ["bob@example.com"]
    message = received.message
    assert message["Subject"] == "Your MFA has been reset for acme"
    assert message["To"] == "bob@example.com"
    assert message.get_content_type() == "multipart/alternative"
    text_part, html_part = message.get_body(("plain",)), message.get_body(("html",))
    assert text_part is not None and html_part is not None
    text, html = text_part.get_content(), html_part.get_content()
    [link] = re.findall(r"https://\S+", text)
    assert link.replace("&", "&amp;") in html
    token = parse_qs(urlparse(link).query)["token"][0]
    assert len(token) == 43
    [sent] = story.json("mail", "list", "--status", "sent")
    assert (sent["attempts"], sent["last_error"]) == (3, None)
    assert story.json("keys", "status")["outbox"] == {"active": 0, "rolling": 0, "unknown": 0}

    # the link, served by the platform through the library: opens once, confirms with a code
    with mfactl.api.connect(values, actor="login-server", clock=clock) as mfa:
        opened = mfa.open_link("acme", token)
        assert (opened.org, opened.user, opened.purpose) == ("acme", "bob", "reset")
        with pytest.raises(mfactl.api.Conflict, match="already been opened"):
            mfa.open_link("acme", token)
        confirmed = mfa.confirm_link("acme", token, phone_code(opened.otpauth_uri, clock()))
        assert (confirmed.user, confirmed.purpose) == ("bob", "reset")
    bob_secret = secret_of(opened.otpauth_uri)
    bob = story.json("user", "status", "--org", "acme", "--user", "bob")
    assert (bob["mfa"], bob["key_id"], bob["open_links"]) == ("active", key_id(key_b), 0)

    # 7. neither secret nor the token was printed after enrollment, nor audited
    audit = story("audit", "list", "--json").stdout
    actions = [event["action"] for event in json.loads(audit)]
    for action in ("user.reset", "keys.migrate", "link.open", "link.confirm"):
        assert action in actions, actions
    assert len(story.outputs) > 20
    for output in story.outputs:
        for value in (alice_secret, bob_secret, token):
            assert value not in output


def test_dropping_the_old_key_before_migrating_exits_6(
    tmp_path: Path, sqlite_url: str, frozen: FrozenClock
) -> None:
    key_a, key_b = generate_key(), generate_key()
    port = free_port()
    values = write_smtp_values(tmp_path / "values.yaml", sqlite_url, port, key_a)
    story = Story(values)
    story("org", "add", "acme")
    story("user", "add", "--org", "acme", "--user", "alice", "--email", "a@example.com", "--admin")
    uri = enroll(story, frozen, "acme", "alice")

    write_smtp_values(values, sqlite_url, port, key_b)  # A is gone, nothing was migrated
    frozen.advance(30)
    code = phone_code(uri, frozen())
    verify = story("user", "verify", "--org", "acme", "--user", "alice", "--code", code, code=6)
    assert verify.stderr.startswith(
        "error: the MFA secret of acme/alice cannot be decrypted with any configured key"
    )
    keys = story("keys", "verify", "--json", code=6)
    assert json.loads(keys.stdout)["failed"] == [
        {
            "org": "acme",
            "user": "alice",
            "reason": "the MFA secret of acme/alice cannot be decrypted with any configured key",
        }
    ]
    assert story.json("keys", "status")["secrets"] == {"active": 0, "rolling": 0, "unknown": 1}
    assert story.json("user", "status", "--org", "acme", "--user", "alice")["mfa"] == "active"
    assert all(secret_of(uri) not in output for output in story.outputs)
