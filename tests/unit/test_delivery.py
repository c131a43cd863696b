"""Sending the outbox: each message taken again before it goes, dead links, Ctrl-C, lost keys.

On SQLite, PostgreSQL and MariaDB; emails are written as files.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from mfactl.app import App
from mfactl.services import delivery, links, outbox, reset
from mfactl.services.delivery import INTERRUPTED
from tests.conftest import FrozenClock
from tests.unit.helpers import claim, mails, people, queued, token_in


def test_a_sender_whose_hold_ran_out_leaves_the_message_to_the_next_one(
    mail_app: App, clock: FrozenClock
) -> None:
    app = mail_app
    people(app, "alice")
    [message_id] = queued(app, "alice")
    with app.engine.connect() as db:
        lease, [row] = claim(db, app, [message_id])
        clock.advance(outbox.LEASE.total_seconds() + 1)  # a slow relay, a paused process
        assert delivery.deliver(app).sent == [message_id]  # another run claims it and sends it
        late = delivery.Delivery()
        delivery._deliver_one(app, db, row, lease, None, late)  # the first one goes on
    assert late.taken == [message_id] and late.sent == []
    assert len(mails(app)) == 1  # sent once


def test_a_sender_whose_hold_ran_out_leaves_the_message_to_the_sender_holding_it(
    mail_app: App, clock: FrozenClock
) -> None:
    app = mail_app
    people(app, "alice")
    [message_id] = queued(app, "alice")
    with app.engine.connect() as first, app.engine.connect() as second:
        first_lease, [stalled_row] = claim(first, app, [message_id])
        clock.advance(outbox.LEASE.total_seconds() + 1)  # the first sender stalls
        second_lease, [row] = claim(second, app, [message_id])  # `sending` still, held anew
        stalled = delivery.Delivery()
        delivery._deliver_one(app, first, stalled_row, first_lease, None, stalled)
        assert stalled.taken == [message_id] and stalled.sent == []
        assert mails(app) == []
        holding = delivery.Delivery()
        delivery._deliver_one(app, second, row, second_lease, None, holding)
    assert holding.sent == [message_id]
    assert len(mails(app)) == 1  # sent once


def test_a_reset_made_during_a_send_cancels_the_older_email_of_the_batch(
    mail_app: App, clock: FrozenClock
) -> None:
    app = mail_app
    people(app, "alice")
    [old] = queued(app, "alice")
    with app.engine.connect() as db:
        lease, [row] = claim(db, app, [old])  # a bulk send has it in hand
        clock.advance(5)
        assert reset.reset_user(app, "acme", "alice", "again").email.status == "sent"
        report = delivery.Delivery()
        delivery._deliver_one(app, db, row, lease, None, report)
    assert report.cancelled == [old] and report.sent == []
    [received] = mails(app)  # only the newer email, whose link works
    assert links.open_link(app, "acme", token_in(received)).user == "alice"


def _ctrl_c(app: App, monkeypatch: pytest.MonkeyPatch, moment: str) -> None:
    """Make the next delivery run get a Ctrl-C at one moment of its first messages."""
    from sqlalchemy import event

    if moment == "after the first is marked sent":
        sent = outbox.mark_sent

        def then_ctrl_c(*args: Any) -> None:
            sent(*args)
            raise KeyboardInterrupt

        monkeypatch.setattr(outbox, "mark_sent", then_ctrl_c)
    elif moment == "inside the statement marking the first sent":

        def in_statement(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if statement.startswith("UPDATE outbox") and "sent_at" in statement:
                event.remove(app.engine, "before_cursor_execute", in_statement)
                raise KeyboardInterrupt

        event.listen(app.engine, "before_cursor_execute", in_statement)
    else:  # between the second message's take and its commit: its row lock still held
        take = outbox.take
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

        monkeypatch.setattr(outbox, "take", counted)
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
    first, second, third = queued(app, "alice", "bob", "carol")
    _ctrl_c(app, monkeypatch, moment)
    outcome: dict[str, Any] = {}
    # in a thread, so that a give-back waiting on the sender's own row lock fails the test
    # instead of hanging it (PostgreSQL would wait forever; SQLite and MariaDB time out)
    runner = threading.Thread(
        target=lambda: outcome.update(report=delivery.deliver(app, force=True)), daemon=True
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
    assert report.interrupted and report.first_error == f"not sent: {INTERRUPTED}"
    rows = {r.id: r.status for r in outbox.list_messages(app)}
    assert rows == {first: first_went, second: "failed", third: "failed"}  # given back, due now
    assert len(mails(app)) == 1
    assert delivery.deliver(app).sent == [second, third]
    clock.advance(outbox.LEASE.total_seconds() + 1)
    assert delivery.deliver(app).sent == in_hand  # the one in flight goes again, once


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

    report = delivery.deliver(app, force=True)

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
    late = delivery.deliver(app, force=True)
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
    report = delivery.deliver(app, force=True)
    [(message_id, error)] = report.failed.items()
    assert (
        error
        == f"the body of outbox message {message_id} cannot be decrypted with any configured key"
    )
    assert mails(app) == []


def test_a_recipient_changed_in_the_database_is_not_sent_to(mail_app: App) -> None:
    from sqlalchemy import update

    from mfactl.db.models import OutboxMessage

    app = mail_app
    people(app, "alice", "bob")
    alice, bob = queued(app, "alice", "bob")
    with app.uow() as uow:
        uow.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == alice)
            .values(recipient="mallory@evil.example")
        )
        uow.commit()

    report = delivery.deliver(app, force=True)

    reason = (
        f"not sent: outbox message {alice} was queued for alice@example.com, and its recipient "
        "was changed in the database since; refused"
    )
    assert report.failed == {alice: reason} and report.sent == [bob]  # the others go on
    assert [m["To"] for m in mails(app)] == ["bob@example.com"]
    rows = {r.id: r for r in outbox.list_messages(app)}
    assert (rows[alice].status, rows[alice].last_error) == ("failed", reason)
    assert delivery.deliver(app, force=True).failed == {alice: reason}  # and on every retry


def test_an_email_queued_before_recipients_were_sealed_is_cancelled(mail_app: App) -> None:
    import json

    from sqlalchemy import select, update

    from mfactl.crypto import outbox_label
    from mfactl.db.models import OutboxMessage

    app = mail_app
    people(app, "alice", "bob")
    old, new = queued(app, "alice", "bob")
    with app.uow() as uow:  # alice's envelope as an earlier mfactl sealed it: no recipient
        label = outbox_label(old)
        body = uow.session.scalar(
            select(OutboxMessage.body_ciphertext).where(OutboxMessage.id == old)
        )
        assert body is not None
        envelope = json.loads(app.secrets.open_blob(label, body, "its body").plaintext)
        del envelope["recipient"]
        sealed = app.secrets.seal_blob(label, json.dumps(envelope).encode())
        uow.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == old)
            .values(body_ciphertext=sealed.ciphertext)
        )
        uow.commit()

    report = delivery.deliver(app, force=True)

    assert report.cancelled == [old] and report.sent == [new] and report.failed == {}
    assert [m["To"] for m in mails(app)] == ["bob@example.com"]
    rows = {r.id: r for r in outbox.list_messages(app)}
    assert (rows[old].status, rows[old].last_error) == ("cancelled", delivery.UNSEALED)


def test_a_link_queued_before_a_rotation_works_once_the_old_key_is_removed(
    mail_app: App,
) -> None:
    from mfactl.crypto import generate_key
    from tests.unit.helpers import use_keys

    app = mail_app
    old, new = app.settings.secret_store.active_key, generate_key()
    people(app, "alice")
    [message_id] = queued(app, "alice")  # its link hashed under the old key
    use_keys(app, new, rolling=old)
    assert delivery.deliver(app, force=True).sent == [message_id]  # hashed again as it goes
    use_keys(app, new)  # the rotation finished: the old key removed
    assert links.open_link(app, "acme", token_in(mails(app)[0])).user == "alice"
