"""`mail list` and `mail retry`: the outbox as it is shown, and what a retry sends."""

from __future__ import annotations

import email
import json
import re
from email import policy
from pathlib import Path

import pytest

from tests.cli.conftest import Mfactl
from tests.conftest import FrozenClock
from tests.integration.smtp_server import SmtpServer, free_port

SUBJECT = "Your MFA has been reset for acme"


@pytest.fixture
def acme(mfactl: Mfactl) -> Mfactl:
    assert mfactl("org", "add", "acme").exit_code == 0
    for handle in ("bob", "carol"):
        added = mfactl(
            "user", "add", "--org", "acme", "--user", handle, "--email", f"{handle}@example.com"
        )
        assert added.exit_code == 0
    return mfactl


@pytest.fixture
def smtp_down() -> dict[str, str]:
    """Settings that send through an SMTP server nobody listens on."""
    return {
        "MFACTL_EMAIL_TRANSPORT": "smtp",
        "MFACTL_EMAIL_SMTP_HOST": "127.0.0.1",
        "MFACTL_EMAIL_SMTP_PORT": str(free_port()),
        "MFACTL_EMAIL_SMTP_SECURITY": "none",
        "MFACTL_EMAIL_SMTP_TIMEOUTSECONDS": "3",
    }


def refused(env: dict[str, str]) -> str:
    return (
        f"the SMTP server 127.0.0.1:{env['MFACTL_EMAIL_SMTP_PORT']} is unavailable: "
        "[Errno 111] Connection refused"
    )


def queue_reset(cli: Mfactl, env: dict[str, str], user: str = "bob") -> None:
    """Reset ``user`` while the mail server is down: the email waits in the outbox (exit 9)."""
    args = ("user", "reset", "--org", "acme", "--user", user, "--reason", "lost phone", "--yes")
    assert cli(*args, env=env).exit_code == 9


def eml_files(values_file: Path) -> list[Path]:
    return sorted((values_file.parent / "mail").glob("*.eml"))


def recipients(values_file: Path) -> list[str]:
    """Whom the file transport delivered to, one entry per message."""
    return sorted(
        str(email.message_from_bytes(p.read_bytes(), policy=policy.default)["To"])
        for p in eml_files(values_file)
    )


def test_an_empty_outbox_says_so_on_stderr_and_prints_nothing(mfactl: Mfactl) -> None:
    for args, sentence in [
        (("mail", "list"), "the outbox is empty"),
        (("mail", "list", "--status", "failed"), "no failed emails in the outbox"),
    ]:
        result = mfactl(*args)
        assert (result.exit_code, result.stdout, result.stderr) == (0, "", sentence + "\n")
        assert mfactl.json(*args) == []


def test_an_unknown_status_is_exit_2(mfactl: Mfactl) -> None:
    message = (
        "--status must be one of queued, pending, sending, failed, sent, cancelled, not 'lost'"
    )
    result = mfactl("mail", "list", "--status", "lost")
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", f"error: {message}\n")
    as_json = mfactl("mail", "list", "--status", "lost", "--json")
    assert (as_json.exit_code, as_json.stdout) == (2, "")
    assert json.loads(as_json.stderr) == {"error": {"code": "invalid_input", "message": message}}


def test_mail_list_json_shows_a_queued_email_without_its_body(
    acme: Mfactl, smtp_down: dict[str, str]
) -> None:
    queue_reset(acme, smtp_down)
    listed = acme("mail", "list", "--json")
    assert (listed.exit_code, listed.stderr) == (0, "")
    assert json.loads(listed.stdout) == [
        {
            "id": 1,
            "org": "acme",
            "user": "bob",
            "recipient": "bob@example.com",
            "subject": SUBJECT,
            "status": "queued",  # waiting: the one word for it, wherever it is shown
            "attempts": 1,
            "last_error": refused(smtp_down),
            "next_attempt_at": "2026-11-01T09:01:00Z",
            "created_at": "2026-11-01T09:00:00Z",
            "sent_at": None,
        }
    ]
    assert acme.json("mail", "list", "--status", "queued") == json.loads(listed.stdout)
    # tried and failed, so not pending: the narrower filters still tell them apart
    assert acme.json("mail", "list", "--status", "failed") == json.loads(listed.stdout)
    assert acme.json("mail", "list", "--status", "pending") == []


