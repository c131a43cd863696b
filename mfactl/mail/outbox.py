"""The outbox: emails written in the same transaction as the change that causes them, sent after.

A row is ``pending`` (never tried), ``sending`` (claimed by one sender until its lease, kept in
``next_attempt_at``, runs out), ``failed`` (tried; retried from ``next_attempt_at``) or ``sent``.
Bodies hold live links, so they are sealed with the secret store under ``outbox:<id>`` and
purged (set to NULL) once sent. A sender claims rows with one conditional UPDATE and commits the
outcome of each message right after sending it, so two senders never send the same row and a
crash can at worst resend the one message that was in flight.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Any

from sqlalchemy import and_, bindparam, case, func, insert, or_, select, update
from sqlalchemy.engine import Connection as Db
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from mfactl.app import App
from mfactl.crypto import outbox_label
from mfactl.db.models import ActionToken, Organization, OutboxMessage, User
from mfactl.errors import MfactlError
from mfactl.mail import INTERRUPTED
from mfactl.mail.render import Envelope, build_message, check_header, new_envelope, render
from mfactl.mail.transports import Connection, SendError
from mfactl.services.progress import NO_PROGRESS, Progress

STATUSES = ("pending", "sending", "failed", "sent", "cancelled")
LEASE = timedelta(minutes=15)  # how long a sender holds a row it took, renewed at each message
CLAIM = 20  # rows claimed at once: what a killed sender leaves held until their lease runs out
FIRST_RETRY = timedelta(minutes=1)
LONGEST_RETRY = timedelta(hours=6)
CHUNK = 500

def backoff(attempts: int) -> timedelta:
    """1 min, 2 min, 4 min … up to 6 hours after the n-th failed attempt."""
    return min(FIRST_RETRY * 2 ** max(attempts - 1, 0), LONGEST_RETRY)


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- writing: in the caller's transaction --------------------------------------------------------


@dataclass(frozen=True)
class NewMail:
    user_id: int | None
    recipient: str
    kind: str  # a template name: reset | enroll
    context: dict[str, Any]
    link_hash: str | None = None  # the link it carries: not sent once that link is dead


def enqueue(session: Session, app: App, mails: Sequence[NewMail]) -> list[int]:
    """Add the emails to the outbox (sealed), in the caller's transaction; their ids, in order.

    Bulk statements: one multi-row INSERT … RETURNING for the rows, then one executemany
    UPDATE for the sealed bodies (their label needs the id).
    """
    if not mails:
        return []
    settings = app.settings.email
    now = app.now()
    rendered = [render(m.kind, m.context, settings.templates_dir) for m in mails]
    rows = [
        {
            "user_id": m.user_id,
            "recipient": check_header("recipient", m.recipient),
            "subject": r.subject[:300],
            "body_ciphertext": None,
            "key_id": None,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for m, r in zip(mails, rendered, strict=True)
    ]
    ids: list[int] = []
    for part in chunks(rows):
        result = session.execute(
            insert(OutboxMessage).returning(OutboxMessage.id, sort_by_parameter_order=True),
            list(part),
        )
        ids.extend(int(i) for i in result.scalars())
    store = app.secrets
    bodies = []
    for message_id, r, m in zip(ids, rendered, mails, strict=True):
        envelope = new_envelope(settings.sender, r, now, f"mfactl.{message_id}", m.link_hash)
        sealed = store.seal_blob(outbox_label(message_id), envelope.to_json())
        bodies.append(
            {"id": message_id, "body_ciphertext": sealed.ciphertext, "key_id": sealed.key_id}
        )
    for part in chunks(bodies):
        session.execute(update(OutboxMessage), list(part))
    return ids


def cancel_unsent(session: Session, user_ids: Sequence[int], reason: str) -> None:
    """Cancel the users' queued emails (pending or failed), in the caller's transaction.

    For a change that ends every link the users have (a reset): their queued emails carry dead
    links, and one whose body no configured key opens any more could not be recognized as dead
    when it is tried, so it would fail on every retry and keep `keys verify` failing. A row a
    sender holds (``sending``) is left to that sender, which finds its link dead.
    """
    for part in chunks(user_ids):
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.user_id.in_(part), OutboxMessage.status.in_(("pending", "failed")))
            .values(
                status="cancelled",
                body_ciphertext=None,
                key_id=None,
                last_error=reason[:1000],
                next_attempt_at=None,
            )
            .execution_options(synchronize_session=False)
        )


# --- sending: after the commit -------------------------------------------------------------------


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
    def queued(self) -> int:
        return len(self.failed) + len(self.not_tried)

    @property
    def first_error(self) -> str | None:
        """The first failure of the run, or why it stopped: what to tell the administrator."""
        if self.failed:
            return next(iter(self.failed.values()))
        return f"not sent: {self.stopped}" if self.stopped else None

    def error_for(self, message_id: int) -> str | None:
        if message_id in self.failed:
            return self.failed[message_id]
        if message_id in self.not_tried:
            return f"not sent: {self.stopped}"
        return None


def _claimable(now: datetime, force: bool) -> ColumnElement[bool]:
    waiting: ColumnElement[bool] = OutboxMessage.status.in_(("pending", "failed"))
    if not force:
        waiting = and_(waiting, OutboxMessage.next_attempt_at <= now)
    lease_over = and_(OutboxMessage.status == "sending", OutboxMessage.next_attempt_at <= now)
    return or_(waiting, lease_over)


def due_ids(app: App, *, force: bool = False) -> list[int]:
    """Ids of the messages a retry would send now (all unsent ones with ``force``)."""
    with app.uow() as uow:
        query = select(OutboxMessage.id).where(_claimable(app.now(), force))
        return list(uow.session.scalars(query.order_by(OutboxMessage.id)))


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
    wanted = list(ids) if ids is not None else due_ids(app, force=force)
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
            for part in chunks(wanted, CLAIM):
                if report.stopped:
                    report.not_tried.extend(part)
                    continue
                lease = _new_lease(app.now())
                untried = list(part)  # what the lease may hold and was not done
                current: int | None = None  # the message being delivered
                try:
                    rows = _claim(db, app, part, force, lease)
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
                    _release(db, app, untried, lease)
                    report.not_tried.extend(untried)
    finally:
        if connection is not None:
            connection.close()
    _count_waiting(app, report)
    return report


def _deliver_one(
    app: App,
    db: Db,
    row: _Row,
    lease: datetime,
    connection: Connection | None,
    report: Delivery,
) -> Connection | None:
    """Take one claimed row again and send it; its outcome is committed and put in the report.
    Returns the SMTP connection (opened at the first message that needs it)."""
    held = _take(db, app, row.id, lease)
    if held is None:  # our hold ran out and another sender has the row now
        report.taken.append(row.id)
        return connection
    try:
        envelope = _envelope(app, row)
        if isinstance(envelope, MfactlError):
            raise envelope
        dead = _dead_link(app, db, envelope.link_hash)
        if dead:
            _cancelled(db, app, row.id, held, dead)
            report.cancelled.append(row.id)
            return connection
        message = build_message(envelope, row.recipient, row.subject)
        if connection is None:
            connection = app.mail_transport.connect()
        connection.send(_envelope_from(app), row.recipient, message)
    except SendError as exc:
        _failed(db, app, row.id, held, exc.reason)
        report.failed[row.id] = exc.reason
        if exc.connection:
            report.stopped = exc.reason
    except MfactlError as exc:  # a body no key opens: only this one fails
        _failed(db, app, row.id, held, exc.message)
        report.failed[row.id] = exc.message
    else:
        _sent(db, app, row.id, held)
        report.sent.append(row.id)
    return connection


def _count_waiting(app: App, report: Delivery) -> None:
    """Unsent messages left after the run, and how many of them another sender holds."""
    now = app.now()
    with app.uow() as uow:
        holding = and_(OutboxMessage.status == "sending", OutboxMessage.next_attempt_at > now)
        query = select(
            func.count(),
            func.count(case((holding, 1))),
            func.max(case((holding, OutboxMessage.next_attempt_at))),
        ).where(OutboxMessage.status.not_in(("sent", "cancelled")))
        waiting, held, until = uow.session.execute(query).one()
    report.waiting = int(waiting or 0)
    report.held = int(held or 0)
    report.held_until = until if report.held else None


@dataclass(frozen=True)
class _Row:
    id: int
    recipient: str
    subject: str
    body_ciphertext: str | None


def _claim(db: Db, app: App, ids: Sequence[int], force: bool, lease: datetime) -> list[_Row]:
    """Claim what nobody else holds with one conditional UPDATE; the unique lease marks ours."""
    now = app.now()
    db.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids), _claimable(now, force))
        .values(status="sending", next_attempt_at=lease)
    )
    db.commit()
    query = (
        select(
            OutboxMessage.id,
            OutboxMessage.recipient,
            OutboxMessage.subject,
            OutboxMessage.body_ciphertext,
        )
        .where(
            OutboxMessage.id.in_(ids),
            OutboxMessage.status == "sending",
            OutboxMessage.next_attempt_at == lease,
        )
        .order_by(OutboxMessage.id)
    )
    rows = [_Row(*r) for r in db.execute(query)]
    db.commit()
    return rows


_TAKE = (
    update(OutboxMessage)
    .where(
        OutboxMessage.id == bindparam("message_id"),
        OutboxMessage.status == "sending",
        OutboxMessage.next_attempt_at
        == bindparam("lease", type_=OutboxMessage.next_attempt_at.type),
    )
    .values(next_attempt_at=bindparam("fresh", type_=OutboxMessage.next_attempt_at.type))
)


def _take(db: Db, app: App, message_id: int, lease: datetime) -> datetime | None:
    """Renew the hold on one claimed row just before sending it; its new lease, or None when
    the hold ran out and another sender claimed the row meanwhile."""
    fresh = _new_lease(app.now())
    taken = db.execute(_TAKE, {"message_id": message_id, "lease": lease, "fresh": fresh})
    db.commit()
    return fresh if taken.rowcount == 1 else None


def _new_lease(now: datetime) -> datetime:
    """A hold until now + LEASE, made unique by a random part: it marks this sender's rows."""
    return now + LEASE + timedelta(microseconds=secrets.randbelow(1_000_000))


