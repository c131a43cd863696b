"""Emailed links (reset | enroll): issued in bulk, stored as keyed hashes, single use, expiring.

A link carries ``secrets.token_urlsafe(32)``; only its HMAC-SHA256 under a key derived from the
secret store is stored, so a row written into the database by hand opens nothing. A new link of
a purpose ends the user's older unused links of that purpose (their ``expires_at`` is set to
now). Whatever serves the link (the platform's web app) calls ``open_link`` (a new pending secret
and its otpauth URI) and then ``confirm_link`` with a code (activates the secret, uses up the
link). A link opens exactly once: whoever opens it second, the user or someone who got hold of
the mail, is refused, so a leaked link cannot swap in an attacker's secret.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from mfactl.app import App
from mfactl.db.batching import chunks
from mfactl.db.models import ActionToken, MfaSecret, Organization, User
from mfactl.errors import Conflict, Gone, InvalidInput, NotFound, WrongCode
from mfactl.services import audit, lookup
from mfactl.services.enrollment import (
    begin_enrollment,
    confirm_enrollment,
    first_recovery_codes,
)

PURPOSES = ("reset", "enroll")
USED = "this link has already been used; ask your administrator for a new one"
OPENED = "this link has already been opened; ask your administrator for a new one"
EXPIRED = (
    "this link has expired or was replaced by a newer one; ask your administrator for a new one"
)


TOKEN_PURPOSE = "link-token"  # its own derived key: a link's hash is no remember-me hash


def token_hash(app: App, token: str) -> str:
    """What a new link stores: the token's keyed hash under the active key."""
    return app.secrets.keyed_hashes(TOKEN_PURPOSE, token)[0]


def token_hashes(app: App, token: str) -> tuple[str, ...]:
    """What a stored link may hold: the keyed hash under the active key, then under the rolling
    one, so a key rotation does not end the links made before it."""
    return app.secrets.keyed_hashes(TOKEN_PURPOSE, token)


@dataclass(frozen=True)
class LinkTarget:
    """The user a link is for, as the link URL and the email need them."""

    user_id: int
    org: str
    handle: str


@dataclass(frozen=True)
class IssuedLink:
    user_id: int
    url: str
    expires_at: datetime
    token_hash: str
    token: str  # for the email's sealed body only: hashed again if a rotation ends its key


def end_unused_links(
    session: Session, now: datetime, user_ids: Sequence[int], purpose: str | None = None
) -> None:
    """Make the users' unused, unexpired links (of one purpose, or all) expire now."""
    for part in chunks(user_ids):
        query = update(ActionToken).where(
            ActionToken.user_id.in_(part),
            ActionToken.used_at.is_(None),
            ActionToken.expires_at > now,
        )
        if purpose is not None:
            query = query.where(ActionToken.purpose == purpose)
        session.execute(query.values(expires_at=now).execution_options(synchronize_session=False))


def issue_links(
    session: Session, app: App, targets: Sequence[LinkTarget], purpose: str
) -> list[IssuedLink]:
    """New links for the targets, in the caller's transaction; older ones of the purpose end."""
    now = app.now()
    links = app.settings.email.links
    expires_at = now + timedelta(hours=links.ttl_hours)
    template = links.reset_url if purpose == "reset" else links.enroll_url
    lookup.lock_users(session, [t.user_id for t in targets])
    end_unused_links(session, now, [t.user_id for t in targets], purpose)
    issued: list[IssuedLink] = []
    rows = []
    for target in targets:
        token = secrets.token_urlsafe(32)
        hashed = token_hash(app, token)
        rows.append(
            {
                "user_id": target.user_id,
                "purpose": purpose,
                "token_hash": hashed,
                "created_at": now,
                "expires_at": expires_at,
                "used_at": None,
            }
        )
        url = template.format(
            org=quote(target.org, safe=""),
            user=quote(target.handle, safe=""),
            token=quote(token, safe=""),
        )
        issued.append(IssuedLink(target.user_id, url, expires_at, hashed, token))
    for part in chunks(rows):
        session.execute(insert(ActionToken), list(part))
    return issued


# --- serving a link ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenedLink:
    org: str
    user: str
    purpose: str
    otpauth_uri: str
    expires_at: datetime


@dataclass(frozen=True)
class ConfirmedLink:
    org: str
    user: str
    purpose: str
    recovery_codes: tuple[str, ...] = ()  # the first set, to show the user once (() when off)


