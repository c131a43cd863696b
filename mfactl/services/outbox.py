"""The outbox: emails written in the same transaction as the change that causes them.

A row is ``pending`` (never tried), ``sending`` (claimed by one sender until its lease, kept in
``next_attempt_at``, runs out), ``failed`` (tried; retried from ``next_attempt_at``), ``sent``
or ``cancelled``. Bodies hold live links, so they are sealed with the secret store under
``outbox:<id>``, with the recipient beside them (a sender refuses a row whose recipient differs),
and purged (set to NULL) once sent. This module writes rows in the caller's
transaction, claims and leases them for a sender (one conditional UPDATE, so two senders never
hold the same row), records each outcome, and lists the queue; ``services.delivery`` sends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, case, func, insert, or_, select, update
from sqlalchemy.engine import Connection as Db
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from mfactl.app import App
from mfactl.crypto import outbox_label
from mfactl.db.batching import chunks
from mfactl.db.models import Organization, OutboxMessage, User
from mfactl.mail.render import check_header, new_envelope, render

STATUSES = ("pending", "sending", "failed", "sent", "cancelled")
# What a message that waits to be sent is called wherever it is shown (`mail list`, `mail
# retry`, a reset's email status): pending (never tried) and failed (tried, tried again from
# next_attempt_at) alike; `mail list --status pending|failed` still tells them apart.
QUEUED = "queued"
WAITING = ("pending", "failed")
FILTERS = (QUEUED, *STATUSES)
LEASE = timedelta(minutes=15)  # how long a sender holds a row it took, renewed at each message
CLAIM = 20  # rows claimed at once: what a killed sender leaves held until their lease runs out
FIRST_RETRY = timedelta(minutes=1)
LONGEST_RETRY = timedelta(hours=6)


def backoff(attempts: int) -> timedelta:
    """1 min, 2 min, 4 min … up to 6 hours after the n-th failed attempt."""
    return min(FIRST_RETRY * 2 ** max(attempts - 1, 0), LONGEST_RETRY)


# --- writing: in the caller's transaction --------------------------------------------------------


@dataclass(frozen=True)
class NewMail:
    user_id: int | None
    recipient: str
    kind: str  # a template name: reset | enroll
    context: dict[str, Any]
    link_hash: str | None = None  # the link it carries: not sent once that link is dead
    link_token: str | None = None  # that link's token, sealed with the body


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
    bodies: list[dict[str, object]] = []
    for message_id, r, m in zip(ids, rendered, mails, strict=True):
        envelope = new_envelope(
            settings.sender, r, now, f"mfactl.{message_id}", m.link_hash, m.recipient, m.link_token
        )
        sealed = store.seal_blob(outbox_label(message_id), envelope.to_json())
        bodies.append(
            {"id": message_id, "body_ciphertext": sealed.ciphertext, "key_id": sealed.key_id}
        )
    for body_part in chunks(bodies):
        session.execute(update(OutboxMessage), list(body_part))
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


# --- claiming and leasing: a sender's hold on a row --------------------------------------------


def claimable(now: datetime, force: bool) -> ColumnElement[bool]:
    waiting: ColumnElement[bool] = OutboxMessage.status.in_(("pending", "failed"))
    if not force:
        waiting = and_(waiting, OutboxMessage.next_attempt_at <= now)
    lease_over = and_(OutboxMessage.status == "sending", OutboxMessage.next_attempt_at <= now)
    return or_(waiting, lease_over)


def due_ids(app: App, *, force: bool = False) -> list[int]:
    """Ids of the messages a retry would send now (all unsent ones with ``force``)."""
    with app.uow() as uow:
        query = select(OutboxMessage.id).where(claimable(app.now(), force))
        return list(uow.session.scalars(query.order_by(OutboxMessage.id)))


@dataclass(frozen=True)
class ClaimedRow:
    id: int
    recipient: str
    subject: str
    body_ciphertext: str | None


def claim(db: Db, app: App, ids: Sequence[int], force: bool, lease: datetime) -> list[ClaimedRow]:
    """Claim what nobody else holds with one conditional UPDATE; the unique lease marks ours."""
    now = app.now()
    db.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids), claimable(now, force))
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
    rows = [ClaimedRow(*r) for r in db.execute(query)]
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


def take(db: Db, app: App, message_id: int, lease: datetime) -> datetime | None:
    """Renew the hold on one claimed row just before sending it; its new lease, or None when
    the hold ran out and another sender claimed the row meanwhile."""
    fresh = new_lease(app.now())
    taken = db.execute(_TAKE, {"message_id": message_id, "lease": lease, "fresh": fresh})
    db.commit()
    return fresh if taken.rowcount == 1 else None


def new_lease(now: datetime) -> datetime:
    """A hold until now + LEASE, made unique by a random part: it marks this sender's rows."""
    return now + LEASE + timedelta(microseconds=secrets.randbelow(1_000_000))


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


def mark_sent(db: Db, app: App, message_id: int, lease: datetime) -> None:
    db.execute(_MARK_SENT, {"message_id": message_id, "lease": lease, "now": app.now()})
    db.commit()


def mark_failed(db: Db, app: App, message_id: int, lease: datetime, reason: str) -> None:
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


def mark_cancelled(db: Db, app: App, message_id: int, lease: datetime, reason: str) -> None:
    db.execute(_MARK_CANCELLED, {"message_id": message_id, "lease": lease, "reason": reason})
    db.commit()


def give_back(app: App, ids: Sequence[int], lease: datetime) -> set[int]:
    """_release over a new connection, after an interruption; returns those of the ids that
    were sent after all (the interruption came after their outcome was committed). If even
    that fails, the rows wait for their lease to run out (`mail retry` reports them as held)."""
    with contextlib.suppress(Exception), app.engine.connect() as fresh:
        release(fresh, app, ids, lease)
        query = select(OutboxMessage.id).where(
            OutboxMessage.id.in_(ids), OutboxMessage.status == "sent"
        )
        return set(fresh.scalars(query))
    return set()


def release(db: Db, app: App, ids: Sequence[int], lease: datetime) -> None:
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


@dataclass(frozen=True)
class Waiting:
    """The unsent messages in the outbox, due or not, and how many of them a sender holds."""

    count: int
    held: int
    held_until: datetime | None  # when the last of those holds runs out


def count_waiting(app: App) -> Waiting:
    """Unsent messages left after a run, and how many of them another sender holds."""
    now = app.now()
    with app.uow() as uow:
        holding = and_(OutboxMessage.status == "sending", OutboxMessage.next_attempt_at > now)
        query = select(
            func.count(),
            func.count(case((holding, 1))),
            func.max(case((holding, OutboxMessage.next_attempt_at))),
        ).where(OutboxMessage.status.not_in(("sent", "cancelled")))
        waiting, held, until = uow.session.execute(query).one()
    return Waiting(int(waiting or 0), int(held or 0), until if held else None)


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

    @property
    def shown_status(self) -> str:
        """``queued`` for a message that waits (pending or failed), else its status."""
        return QUEUED if self.status in WAITING else self.status

    def to_json(self) -> dict[str, object]:
        """One message of `mail list --json` (times as datetimes: the CLI writes them ISO Z)."""
        return {**dataclasses.asdict(self), "status": self.shown_status}


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
    if status == QUEUED:
        query = query.where(OutboxMessage.status.in_(WAITING))
    elif status:
        query = query.where(OutboxMessage.status == status)
    with app.uow() as uow:
        return [OutboxRow(*row) for row in uow.session.execute(query)]