def _envelope(app: App, row: _Row) -> Envelope | MfactlError:
    """The sealed body, opened; or the error that fails only this message (no key opens it)."""
    if row.body_ciphertext is None:
        return MfactlError(f"outbox message {row.id} has no body")
    try:
        opened = app.secrets.open_blob(
            outbox_label(row.id), row.body_ciphertext, f"the body of outbox message {row.id}"
        )
    except MfactlError as exc:
        return exc
    return Envelope.from_json(opened.plaintext)


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


def _envelope_from(app: App) -> str:
    return parseaddr(app.settings.email.sender)[1] or app.settings.email.sender


# Built once: statement construction would otherwise cost more than the UPDATE itself.
_OURS = and_(
    OutboxMessage.id == bindparam("message_id"),
    OutboxMessage.status == "sending",
    OutboxMessage.next_attempt_at == bindparam("lease", type_=OutboxMessage.next_attempt_at.type),
)
_MARK_SENT = (
    update(OutboxMessage)
    .where(_OURS)
    .values(
        status="sent",
        sent_at=bindparam("now", type_=OutboxMessage.sent_at.type),
        attempts=OutboxMessage.attempts + 1,
        body_ciphertext=None,  # the link inside is live: keep it no longer than needed
        key_id=None,
        last_error=None,
        next_attempt_at=None,
    )
)
_MARK_FAILED = (
    update(OutboxMessage)
    .where(_OURS)
    .values(
        status="failed",
        attempts=bindparam("tries"),
        last_error=bindparam("reason"),
        next_attempt_at=bindparam("retry_at", type_=OutboxMessage.next_attempt_at.type),
    )
)


