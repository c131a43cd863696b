"""Reset emails over the real SMTP protocol (aiosmtpd on a loopback port): STARTTLS + AUTH,
implicit TLS, a refused recipient, bad credentials, an untrusted certificate."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import select

from mfactl.app import App
from mfactl.config import Email, Smtp
from mfactl.db.models import OutboxMessage
from mfactl.errors import Conflict
from mfactl.services import enrollment, links, outbox, reset, users
from tests.conftest import FrozenClock, make_app
from tests.integration.smtp_server import SmtpServer
from tests.unit.helpers import people, phone_code, secret_of


def smtp_app(url: str, clock: FrozenClock, key: str, server: SmtpServer, **smtp: object) -> App:
    email = replace(Email(), transport="smtp", smtp=Smtp(**{**server.settings(), **smtp}))
    return make_app(url, clock, key, email=email)


@pytest.fixture
def starttls(tmp_path: Path) -> Iterator[SmtpServer]:
    server = SmtpServer(tmp_path, security="starttls", users={"mailer": "s3cret pass"}).start()
    yield server
    server.stop()


def link_of(message: object) -> str:
    text = message.get_body(("plain",)).get_content()  # type: ignore[attr-defined]
    [link] = re.findall(r"https://\S+", text)
    return str(link)


def token_of(link: str) -> str:
    return parse_qs(urlparse(link).query)["token"][0]


def test_reset_mail_over_starttls_with_auth_and_its_link_works_once(
    starttls: SmtpServer, sqlite_url: str, clock: FrozenClock, active_key: str
) -> None:
    app = smtp_app(sqlite_url, clock, active_key, starttls)
    people(app, "alice")
    old_uri = enrollment.enable_user(app, "acme", "alice").otpauth_uri
    assert old_uri is not None
    enrollment.confirm_user(app, "acme", "alice", phone_code(old_uri, app.now()))

    result = reset.reset_user(app, "acme", "alice", "lost phone")

    assert result.email == reset.EmailOutcome("sent")
    assert users.user_status(app, "acme", "alice").mfa == "none"
    [received] = starttls.received
    message = received.message
    assert received.rcpt_tos == ["alice@example.com"]
    assert message["Subject"] == "Your MFA has been reset for acme"
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert message["Message-ID"].endswith("@example.com>") and message["Date"]
    link = link_of(message)
    html = message.get_body(("html",)).get_content()
    assert f'href="{link.replace("&", "&amp;")}"' in html
    token = token_of(link)
    assert len(token) == 43  # 32 random bytes, URL-safe base64

    opened = links.open_link(app, "acme", token)
    assert opened.user == "alice" and opened.purpose == "reset"
    links.confirm_link(app, "acme", token, phone_code(opened.otpauth_uri, app.now()))
    assert users.user_status(app, "acme", "alice").mfa == "active"
    with pytest.raises(Conflict, match="already been used"):
        links.open_link(app, "acme", token)

    with app.uow() as uow:
        row = uow.session.scalars(select(OutboxMessage)).one()
        assert row.status == "sent" and row.body_ciphertext is None and row.attempts == 1
    secret = secret_of(opened.otpauth_uri)
    app.close()
    assert_nowhere_in_sqlite(Path(urlparse(sqlite_url).path), token, secret)


def assert_nowhere_in_sqlite(db: Path, *needles: str) -> None:
    """Neither in the database file nor in its WAL, after a checkpoint."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(FULL)")
    files = [p for p in (db, db.with_name(db.name + "-wal")) if p.exists()]
    blob = b"".join(p.read_bytes() for p in files)
    assert len(blob) > 10_000
    for needle in needles:
        assert needle.encode() not in blob


def test_implicit_tls_send_reset_email_replaces_the_previous_link(
    tmp_path: Path, sqlite_url: str, clock: FrozenClock, active_key: str
) -> None:
    server = SmtpServer(tmp_path, security="tls").start()
    try:
        app = smtp_app(sqlite_url, clock, active_key, server)
        people(app, "bob")
        assert reset.reset_user(app, "acme", "bob", "new phone").email.status == "sent"
        assert reset.send_reset_email(app, "acme", "bob").email.status == "sent"
    finally:
        server.stop()
    first, second = (token_of(link_of(r.message)) for r in server.received)
    with pytest.raises(Conflict, match="expired or was replaced"):
        links.open_link(app, "acme", first)
    assert links.open_link(app, "acme", second).user == "bob"