def test_mail_list_table_shows_the_subject_only_where_it_has_room(
    acme: Mfactl, smtp_down: dict[str, str]
) -> None:
    queue_reset(acme, smtp_down)
    # Rich pads each cell to its column's width: the words and their columns are what count
    narrow = acme("mail", "list")  # 100 columns
    assert (narrow.exit_code, narrow.stderr) == (0, "")
    assert [line.rstrip() for line in narrow.stdout.splitlines()] == [
        "ID  USER      RECIPIENT        STATUS  ATTEMPTS  NEXT ATTEMPT",
        "1   acme/bob  bob@example.com  queued  1         2026-11-01T09:01:00Z",
        "",
        "last error, by message id:",
        f"  1: {refused(smtp_down)}",
    ]
    wide = acme("mail", "list", env={"COLUMNS": "110"})
    assert [line.rstrip() for line in wide.stdout.splitlines()][:2] == [
        "ID  USER      RECIPIENT        SUBJECT                           STATUS  ATTEMPTS  "
        "NEXT ATTEMPT",
        f"1   acme/bob  bob@example.com  {SUBJECT}  queued  1         2026-11-01T09:01:00Z",
    ]


def test_mail_retry_on_an_empty_outbox(mfactl: Mfactl) -> None:
    for args in (("mail", "retry"), ("mail", "retry", "--due-only"), ("mail", "retry", "--all")):
        result = mfactl(*args)
        assert (result.exit_code, result.stdout, result.stderr) == (
            0,
            "",
            "sent 0 emails; 0 wait in the outbox\n",
        )
    assert mfactl.json("mail", "retry") == {
        "sent": 0,
        "queued": 0,
        "cancelled": 0,
        "held": 0,
        "error": None,
    }


def test_mail_retry_sends_what_waits_now_and_due_only_keeps_the_back_off(
    acme: Mfactl, smtp_down: dict[str, str], values_file: Path, clock: FrozenClock
) -> None:
    queue_reset(acme, smtp_down)
    # from a timer: the message is not due (its back-off), so it waits, and that is exit 9
    early = acme("mail", "retry", "--due-only")
    assert (early.exit_code, early.stdout, early.stderr) == (
        9,
        "",
        "sent 0 emails; 1 waits in the outbox\n"
        "error: 1 email in the outbox is not due yet\n"
        "hint: `mfactl mail retry` (without --due-only) sends them now\n",
    )
    assert eml_files(values_file) == []
    still_down = acme("mail", "retry", env=smtp_down)
    assert (still_down.exit_code, still_down.stdout, still_down.stderr) == (
        9,
        "",
        "sent 0 emails; 1 waits in the outbox\n"
        f"error: 1 email could not be sent and waits in the outbox: {refused(smtp_down)}\n"
        "hint: `mfactl mail list --status queued` shows each\n",
    )
    as_json = acme("mail", "retry", "--json", env=smtp_down)
    assert as_json.exit_code == 9
    assert json.loads(as_json.stdout) == {
        "sent": 0,
        "queued": 1,
        "cancelled": 0,
        "held": 0,
        "error": refused(smtp_down),
    }
    assert json.loads(as_json.stderr)["error"]["code"] == "email_queued"
    # the hint of the reset ("run `mfactl mail retry` once the mail server answers"), followed
    # literally right after the server is back: it sends now, not after the back-off
    sent = acme("mail", "retry")
    assert (sent.exit_code, sent.stdout, sent.stderr) == (
        0,
        "",
        "sent 1 email; 0 wait in the outbox\n",
    )
    assert recipients(values_file) == ["bob@example.com"]
    assert acme.json("mail", "list", "--status", "sent") == [
        {
            "id": 1,
            "org": "acme",
            "user": "bob",
            "recipient": "bob@example.com",
            "subject": SUBJECT,
            "status": "sent",
            "attempts": 4,
            "last_error": None,
            "next_attempt_at": None,
            "created_at": "2026-11-01T09:00:00Z",
            "sent_at": "2026-11-01T09:00:00Z",
        }
    ]
    assert acme.json("mail", "retry")["sent"] == 0  # sent once, never again