def find_link(
    session: Session, app: App, org: str, token: str
) -> tuple[ActionToken, Organization, User]:
    """The link's row with its organization and user, or NotFound; nothing is locked."""
    cleaned = token.strip()
    if not cleaned or len(cleaned) > 200:
        raise InvalidInput("the link token is empty or too long")
    row = session.execute(
        select(ActionToken, Organization, User)
        .join(User, User.id == ActionToken.user_id)
        .join(Organization, Organization.id == User.organization_id)
        .where(ActionToken.token_hash.in_(token_hashes(app, cleaned)))
    ).first()
    if row is None or row[1].slug != org.strip().lower():
        raise NotFound(f"this link is not valid for organization {org.strip().lower()}")
    link, organization, user = row
    return link, organization, user


def check_usable(
    session: Session, app: App, link: ActionToken, organization: Organization, user: User
) -> None:
    """Gone when the link was used or has expired; Conflict when the user's MFA is active."""
    state = session.scalar(select(MfaSecret.state).where(MfaSecret.user_id == user.id))
    require_usable(link.used_at, link.expires_at, state, f"{organization.slug}/{user.handle}", app)


def require_usable(
    used_at: datetime | None, expires_at: datetime, mfa_state: str | None, who: str, app: App
) -> None:
    """The rule for a link that still works, on its plain values (the setup page reads them
    in one statement)."""
    if used_at is not None:
        raise Gone(USED)
    if expires_at <= app.now():
        raise Gone(EXPIRED)
    if mfa_state == "active":
        raise Conflict(f"MFA is already active for {who}; the link cannot be used")


def checked_link(
    session: Session, app: App, org: str, token: str
) -> tuple[ActionToken, Organization, User]:
    """The link's row under its user's lock, or one clear sentence: unknown (exit 3), used or
    expired (exit 4)."""
    return _checked_token(session, app, org, token)


def _checked_token(
    session: Session, app: App, org: str, token: str
) -> tuple[ActionToken, Organization, User]:
    link, organization, user = find_link(session, app, org, token)
    # the user's lock orders this after any reset, newer link or enrollment of the user: the
    # link's state and the user's MFA state are read again under it
    lookup.lock_users(session, [user.id])
    session.refresh(link)
    check_usable(session, app, link, organization, user)
    return link, organization, user


def _usable(now: datetime) -> tuple[ColumnElement[bool], ...]:
    """The conditions of a link that still works, for the statements that claim it."""
    return (ActionToken.used_at.is_(None), ActionToken.expires_at > now)


def _audit(
    session: Session, app: App, action: str, link: ActionToken, org: Organization, user: User
) -> None:
    details = {"purpose": link.purpose}  # never the token
    audit.record(session, app, action, org=org.slug, user=user.handle, details=details)


def open_link(app: App, org: str, token: str) -> OpenedLink:
    """Start enrollment from a link: a new pending secret and its otpauth URI, exactly once.

    The opening is claimed by one conditional UPDATE, so of two concurrent openings one wins.
    """
    with app.uow() as uow:
        link, organization, user = _checked_token(uow.session, app, org, token)
        if link.opened_at is not None:
            raise Conflict(OPENED)
        now = app.now()
        claimed = uow.session.execute(
            update(ActionToken)
            .where(ActionToken.id == link.id, *_usable(now), ActionToken.opened_at.is_(None))
            .values(opened_at=now)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict(OPENED)
        uri = begin_enrollment(uow.session, app, organization, user)
        _audit(uow.session, app, "link.open", link, organization, user)
        uow.commit()
        return OpenedLink(organization.slug, user.handle, link.purpose, uri, link.expires_at)


def confirm_link(app: App, org: str, token: str, code: str) -> ConfirmedLink:
    """Activate the pending secret with a code and use up the link (exactly once)."""
    with app.uow() as uow:
        link, organization, user = _checked_token(uow.session, app, org, token)
        if link.opened_at is None:
            raise Conflict("this link has not been opened yet; open it to get the QR code first")
        # the secret is activated, then the link used up, in one transaction: a link that is no
        # longer usable rolls the activation back; a wrong code is committed as a counted
        # failure with the link still unused
        try:
            confirm_enrollment(uow.session, app, organization, user, code)
        except WrongCode:
            uow.commit()
            raise
        now = app.now()
        used = uow.session.execute(
            update(ActionToken)
            .where(ActionToken.id == link.id, *_usable(now), ActionToken.opened_at.is_not(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        if used.rowcount != 1:  # type: ignore[attr-defined]
            raise Gone(USED)
        codes = first_recovery_codes(uow.session, app, user)
        _audit(uow.session, app, "link.confirm", link, organization, user)
        uow.commit()
        return ConfirmedLink(organization.slug, user.handle, link.purpose, codes)
