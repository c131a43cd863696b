"""Sending the outbox after the commit: claim a few rows, take each again just before it goes,
send it, and commit its outcome right away, so a crash can at worst resend the one message that
was in flight. A message goes only to the recipient sealed with its body: a row whose recipient
was changed in the database fails instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parseaddr

from sqlalchemy import select, update
from sqlalchemy.engine import Connection as Db

from mfactl.app import App
from mfactl.crypto import outbox_label
from mfactl.db.batching import chunks
from mfactl.db.models import ActionToken
from mfactl.errors import MfactlError, SecretStoreError
from mfactl.mail.render import Envelope, build_message
from mfactl.mail.transports import Connection, SendError
from mfactl.services import links, outbox
from mfactl.services.progress import NO_PROGRESS, Progress

# Why a delivery run left messages untried after Ctrl-C.
INTERRUPTED = "interrupted (Ctrl-C)"
# Why a message queued before recipients were sealed is cancelled: its recipient cannot be
# checked, and its link (stored as a plain SHA-256 then) no longer opens anyway.
UNSEALED = (
    "not sent: it was queued by an earlier mfactl that sealed no recipient with it, and its "
    "link no longer works; send the user a new link"
)


@dataclass
class Delivery:
    """What one delivery run did."""

    sent: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # id -> error, tried and failed
    cancelled: list[int] = field(default_factory=list)  # their link died before they went out
    not_tried: list[int] = field(default_factory=list)  # left queued after a connection failure
    taken: list[int] = field(default_factory=list)  # our hold ran out; another sender has them
    stopped: str | None = None  # why the run stopped early (the server is unavailable)
    waiting: int = 0  # unsent messages left in the outbox after the run, due or not
    held: int = 0  # of those, how many a sender holds (another run, or one that was killed)
    held_until: datetime | None = None  # when the last of those holds runs out

    @property
    def interrupted(self) -> bool:
        """Did Ctrl-C stop the run (rather than the mail server)?"""
        return self.stopped == INTERRUPTED

    @property
    def queued(self) -> int:
        return len(self.failed) + len(self.not_tried)

    @property
    def first_error(self) -> str | None:
        """The first failure of the run, or why it stopped: what to tell the administrator."""
        if self.failed:
            return next(iter(self.failed.values()))
        return f"not sent: {self.stopped}" if self.stopped else None

    @property
    def left_queued(self) -> int:
        """Messages still queued after the run (due or not), not counting those a sender holds."""
        return self.waiting - self.held

    def to_json(self) -> dict[str, object]:
        """`mail retry --json`."""
        return {
            "sent": len(self.sent),
            "queued": self.left_queued,
            "cancelled": len(self.cancelled),
            "held": self.held,
            "error": self.first_error,
        }

    def error_for(self, message_id: int) -> str | None:
        if message_id in self.failed:
            return self.failed[message_id]
        if message_id in self.not_tried:
            return f"not sent: {self.stopped}"
        return None


def deliver(
    app: App,
    ids: Iterable[int] | None = None,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> Delivery:
    """Send the given messages (default: those due); each outcome is committed as it happens.

    Rows are claimed a few at a time (``CLAIM``), and each one is taken again just before it
    is sent: its hold renewed by a compare-and-swap (so a hold that ran out meanwhile, and was
    claimed by another sender, is left to that sender) and its link looked at that moment (so a
    reset made while earlier messages went out cancels it). An interruption (Ctrl-C) gives the
    claimed rows not tried yet back to the queue, due at once, and ends the run as a
    connection failure does: what was not sent is reported as queued.
    """
    wanted = list(ids) if ids is not None else outbox.due_ids(app, force=force)
    progress = progress or NO_PROGRESS
    progress.start(len(wanted))
    report = Delivery()
    if not wanted:
        _count_waiting(app, report)
        return report
    connection: Connection | None = None
    try:
        # plain Core statements on one connection, committed as they go: the ORM session's
        # per-statement overhead would dominate when ten thousand messages go out
        with app.engine.connect() as db:
            for part in chunks(wanted, outbox.CLAIM):
                if report.stopped:
                    report.not_tried.extend(part)
                    continue
                lease = outbox.new_lease(app.now())
                untried = list(part)  # what the lease may hold and was not done
                current: int | None = None  # the message being delivered
                try:
                    rows = outbox.claim(db, app, part, force, lease)
                    progress.advance(len(part) - len(rows))  # claimed elsewhere, or sent
                    untried = [row.id for row in rows]
                    for row in rows:
                        if report.stopped:
                            break
                        current = row.id
                        connection = _deliver_one(app, db, row, lease, connection, report)
                        current = None
                        untried.remove(row.id)
                        progress.advance(1)
                except KeyboardInterrupt:
                    report.stopped = INTERRUPTED
                    _interrupted(app, db, untried, current, lease, report)
                    continue
                if untried:
                    outbox.release(db, app, untried, lease)
                    report.not_tried.extend(untried)
    finally:
        if connection is not None:
            connection.close()
    _count_waiting(app, report)
    return report


def _deliver_one(
    app: App,
    db: Db,
    row: outbox.ClaimedRow,
    lease: datetime,
    connection: Connection | None,
    report: Delivery,
) -> Connection | None:
    """Take one claimed row again and send it; its outcome is committed and put in the report.
    Returns the SMTP connection (opened at the first message that needs it)."""
    held = outbox.take(db, app, row.id, lease)
    if held is None:  # our hold ran out and another sender has the row now
        report.taken.append(row.id)
        return connection
    try:
        envelope = _envelope(app, row)
        dead = UNSEALED if envelope.recipient is None else _dead_link(app, db, envelope.link_hash)
        if dead:
            outbox.mark_cancelled(db, app, row.id, held, dead)
            report.cancelled.append(row.id)
            return connection
        message = build_message(envelope, row.recipient, row.subject)
        if connection is None:
            connection = app.mail_transport.connect()
        connection.send(_envelope_from(app), row.recipient, message)
    except SendError as exc:
        outbox.mark_failed(db, app, row.id, held, exc.reason)
        report.failed[row.id] = exc.reason
        if exc.connection:
            report.stopped = exc.reason
    except MfactlError as exc:  # a body no key opens, a changed recipient: only this one fails
        outbox.mark_failed(db, app, row.id, held, exc.message)
        report.failed[row.id] = exc.message
    else:
        _rehash_link(app, db, envelope)  # committed with the outcome, by mark_sent
        outbox.mark_sent(db, app, row.id, held)
        report.sent.append(row.id)
    return connection


def _envelope(app: App, row: outbox.ClaimedRow) -> Envelope:
    """The sealed body, opened and checked against its row; raises the error that fails only
    this message (no body, no configured key opens it, or the row's recipient is not the sealed
    one: whoever can write the database must not get a live link sent to them)."""
    if row.body_ciphertext is None:
        raise MfactlError(f"outbox message {row.id} has no body")
    opened = app.secrets.open_blob(
        outbox_label(row.id), row.body_ciphertext, f"the body of outbox message {row.id}"
    )
    envelope = Envelope.from_json(opened.plaintext)
    if envelope.recipient is not None and envelope.recipient != row.recipient:
        raise SecretStoreError(
            f"not sent: outbox message {row.id} was queued for {envelope.recipient}, and its "
            "recipient was changed in the database since; refused"
        )
    return envelope


def _dead_link(app: App, db: Db, link_hash: str | None) -> str | None:
    """Why the email's link can no longer be used (so the email is not worth sending), or None;
    looked at just before sending."""
    if link_hash is None:
        return None
    query = select(ActionToken.used_at, ActionToken.expires_at)
    row = db.execute(query.where(ActionToken.token_hash == link_hash)).first()
    if row is None:
        return "not sent: its link no longer exists"
    used_at, expires_at = row
    if used_at is not None:
        return "not sent: its link was used meanwhile"
    if expires_at <= app.now():
        return "not sent: its link expired or was replaced by a newer one before it could be sent"
    return None


def _rehash_link(app: App, db: Db, envelope: Envelope) -> None:
    """Store the sent link's hash under the active key: a key rotation finished while the email
    waited (the key that hashed the link removed since) must not leave a dead link in the mail."""
    if envelope.link_hash is None or envelope.link_token is None:
        return
    current = links.token_hash(app, envelope.link_token)
    if current != envelope.link_hash:
        db.execute(
            update(ActionToken)
            .where(ActionToken.token_hash == envelope.link_hash)
            .values(token_hash=current)
        )


def _count_waiting(app: App, report: Delivery) -> None:
    waiting = outbox.count_waiting(app)
    report.waiting, report.held, report.held_until = waiting.count, waiting.held, waiting.held_until


def _envelope_from(app: App) -> str:
    return parseaddr(app.settings.email.sender)[1] or app.settings.email.sender


def _interrupted(
    app: App, db: Db, untried: list[int], current: int | None, lease: datetime, report: Delivery
) -> None:
    """After Ctrl-C: give back what the claim holds and was not tried, and report it.

    The interruption may have come between a statement and its commit, with `db` holding row
    locks the give-back would wait for: `db` is dropped first (the server rolls its
    transaction back), and the rows go back over a new connection. Only rows still under the
    claim's lease are given back; one taken for sending keeps its own lease (it may have gone
    out) and waits for it to run out.
    """
    with contextlib.suppress(Exception):
        db.invalidate()
    done = {*report.sent, *report.failed, *report.cancelled, *report.taken}
    ids = [i for i in untried if i not in done]
    finished = outbox.give_back(app, ids, lease)  # sent after all: ours only if it was in hand
    report.sent.extend(i for i in ids if i in finished and i == current)
    report.not_tried.extend(i for i in ids if i not in finished)