def _sent(db: Db, app: App, message_id: int, lease: datetime) -> None:
    db.execute(_MARK_SENT, {"message_id": message_id, "lease": lease, "now": app.now()})
    db.commit()


def _failed(db: Db, app: App, message_id: int, lease: datetime, reason: str) -> None:
    attempts = db.scalar(select(OutboxMessage.attempts).where(OutboxMessage.id == message_id))
    tries = (attempts or 0) + 1
    params = {
        "message_id": message_id,
        "lease": lease,
        "tries": tries,
        "reason": reason[:1000],
        "retry_at": app.now() + backoff(tries),
    }
    db.execute(_MARK_FAILED, params)
    db.commit()


_MARK_CANCELLED = (
    update(OutboxMessage)
    .where(_OURS)
    .values(
        status="cancelled",
        body_ciphertext=None,
        key_id=None,
        last_error=bindparam("reason"),
        next_attempt_at=None,
    )
)


def _cancelled(db: Db, app: App, message_id: int, lease: datetime, reason: str) -> None:
    db.execute(_MARK_CANCELLED, {"message_id": message_id, "lease": lease, "reason": reason})
    db.commit()


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
    finished = _give_back(app, ids, lease)  # sent after all: ours only if it was in hand
    report.sent.extend(i for i in ids if i in finished and i == current)
    report.not_tried.extend(i for i in ids if i not in finished)