def test_mail_retry_exits_9_when_what_was_due_fails_again(
    acme: Mfactl, smtp_down: dict[str, str], clock: FrozenClock
) -> None:
    queue_reset(acme, smtp_down)
    clock.advance(60)  # the first back-off: due now
    result = acme("mail", "retry", "--due-only", env=smtp_down)
    assert (result.exit_code, result.stdout, result.stderr) == (
        9,
        "",
        "sent 0 emails; 1 waits in the outbox\n"
        f"error: 1 email could not be sent and waits in the outbox: {refused(smtp_down)}\n"
        "hint: `mfactl mail list --status queued` shows each\n",
    )
    [message] = acme.json("mail", "list")
    assert (message["attempts"], message["next_attempt_at"]) == (2, "2026-11-01T09:03:00Z")


def test_mail_retry_exits_9_when_a_recipient_was_changed_in_the_database(
    acme: Mfactl, smtp_down: dict[str, str], values_file: Path, sqlite_url: str
) -> None:
    from sqlalchemy import create_engine, update

    from mfactl.db.models import OutboxMessage

    queue_reset(acme, smtp_down, "bob")
    queue_reset(acme, smtp_down, "carol")
    engine = create_engine(sqlite_url)
    with engine.begin() as db:  # someone who can write the database wants bob's link
        db.execute(
            update(OutboxMessage)
            .where(OutboxMessage.recipient == "bob@example.com")
            .values(recipient="mallory@evil.example")
        )
    engine.dispose()
    reason = (
        "not sent: outbox message 1 was queued for bob@example.com, and its recipient was "
        "changed in the database since; refused"
    )
    result = acme("mail", "retry")
    assert (result.exit_code, result.stdout, result.stderr) == (
        9,
        "",
        "sent 1 email; 1 waits in the outbox\n"
        f"error: 1 email could not be sent and waits in the outbox: {reason}\n"
        "hint: `mfactl mail list --status queued` shows each\n",
    )
    assert recipients(values_file) == ["carol@example.com"]  # carol's went on, bob's nowhere
    [failed] = acme.json("mail", "list", "--status", "failed")
    assert (failed["recipient"], failed["last_error"]) == ("mallory@evil.example", reason)


def test_an_email_whose_link_was_replaced_or_expired_is_cancelled_not_sent(
    acme: Mfactl, smtp_down: dict[str, str], values_file: Path, clock: FrozenClock
) -> None:
    queue_reset(acme, smtp_down, "bob")
    queue_reset(acme, smtp_down, "carol")
    renewed = acme("user", "send-reset-email", "--org", "acme", "--user", "bob", env=smtp_down)
    assert renewed.exit_code == 9  # bob's first email now carries a dead link
    replaced = acme("mail", "retry", "--json")
    assert (replaced.exit_code, json.loads(replaced.stdout)) == (
        0,
        {"sent": 2, "queued": 0, "cancelled": 1, "held": 0, "error": None},
    )
    assert recipients(values_file) == ["bob@example.com", "carol@example.com"]  # bob's once
    dead = "not sent: its link expired or was replaced by a newer one before it could be sent"
    assert [
        (m["id"], m["user"], m["last_error"])
        for m in acme.json("mail", "list", "--status", "cancelled")
    ] == [(1, "bob", dead)]

    queue_reset(acme, smtp_down, "carol")
    clock.advance(72 * 3600 + 1)  # email.links.ttlHours, and a second
    expired = acme("mail", "retry")
    assert (expired.exit_code, expired.stdout, expired.stderr) == (
        0,
        "",
        "sent 0 emails; 0 wait in the outbox\n"
        "1 not sent because their link had expired or been replaced "
        "(see `mfactl mail list --status cancelled`)\n",
    )
    assert recipients(values_file) == ["bob@example.com", "carol@example.com"]  # no new one
    cancelled = acme("mail", "list", "--status", "cancelled")
    assert [line.rstrip() for line in cancelled.stdout.splitlines()] == [
        "ID  USER        RECIPIENT          STATUS     ATTEMPTS  NEXT ATTEMPT",
        "1   acme/bob    bob@example.com    cancelled  1         -",
        "4   acme/carol  carol@example.com  cancelled  1         -",
        "",
        "last error, by message id:",
        f"  1: {dead}",
        f"  4: {dead}",
    ]