def test_bad_credentials_keep_the_email_queued_with_the_error(
    starttls: SmtpServer, sqlite_url: str, clock: FrozenClock, active_key: str
) -> None:
    app = smtp_app(sqlite_url, clock, active_key, starttls, password="wrong")
    people(app, "alice")
    result = reset.reset_user(app, "acme", "alice", "lost phone")
    assert result.email.status == "queued"
    assert result.email.error is not None
    assert "refused the credentials of mailer: 535" in result.email.error
    assert "wrong" not in result.email.error
    [row] = outbox.list_messages(app)
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.next_attempt_at == clock.now + outbox.backoff(1)
    assert users.user_status(app, "acme", "alice").mfa == "none"  # the reset stands
    assert starttls.received == []


def test_refused_recipient_fails_only_that_message(
    tmp_path: Path, sqlite_url: str, clock: FrozenClock, active_key: str
) -> None:
    server = SmtpServer(tmp_path).start()
    server.handler.refuse.add("bob@example.com")
    try:
        app = smtp_app(sqlite_url, clock, active_key, server)
        people(app, "alice", "bob", "carol")
        result = reset.reset_users(app, reset.UserFilter(org="acme"), "phones stolen")
    finally:
        server.stop()
    assert (result.changed, result.sent, result.queued) == (3, 2, 1)
    assert result.error is not None and "refused the recipient bob@example.com: 550" in result.error
    assert sorted(r.rcpt_tos[0] for r in server.received) == [
        "alice@example.com",
        "carol@example.com",
    ]


def test_a_server_quoting_the_link_in_its_refusal_never_gets_it_stored(
    tmp_path: Path, sqlite_url: str, clock: FrozenClock, active_key: str
) -> None:
    server = SmtpServer(tmp_path).start()
    server.handler.refuse_data = "554 5.7.1 Rejected: message contains blocklisted URL {link}"
    try:
        app = smtp_app(sqlite_url, clock, active_key, server)
        people(app, "alice")
        done = reset.reset_user(app, "acme", "alice", "lost phone")
    finally:
        server.stop()
    assert done.email.status == "queued" and done.email.error is not None
    assert done.email.error.endswith("blocklisted URL [link removed]")
    [row] = outbox.list_messages(app, "failed")
    assert row.last_error == done.email.error
    with app.engine.connect() as conn:
        stored = conn.execute(select(OutboxMessage.last_error)).scalar_one()
    assert "token" not in stored and "https://" not in stored


def test_an_untrusted_certificate_is_refused(
    starttls: SmtpServer, sqlite_url: str, clock: FrozenClock, active_key: str
) -> None:
    app = smtp_app(sqlite_url, clock, active_key, starttls, ca_file=None)
    people(app, "alice")
    result = reset.reset_user(app, "acme", "alice", "lost phone")
    assert result.email.status == "queued"
    assert result.email.error is not None and "CERTIFICATE_VERIFY_FAILED" in result.email.error
    assert starttls.received == []


def test_a_server_that_never_answers_times_out(
    tmp_path: Path, sqlite_url: str, clock: FrozenClock, active_key: str
) -> None:
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the connection, never says 220
    try:
        server = SmtpServer(tmp_path, port=silent.getsockname()[1])
        app = smtp_app(sqlite_url, clock, active_key, server, timeout_seconds=0.5)
        people(app, "alice")
        result = reset.reset_user(app, "acme", "alice", "lost phone")
    finally:
        silent.close()
    assert result.email.status == "queued"
    assert result.email.error is not None and result.email.error.endswith("timed out")
    assert users.user_status(app, "acme", "alice").open_links == 1  # the reset and link stand


def test_starttls_required_but_not_offered(
    tmp_path: Path, sqlite_url: str, clock: FrozenClock, active_key: str
) -> None:
    server = SmtpServer(tmp_path).start()  # plain: no STARTTLS
    try:
        app = smtp_app(sqlite_url, clock, active_key, server, security="starttls")
        people(app, "alice")
        result = reset.reset_user(app, "acme", "alice", "lost phone")
    finally:
        server.stop()
    assert result.email == reset.EmailOutcome(
        "queued",
        f"the SMTP server 127.0.0.1:{server.port}: STARTTLS extension not supported by server.",
    )
    assert server.received == []  # never in clear text when TLS was asked for
