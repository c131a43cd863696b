"""Reset one user or a selection: the secret goes, links end, the email is queued and sent.

On SQLite, PostgreSQL and MariaDB; emails are written as files.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, update

from mfactl.app import App
from mfactl.db.models import ActionToken, AuditEvent, MfaSecret, OutboxMessage, RememberToken, User
from mfactl.errors import ConfigError, Conflict, InvalidInput, NotFound
from mfactl.services import delivery, links, outbox, reset, users
from mfactl.services.selection import UserFilter
from tests.conftest import FrozenClock
from tests.unit.helpers import claim, enrolled, mails, people, token_in


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
    assert hashes == [links.token_hash(app, token)]
    assert not any(token in d for d in details)


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
    with pytest.raises(NotFound, match=r"^organization 'nope' does not exist$"):
        reset.reset_users(app, UserFilter(org="nope"), "r")


def test_a_reset_whose_email_another_sender_took_does_not_say_sent(
    mail_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = mail_app
    people(app, "alice")
    deliver = delivery.deliver

    def a_mail_retry_gets_there_first(app: App, ids: list[int]) -> delivery.Delivery:
        with app.engine.connect() as other:
            claim(other, app, ids)
        return deliver(app, ids)

    monkeypatch.setattr(delivery, "deliver", a_mail_retry_gets_there_first)
    result = reset.reset_user(app, "acme", "alice", "lost phone")
    assert result.email.status == "queued"
    assert result.email.error is not None and "another mfactl process" in result.email.error
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


def _stored(app: App) -> dict[str, list[tuple[object, ...]]]:
    """Every row a reset could change, to compare before and after."""
    from mfactl.db.models import Base

    with app.engine.connect() as db:
        return {
            table.name: sorted(map(tuple, db.execute(table.select())), key=repr)
            for table in Base.metadata.sorted_tables
        }


def test_a_template_the_sandbox_refuses_rolls_the_whole_reset_back(
    mail_app: App, tmp_path: Path
) -> None:
    app = mail_app
    people(app, "alice", "bob")
    enrolled(app, "alice")
    enrolled(app, "bob")
    folder = tmp_path / "templates"
    folder.mkdir()
    marker = tmp_path / "ran"
    (folder / "reset.txt").write_text(
        f"{{{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}}}"
    )
    email = replace(app.settings.email, templates_dir=str(folder))
    app.settings = replace(app.settings, email=email)
    before = _stored(app)
    with pytest.raises(ConfigError, match=f"email template {folder / 'reset.txt'} is refused"):
        reset.reset_user(app, "acme", "alice", "lost phone")
    with pytest.raises(ConfigError, match="is refused by the sandbox"):
        reset.reset_users(app, UserFilter(org="acme"), "lost phones")
    assert _stored(app) == before
    assert not marker.exists() and mails(app) == []