def test_a_queued_email_is_listed_then_retried_once_the_server_answers(
    acme: Mfactl, clock: FrozenClock, tmp_path: Path, smtp_down: dict[str, str]
) -> None:
    env = smtp_down
    port = int(env["MFACTL_EMAIL_SMTP_PORT"])
    queue_reset(acme, env)
    [queued] = acme.json("mail", "list", "--status", "queued")
    assert (queued["user"], queued["attempts"], queued["subject"]) == (
        "bob",
        1,
        "Your MFA has been reset for acme",
    )
    listing = acme("mail", "list", env=env).stdout
    assert "token" not in json.dumps(queued) and "token" not in listing
    # on 80 columns the error is one whole line under the table, not a sliver of a column
    narrow = acme("mail", "list", env={**env, "COLUMNS": "80"}).stdout
    assert f"  {queued['id']}: the SMTP server 127.0.0.1:{port} is unavailable" in narrow
    assert max(len(line) for line in narrow.splitlines()) <= 80

    server = SmtpServer(tmp_path, port=port).start()
    try:
        early = acme("mail", "retry", "--due-only", "--json", env=env)  # not due: back-off
        assert early.exit_code == 9
        assert json.loads(early.stdout) == {
            "sent": 0,
            "queued": 1,
            "cancelled": 0,
            "held": 0,
            "error": None,
        }
        clock.advance(61)
        retried = acme("mail", "retry", "--due-only", "--json", env=env)
        assert retried.exit_code == 0, retried.output
        assert json.loads(retried.stdout) == {
            "sent": 1,
            "queued": 0,
            "cancelled": 0,
            "held": 0,
            "error": None,
        }
        again = acme("mail", "retry", "--json", env=env)
        assert json.loads(again.stdout)["sent"] == 0
    finally:
        server.stop()
    [received] = server.received
    assert received.message["Subject"] == "Your MFA has been reset for acme"
    assert re.search(
        r"token=[A-Za-z0-9_-]{43}", received.message.get_body(("plain",)).get_content()
    )
    [sent] = acme.json("mail", "list", "--status", "sent")
    assert sent["attempts"] == 2 and sent["last_error"] is None


def test_a_recipient_smtp_cannot_carry_fails_that_message_alone(
    acme: Mfactl, tmp_path: Path, sqlite_url: str
) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(sqlite_url)
    with engine.begin() as conn:  # written past mfactl's checks, as a careless import might
        conn.execute(text("UPDATE users SET email = 'bob\x0b@example.com' WHERE handle = 'bob'"))
    engine.dispose()
    server = SmtpServer(tmp_path)
    env = {
        "MFACTL_EMAIL_TRANSPORT": "smtp",
        "MFACTL_EMAIL_SMTP_HOST": "127.0.0.1",
        "MFACTL_EMAIL_SMTP_PORT": str(server.port),
        "MFACTL_EMAIL_SMTP_SECURITY": "none",
    }
    server.start()
    try:
        result = acme("user", "enable", "--org", "acme", "--user", "bob", "--send-email", env=env)
        carol = acme("user", "enable", "--org", "acme", "--user", "carol", "--send-email", env=env)
    finally:
        server.stop()
    assert result.exit_code == 9, result.output
    assert (
        "the email recipient 'bob\\x0b@example.com' cannot be sent: it holds a control character"
        in result.stderr
    )
    bob, carol_mail = acme.json("mail", "list")
    assert (bob["user"], bob["status"], bob["attempts"]) == ("bob", "queued", 1)
    assert "control character" in bob["last_error"]
    assert carol.exit_code == 0 and carol_mail["status"] == "sent"
    assert [r.rcpt_tos for r in server.received] == [["carol@example.com"]]
