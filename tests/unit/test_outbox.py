"""The outbox rows: sealed bodies, one sender's claim, holds that run out.

On SQLite, PostgreSQL and MariaDB; emails are written as files.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from mfactl.app import App
from mfactl.crypto import outbox_label
from mfactl.db.models import OutboxMessage
from mfactl.errors import SecretStoreError
from mfactl.services import delivery, outbox, reset
from tests.conftest import FrozenClock
from tests.unit.helpers import claim, people, queued


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


def test_messages_held_by_a_killed_sender_are_counted_and_left_alone(
    mail_app: App, clock: FrozenClock
) -> None:
    app = mail_app
    people(app, "alice", "bob")
    held, free = queued(app, "alice", "bob")
    with app.engine.connect() as db:
        lease, _ = claim(db, app, [held])  # then kill -9
    report = delivery.deliver(app, force=True)
    assert report.sent == [free] and report.held == 1 and report.held_until == lease
    clock.advance(outbox.LEASE.total_seconds() + 1)
    assert delivery.deliver(app).sent == [held]


def test_a_hold_lasts_15_minutes_to_the_microsecond(mail_app: App, clock: FrozenClock) -> None:
    app = mail_app
    people(app, "alice")
    [message_id] = queued(app, "alice")
    with app.engine.connect() as db:
        lease, _ = claim(db, app, [message_id])
    # unique to the sender by a random part of under a second
    assert timedelta(minutes=15) <= lease - clock.now < timedelta(minutes=15, seconds=1)
    clock.now = lease - timedelta(microseconds=1)
    assert outbox.due_ids(app) == [] and outbox.count_waiting(app).held == 1
    clock.now = lease  # the hold is over at its lease, not after it
    assert outbox.due_ids(app) == [message_id] and outbox.count_waiting(app).held == 0


@pytest.mark.parametrize("outcome", ["sent", "failed", "cancelled"])
def test_a_sender_whose_hold_ran_out_cannot_record_an_outcome(
    mail_app: App, clock: FrozenClock, outcome: str
) -> None:
    app = mail_app
    people(app, "alice")
    [message_id] = queued(app, "alice")  # one failed attempt so far
    with app.engine.connect() as first, app.engine.connect() as second:
        first_lease, _ = claim(first, app, [message_id])
        held = outbox.take(first, app, message_id, first_lease)  # the first sender sends it…
        assert held is not None
        clock.advance(outbox.LEASE.total_seconds() + 1)  # … to a relay that takes its time
        second_lease, _ = claim(second, app, [message_id])
        if outcome == "sent":
            outbox.mark_sent(first, app, message_id, held)
        elif outcome == "failed":
            outbox.mark_failed(first, app, message_id, held, "timed out")
        else:
            outbox.mark_cancelled(first, app, message_id, held, "its link died")
    [row] = outbox.list_messages(app)
    assert (row.status, row.next_attempt_at, row.attempts) == ("sending", second_lease, 1)