def _give_back(app: App, ids: Sequence[int], lease: datetime) -> set[int]:
    """_release over a new connection, after an interruption; returns those of the ids that
    were sent after all (the interruption came after their outcome was committed). If even
    that fails, the rows wait for their lease to run out (`mail retry` reports them as held)."""
    with contextlib.suppress(Exception), app.engine.connect() as fresh:
        _release(fresh, app, ids, lease)
        query = select(OutboxMessage.id).where(
            OutboxMessage.id.in_(ids), OutboxMessage.status == "sent"
        )
        return set(fresh.scalars(query))
    return set()


def _release(db: Db, app: App, ids: Sequence[int], lease: datetime) -> None:
    """Give back claimed rows that were not tried: due again at once, as they were."""
    db.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id.in_(ids),
            OutboxMessage.status == "sending",
            OutboxMessage.next_attempt_at == lease,
        )
        .values(
            status=case((OutboxMessage.attempts == 0, "pending"), else_="failed"),
            next_attempt_at=app.now(),
        )
    )
    db.commit()


# --- listing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboxRow:
    id: int
    org: str | None
    user: str | None
    recipient: str
    subject: str
    status: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    sent_at: datetime | None


def list_messages(app: App, status: str | None = None) -> list[OutboxRow]:
    """The queue without bodies, oldest first."""
    query = (
        select(
            OutboxMessage.id,
            Organization.slug,
            User.handle,
            OutboxMessage.recipient,
            OutboxMessage.subject,
            OutboxMessage.status,
            OutboxMessage.attempts,
            OutboxMessage.last_error,
            OutboxMessage.next_attempt_at,
            OutboxMessage.created_at,
            OutboxMessage.sent_at,
        )
        .outerjoin(User, User.id == OutboxMessage.user_id)
        .outerjoin(Organization, Organization.id == User.organization_id)
        .order_by(OutboxMessage.id)
    )
    if status:
        query = query.where(OutboxMessage.status == status)
    with app.uow() as uow:
        return [OutboxRow(*row) for row in uow.session.execute(query)]
