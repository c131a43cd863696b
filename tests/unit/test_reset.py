"""Reset, links and the outbox, on SQLite, PostgreSQL and MariaDB (emails written as files)."""

from __future__ import annotations

import email
import re
from dataclasses import replace
from datetime import datetime, timedelta
from email import policy
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from mfactl.app import App
from mfactl.cli.interact import emails_queued
from mfactl.config import Email, Links
from mfactl.crypto import outbox_label
from mfactl.db.models import ActionToken, AuditEvent, MfaSecret, OutboxMessage, RememberToken, User
from mfactl.errors import Conflict, InvalidInput, NotFound, SecretStoreError
from mfactl.mail import INTERRUPTED, outbox
from mfactl.services import enrollment, links, reset, users
from mfactl.services.selection import UserFilter
from tests.conftest import FrozenClock
from tests.unit.helpers import people, phone_code


@pytest.fixture
def mail_app(app: App, tmp_path: Path) -> App:
    app.settings = replace(
        app.settings, email=replace(Email(), transport="file", file_dir=str(tmp_path / "mail"))
    )
    return app


def mails(app: App) -> list[email.message.EmailMessage]:
    folder = Path(app.settings.email.file_dir)
    found = []
    for path in sorted(folder.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(message, email.message.EmailMessage)
        found.append(message)
    return found


def token_in(message: email.message.EmailMessage) -> str:
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    [link] = re.findall(r"https://\S+", text)
    return parse_qs(urlparse(link).query)["token"][0]


def enrolled(app: App, handle: str) -> None:
    uri = enrollment.enable_user(app, "acme", handle).otpauth_uri
    assert uri is not None
    enrollment.confirm_user(app, "acme", handle, phone_code(uri, app.now()))


def test_reset_removes_only_the_mfa_setup_and_queues_a_sealed_email(
    mail_app: App, clock: FrozenClock
) -> None:
    app = mail_app
    people(app, "alice", "bob", admin=("alice",))
    enrolled(app, "alice")
    enrolled(app, "bob")
    with app.uow() as uow:
        alice_id = uow.session.scalar(select(User.id).where(User.handle == "alice"))
        uow.session.execute(update(MfaSecret).values(failed_attempts=3, locked=True))
        uow.session.execute(
            insert(RememberToken),
            [
                {
                    "user_id": alice_id,
                    "token_hash": "a" * 64,
                    "created_at": clock.now,
                    "expires_at": clock.now + timedelta(days=9),
                }
            ],
        )
        uow.commit()

    result = reset.reset_user(app, "acme", "alice", "  lost phone ")

    assert result == reset.ResetResult("acme", "alice", "active", reset.EmailOutcome("sent"))
    with app.uow() as uow:
        s = uow.session
        assert s.scalar(select(MfaSecret).where(MfaSecret.user_id == alice_id)) is None
        assert s.scalar(select(func.count()).select_from(MfaSecret)) == 1  # bob keeps his
        assert s.scalar(select(User.is_admin).where(User.id == alice_id)) is True
        assert s.scalar(select(RememberToken.revoked_at)) == clock.now
        [event] = s.scalars(select(AuditEvent).where(AuditEvent.action == "user.reset")).all()
        assert (event.user_handle, event.details["reason"], event.details["had_mfa"]) == (
            "alice",
            "lost phone",
            "active",
        )
        [row] = s.scalars(select(OutboxMessage)).all()
        assert (row.status, row.body_ciphertext, row.user_id) == ("sent", None, alice_id)
    [message] = mails(app)
    assert message["To"] == "alice@example.com"
    assert message["Subject"] == "Your MFA has been reset for acme"
    token = token_in(message)
    with app.uow() as uow:
        hashes = list(uow.session.scalars(select(ActionToken.token_hash)))
        details = [str(d) for d in uow.session.scalars(select(AuditEvent.details))]
    assert hashes == [links.token_hash(token)]
    assert not any(token in d for d in details)


def test_the_queued_body_is_sealed_under_its_own_id(mail_app: App) -> None:
    app = mail_app
    people(app, "alice", "bob")
    app.settings = replace(app.settings, email=replace(app.settings.email, file_dir="/proc/x"))
    assert reset.reset_user(app, "acme", "alice", "r").email.status == "queued"
    assert reset.reset_user(app, "acme", "bob", "r").email.status == "queued"
    with app.uow() as uow:
        first, second = uow.session.execute(
            select(OutboxMessage.id, OutboxMessage.body_ciphertext).order_by(OutboxMessage.id)
        ).all()
    assert first[1] and second[1]
    opened = app.secrets.open_blob(outbox_label(first[0]), first[1], "body")
    assert "lost" not in opened.plaintext and "token=" in opened.plaintext
    with pytest.raises(SecretStoreError, match="bound to something else"):
        app.secrets.open_blob(outbox_label(first[0]), second[1], "the body")


def test_link_open_confirm_once_expiry_and_other_org(mail_app: App, clock: FrozenClock) -> None:
    app = mail_app
    people(app, "alice", "bob")
    reset.reset_user(app, "acme", "alice", "lost phone")
    reset.reset_user(app, "acme", "bob", "lost phone")
    alice, bob = (token_in(m) for m in mails(app))

    with pytest.raises(NotFound, match="not valid for organization beta"):
        links.open_link(app, "beta", alice)
    with pytest.raises(NotFound):
        links.open_link(app, "acme", alice[:-1] + ("A" if alice[-1] != "A" else "B"))
    with pytest.raises(Conflict, match="not been opened yet"):
        links.confirm_link(app, "acme", alice, "123456")
    opened = links.open_link(app, "acme", alice)
    with pytest.raises(Conflict, match="already been opened") as reopened:
        links.open_link(app, "acme", alice)  # a second opening (a leaked mail) is refused
    assert reopened.value.exit_code == 4
    with pytest.raises(Conflict, match="the code is wrong"):
        links.confirm_link(app, "acme", alice, "000000")
    links.confirm_link(app, "acme", alice, phone_code(opened.otpauth_uri, app.now()))
    with pytest.raises(Conflict, match="already been used"):
        links.confirm_link(app, "acme", alice, phone_code(opened.otpauth_uri, app.now()))

    clock.advance(72 * 3600)
    with pytest.raises(Conflict, match="has expired") as expired:
        links.open_link(app, "acme", bob)
    assert expired.value.exit_code == 4
    assert users.user_status(app, "acme", "bob").mfa == "none"


def test_reset_refuses_without_a_reason_and_changes_nothing(mail_app: App) -> None:
    people(mail_app, "alice")
    enrolled(mail_app, "alice")
    for reason in ("", "   ", "two\nlines", "lost \u202ephone"):
        with pytest.raises(InvalidInput):
            reset.reset_user(mail_app, "acme", "alice", reason)
    assert users.user_status(mail_app, "acme", "alice").mfa == "active"


def test_no_email_and_send_reset_email_rules(mail_app: App) -> None:
    app = mail_app
    people(app, "alice")
    enrolled(app, "alice")
    with pytest.raises(Conflict, match="MFA is already active for acme/alice"):
        reset.send_reset_email(app, "acme", "alice")
    result = reset.reset_user(app, "acme", "alice", "lost phone", send_email=False)
    assert result.email == reset.EmailOutcome("not_requested")
    assert mails(app) == []
    assert reset.send_reset_email(app, "acme", "alice").email.status == "sent"
    assert len(mails(app)) == 1


def test_bulk_reset_and_invitations(mail_app: App) -> None:
    app = mail_app
    people(app, "alice", "bob", "carol", "dave", admin=("alice",))
    enrolled(app, "alice")
    enrolled(app, "bob")

    invited = reset.invite_users(app, UserFilter(org="acme"))
    assert (invited.selected, invited.changed, invited.skipped, invited.sent) == (4, 2, 2, 2)
    assert {m["To"] for m in mails(app)} == {"carol@example.com", "dave@example.com"}
    assert all(m["Subject"] == "Set up MFA for acme" for m in mails(app))

    done = reset.reset_users(app, UserFilter(org="acme", mfa="active"), "stolen laptop bag")
    assert (done.selected, done.changed, done.sent, done.queued) == (2, 2, 2, 0)
    with app.uow() as uow:
        events = uow.session.execute(
            select(AuditEvent.user_handle, AuditEvent.details).where(
                AuditEvent.action == "user.reset"
            )
        ).all()
        assert uow.session.scalar(select(func.count()).select_from(MfaSecret)) == 0
    assert sorted(h for h, _ in events) == ["alice", "bob"]
    assert all(d["bulk"] is True and d["reason"] == "stolen laptop bag" for _, d in events)
    with pytest.raises(NotFound):
        reset.reset_users(app, UserFilter(org="nope"), "r")


def claim(db: Connection, app: App, ids: list[int]) -> tuple[datetime, list[Any]]:
    """What a sender does first: claim the messages under a lease of its own."""
    lease = outbox._new_lease(app.now())
    return lease, outbox._claim(db, app, ids, True, lease)


def test_a_claimed_message_is_sent_by_one_sender_only(mail_app: App, clock: FrozenClock) -> None:
    app = mail_app
    people(app, "alice")
    app.settings = replace(app.settings, email=replace(app.settings.email, file_dir="/proc/x"))
    assert reset.reset_user(app, "acme", "alice", "r").email.status == "queued"
    [message_id] = outbox.due_ids(app, force=True)
    with app.engine.connect() as one, app.engine.connect() as other:
        _, first = claim(one, app, [message_id])
        _, second = claim(other, app, [message_id])
    assert [r.id for r in first] == [message_id] and second == []
    assert outbox.due_ids(app, force=True) == []  # held by the first sender's lease
    clock.advance(outbox.LEASE.total_seconds() + 1)  # the first sender died: the lease runs out
    assert outbox.due_ids(app) == [message_id]


def _queued(app: App, *handles: str) -> list[int]:
    """Reset the users with the mail server down, so their emails wait; their outbox ids."""
    working = app.settings.email
    app.settings = replace(app.settings, email=replace(working, file_dir="/proc/x"))
    for handle in handles:
        assert reset.reset_user(app, "acme", handle, "r").email.status == "queued"
    app.settings = replace(app.settings, email=working)
    app.__dict__.pop("mail_transport")
    return outbox.due_ids(app, force=True)


def test_a_sender_whose_hold_ran_out_leaves_the_message_to_the_next_one(
    mail_app: App, clock: FrozenClock
) -> None:
    app = mail_app
    people(app, "alice")
    [message_id] = _queued(app, "alice")
    with app.engine.connect() as db:
        lease, [row] = claim(db, app, [message_id])
        clock.advance(outbox.LEASE.total_seconds() + 1)  # a slow relay, a paused process
        assert outbox.deliver(app).sent == [message_id]  # another run claims it and sends it
        late = outbox.Delivery()
        outbox._deliver_one(app, db, row, lease, None, late)  # the first one goes on
    assert late.taken == [message_id] and late.sent == []
    assert len(mails(app)) == 1  # sent once


def test_a_reset_made_during_a_send_cancels_the_older_email_of_the_batch(
    mail_app: App, clock: FrozenClock
) -> None:
    app = mail_app
    people(app, "alice")
    [old] = _queued(app, "alice")
    with app.engine.connect() as db:
        lease, [row] = claim(db, app, [old])  # a bulk send has it in hand
        clock.advance(5)
        assert reset.reset_user(app, "acme", "alice", "again").email.status == "sent"
        report = outbox.Delivery()
        outbox._deliver_one(app, db, row, lease, None, report)
    assert report.cancelled == [old] and report.sent == []
    [received] = mails(app)  # only the newer email, whose link works
    assert links.open_link(app, "acme", token_in(received)).user == "alice"


def _ctrl_c(app: App, monkeypatch: pytest.MonkeyPatch, moment: str) -> None:
    """Make the next delivery run get a Ctrl-C at one moment of its first messages."""
    from sqlalchemy import event

    if moment == "after the first is marked sent":
        sent = outbox._sent

        def then_ctrl_c(*args: Any) -> None:
            sent(*args)
            raise KeyboardInterrupt

        monkeypatch.setattr(outbox, "_sent", then_ctrl_c)
    elif moment == "inside the statement marking the first sent":

        def in_statement(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if statement.startswith("UPDATE outbox") and "sent_at" in statement:
                event.remove(app.engine, "before_cursor_execute", in_statement)
                raise KeyboardInterrupt

        event.listen(app.engine, "before_cursor_execute", in_statement)
    else:  # between the second message's take and its commit: its row lock still held
        take = outbox._take
        takes = {"count": 0, "armed": False}

        def counted(*args: Any) -> Any:
            takes["count"] += 1
            takes["armed"] = takes["count"] == 2
            return take(*args)

        def before_commit(_conn: Any) -> None:
            if takes["armed"]:
                takes["armed"] = False
                event.remove(app.engine, "commit", before_commit)
                raise KeyboardInterrupt

        monkeypatch.setattr(outbox, "_take", counted)
        event.listen(app.engine, "commit", before_commit)


@pytest.mark.parametrize(
    ("moment", "first_went"),
    [
        ("after the first is marked sent", "sent"),
        # it went out, but its outcome was never written: it stays held under its own lease
        ("inside the statement marking the first sent", "sending"),
        ("between the second's take and its commit", "sent"),
    ],
)
def test_an_interrupted_send_gives_back_what_it_did_not_try(
    mail_app: App,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
    moment: str,
    first_went: str,
) -> None:
    import threading

    app = mail_app
    people(app, "alice", "bob", "carol")
    first, second, third = _queued(app, "alice", "bob", "carol")
    _ctrl_c(app, monkeypatch, moment)
    outcome: dict[str, Any] = {}
    # in a thread, so that a give-back waiting on the sender's own row lock fails the test
    # instead of hanging it (PostgreSQL would wait forever; SQLite and MariaDB time out)
    runner = threading.Thread(
        target=lambda: outcome.update(report=outbox.deliver(app, force=True)), daemon=True
    )
    runner.start()
    runner.join(10)
    assert not runner.is_alive(), "the give-back waited on the sender's own lock"
    monkeypatch.undo()
    report = outcome["report"]  # no exception escaped
    in_hand = [] if first_went == "sent" else [first]
    assert report.stopped == INTERRUPTED
    assert report.sent == ([first] if first_went == "sent" else [])
    assert report.not_tried == [*in_hand, second, third]
    told = emails_queued(report.queued, report.first_error)  # what the command says, exit 9
    assert told.message.endswith(INTERRUPTED)
    assert told.hint is not None and told.hint.startswith("run `mfactl mail retry` to send them")
    rows = {r.id: r.status for r in outbox.list_messages(app)}
    assert rows == {first: first_went, second: "failed", third: "failed"}  # given back, due now
    assert len(mails(app)) == 1
    assert outbox.deliver(app).sent == [second, third]
    clock.advance(outbox.LEASE.total_seconds() + 1)
    assert outbox.deliver(app).sent == in_hand  # the one in flight goes again, once


def test_messages_held_by_a_killed_sender_are_counted_and_left_alone(
    mail_app: App, clock: FrozenClock
) -> None:
    app = mail_app
    people(app, "alice", "bob")
    held, free = _queued(app, "alice", "bob")
    with app.engine.connect() as db:
        lease, _ = claim(db, app, [held])  # then kill -9
    report = outbox.deliver(app, force=True)
    assert report.sent == [free] and report.held == 1 and report.held_until == lease
    clock.advance(outbox.LEASE.total_seconds() + 1)
    assert outbox.deliver(app).sent == [held]


def test_a_reset_whose_email_another_sender_took_does_not_say_sent(
    mail_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = mail_app
    people(app, "alice")
    deliver = outbox.deliver

    def a_mail_retry_gets_there_first(app: App, ids: list[int]) -> outbox.Delivery:
        with app.engine.connect() as other:
            claim(other, app, ids)
        return deliver(app, ids)

    monkeypatch.setattr(outbox, "deliver", a_mail_retry_gets_there_first)
    result = reset.reset_user(app, "acme", "alice", "lost phone")
    assert result.email.status == "queued"
    assert result.email.error is not None and "another mfactl process" in result.email.error
    assert mails(app) == []


def test_links_use_the_configured_url_quoted(mail_app: App) -> None:
    app = mail_app
    app.settings = replace(
        app.settings,
        email=replace(
            app.settings.email,
            links=Links(
                reset_url="https://x.example/r/{org}/{user}?t={token}",
                enroll_url="https://x.example/e?t={token}",
                ttl_hours=1,
            ),
        ),
    )
    people(app, "a.b-c")
    reset.reset_user(app, "acme", "a.b-c", "r")
    text = mails(app)[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert re.search(r"https://x\.example/r/acme/a\.b-c\?t=[A-Za-z0-9_-]{43}\r?\n", text)
    assert "expires on 2026-11-01 10:00 UTC (1 hours from now)" in text


def test_the_library_facade_serves_links(mail_app: App) -> None:
    from mfactl.api import Mfa

    app = mail_app
    people(app, "carol")
    reset.send_enroll_email(app, "acme", "carol")
    token = token_in(mails(app)[0])
    mfa = Mfa(app)
    opened = mfa.open_link("acme", token)
    assert (opened.user, opened.purpose) == ("carol", "enroll")
    assert (
        mfa.confirm_link("acme", token, phone_code(opened.otpauth_uri, app.now())).user == "carol"
    )
    with pytest.raises(Conflict, match="already been used"):
        mfa.open_link("acme", token)
    with pytest.raises(Conflict, match="MFA is already active for acme/carol"):
        reset.send_enroll_email(app, "acme", "carol")


def test_an_email_whose_link_died_while_queued_is_cancelled_not_sent(
    mail_app: App, clock: FrozenClock
) -> None:
    app = mail_app
    people(app, "alice", "bob")
    working = app.settings.email
    app.settings = replace(app.settings, email=replace(working, file_dir="/proc/x"))  # "down"
    assert reset.reset_user(app, "acme", "alice", "lost phone").email.status == "queued"
    assert reset.send_reset_email(app, "acme", "alice").email.status == "queued"  # ends link 1
    assert reset.reset_user(app, "acme", "bob", "lost phone").email.status == "queued"
    app.settings = replace(app.settings, email=working)
    app.__dict__.pop("mail_transport")  # the transport is built once per App

    report = outbox.deliver(app, force=True)

    first, second, third = (r.id for r in outbox.list_messages(app))
    assert report.cancelled == [first] and report.sent == [second, third]
    rows = {r.id: r for r in outbox.list_messages(app)}
    assert rows[first].status == "cancelled"
    assert (
        rows[first].last_error is not None and "replaced by a newer one" in rows[first].last_error
    )
    assert [m["To"] for m in mails(app)] == ["alice@example.com", "bob@example.com"]
    assert report.waiting == 0

    reset.reset_user(app, "acme", "bob", "again", send_email=True)
    app.settings = replace(app.settings, email=replace(working, file_dir="/proc/x"))
    app.__dict__.pop("mail_transport")
    assert reset.send_reset_email(app, "acme", "bob").email.status == "queued"
    app.settings = replace(app.settings, email=working)
    app.__dict__.pop("mail_transport")
    clock.advance(73 * 3600)  # the outage outlasted the link
    late = outbox.deliver(app, force=True)
    assert (late.sent, len(late.cancelled)) == ([], 1)


def test_a_body_no_key_opens_fails_that_message_only(mail_app: App) -> None:
    from mfactl.crypto import SecretStore, generate_key

    app = mail_app
    people(app, "alice")
    working = app.settings.email
    app.settings = replace(app.settings, email=replace(working, file_dir="/proc/x"))
    assert reset.reset_user(app, "acme", "alice", "lost phone").email.status == "queued"
    app.settings = replace(app.settings, email=working)
    app.__dict__.pop("mail_transport")
    app.__dict__["secrets"] = SecretStore(generate_key())  # the key was lost
    report = outbox.deliver(app, force=True)
    [(message_id, error)] = report.failed.items()
    assert (
        error
        == f"the body of outbox message {message_id} cannot be decrypted with any configured key"
    )
    assert mails(app) == []


def test_a_reset_cancels_the_queued_emails_whose_links_it_ends(mail_app: App) -> None:
    """Even one whose body no key opens any more: it would fail on every retry otherwise."""
    from mfactl.crypto import SecretStore, generate_key
    from mfactl.services import keys

    app = mail_app
    people(app, "alice", "bob")
    working = app.settings.email
    app.settings = replace(app.settings, email=replace(working, file_dir="/proc/x"))  # "down"
    assert reset.reset_user(app, "acme", "alice", "lost phone").email.status == "queued"
    assert reset.reset_user(app, "acme", "bob", "lost phone").email.status == "queued"
    app.settings = replace(app.settings, email=working)
    app.__dict__.pop("mail_transport")
    app.__dict__["secrets"] = SecretStore(generate_key())  # the key was lost, nothing migrated
    assert len(keys.verify(app).failed) == 2

    result = reset.reset_user(app, "acme", "alice", "the old email cannot be opened")

    assert result.email.status == "sent"
    first, second, third = outbox.list_messages(app)
    assert (first.user, first.status, first.last_error) == (
        "alice",
        "cancelled",
        "not sent: a later reset of this user ended its link",
    )
    assert (second.user, second.status) == ("bob", "failed")  # bob's link still works
    assert (third.user, third.status) == ("alice", "sent")
    with app.uow() as uow:
        body = uow.session.scalar(
            select(OutboxMessage.body_ciphertext).where(OutboxMessage.id == first.id)
        )
    assert body is None  # purged, like a sent one
    [(org, user)] = [(f.org, f.user) for f in keys.verify(app).failed]
    assert (org, user) == ("acme", "bob")
    assert [m["To"] for m in mails(app)] == ["alice@example.com"]
