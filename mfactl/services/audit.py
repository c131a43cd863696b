"""Audit events: written in the same transaction as the change they describe; listed."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mfactl.app import App
from mfactl.db.models import AuditEvent


def record(
    session: Session,
    app: App,
    action: str,
    *,
    org: str | None = None,
    user: str | None = None,
    outcome: str = "ok",
    details: Mapping[str, Any] | None = None,
) -> None:
    """Add an audit event to the session; it commits (or not) with the change itself.

    Never put a secret, a token or a code in ``details``.
    """
    session.add(
        AuditEvent(
            at=app.now(),
            actor=app.actor[:200],
            action=action,
            organization=org,
            user_handle=user,
            outcome=outcome,
            details=dict(details or {}),
        )
    )


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime
    actor: str
    action: str
    org: str | None
    user: str | None
    outcome: str
    details: dict[str, Any]

    def to_json(self) -> dict[str, object]:
        """An event of `audit list --json`."""
        return {
            "id": self.id,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "org": self.org,
            "user": self.user,
            "outcome": self.outcome,
            "details": self.details,
        }


def _row(event: AuditEvent) -> AuditRow:
    return AuditRow(
        event.id,
        event.at,
        event.actor,
        event.action,
        event.organization,
        event.user_handle,
        event.outcome,
        event.details or {},
    )


def list_events(
    app: App,
    *,
    org: str | None = None,
    user: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
) -> Iterator[AuditRow]:
    """Events oldest first, streamed; with ``limit``, only the newest ``limit`` of them."""
    query = select(AuditEvent)
    if org:
        query = query.where(AuditEvent.organization == org)
    if user:
        query = query.where(AuditEvent.user_handle == user)
    if action:
        if action.endswith("*"):
            query = query.where(AuditEvent.action.startswith(action[:-1]))
        else:
            query = query.where(AuditEvent.action == action)
    if since:
        query = query.where(AuditEvent.at >= since)
    with app.uow() as uow:
        if limit:
            newest = uow.session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit))
            yield from reversed([_row(e) for e in newest])
            return
        for event in uow.session.scalars(
            query.order_by(AuditEvent.id).execution_options(yield_per=1000)
        ):
            yield _row(event)
