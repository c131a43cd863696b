"""Audit events: written in the same transaction as the change they describe; listed."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Text, and_, cast, or_, select
from sqlalchemy.orm import Session, defer
from sqlalchemy.sql.elements import ColumnElement

from mfactl.app import App
from mfactl.db.models import AuditEvent, Organization, User
from mfactl.errors import NotFound
from mfactl.services import validation


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
    damaged: str | None = None  # why the stored details could not be read (they are left out)

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
            **({"damaged": self.damaged} if self.damaged else {}),
        }


def _row(event: AuditEvent, stored_details: str | None) -> AuditRow:
    """One event; details that are not a JSON object (written past mfactl) mark only it."""
    details: Any = {}
    damaged = None
    try:
        details = json.loads(stored_details) if stored_details else {}
    except (TypeError, ValueError):
        damaged = "its details are not valid JSON"
    if not isinstance(details, dict):
        details, damaged = {}, damaged or "its details are not a JSON object"
    return AuditRow(
        event.id,
        event.at,
        event.actor,
        event.action,
        event.organization,
        event.user_handle,
        event.outcome,
        details,
        damaged,
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
    """Events oldest first, streamed; with ``limit``, only the newest ``limit`` of them.

    ``user`` is a handle, or an email (the events of whoever has that address, in ``org`` when
    it is given); an organization and a handle are matched as the other commands take them,
    whatever their case or surrounding spaces.
    """
    # the details as stored text, decoded row by row: one damaged event must not hide the rest
    query = select(AuditEvent, cast(AuditEvent.details, Text)).options(defer(AuditEvent.details))
    org = org.strip().lower() if org else None
    if org:
        query = query.where(AuditEvent.organization == org)
    user = user.strip().lower() if user else None
    if user and "@" not in user:
        query = query.where(AuditEvent.user_handle == user)
    if action:
        if action.endswith("*"):
            query = query.where(AuditEvent.action.startswith(action[:-1]))
        else:
            query = query.where(AuditEvent.action == action)
    if since:
        query = query.where(AuditEvent.at >= since)
    with app.uow() as uow:
        if user and "@" in user:
            query = query.where(_by_email(uow.session, user, org))
        if limit:
            newest = uow.session.execute(query.order_by(AuditEvent.id.desc()).limit(limit))
            yield from reversed([_row(e, details) for e, details in newest])
            return
        for event, details in uow.session.execute(
            query.order_by(AuditEvent.id).execution_options(yield_per=1000)
        ):
            yield _row(event, details)


def _by_email(session: Session, email: str, org: str | None) -> ColumnElement[bool]:
    """The events of the users who have this email (one per organization at most)."""
    owners = select(Organization.slug, User.handle).join(
        Organization, Organization.id == User.organization_id
    )
    owners = owners.where(User.email == email)
    if org:
        owners = owners.where(Organization.slug == org)
    found = session.execute(owners).all()
    if not found:
        where = f" in {org}" if org else ""
        raise NotFound(f"no user has the email {validation.shown(email)}{where}")
    return or_(
        *(
            and_(AuditEvent.organization == slug, AuditEvent.user_handle == handle)
            for slug, handle in found
        )
    )
