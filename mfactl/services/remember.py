"""Remember-me tokens: a device that gave a right code may skip the code for ``days`` days.

Only a keyed hash of a token (HMAC-SHA256 under a key derived from the secret store) is stored,
so a row written into the database by hand remembers no device; the token itself goes to the
login server once, to put in a cookie. Issuing is refused when the policy forbids it; checking
says no in the same cases.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from mfactl.app import App
from mfactl.db.models import MfaSecret, RememberToken, User
from mfactl.errors import Conflict, NotFound
from mfactl.services import audit, lookup

TOKEN_PURPOSE = "remember-token"  # its own derived key: a remember-me hash is no link's hash

def live(app: App, now: datetime) -> ColumnElement[bool]:
    """The SQL test of a live token: not revoked, and before its expiry, the earlier of the one
    stored and its creation + today's rememberMe.days (lowering the days ends older tokens)."""
    oldest = now - timedelta(days=app.settings.user_login.remember_me.days)
    return and_(
        RememberToken.revoked_at.is_(None),
        RememberToken.expires_at > now,
        RememberToken.created_at > oldest,
    )


def expiry(app: App, created_at: datetime, stored: datetime) -> datetime:
    """When a token stops being live: the same rule as ``live``, for one row already read."""
    return min(stored, created_at + timedelta(days=app.settings.user_login.remember_me.days))

def token_hash(app: App, uid: str, token: str) -> str:
    """What a new token stores: its keyed hash under the active key, bound to its user's uid."""
    return token_hashes(app, uid, token)[0]


def token_hashes(app: App, uid: str, token: str) -> tuple[str, ...]:
    """What a stored token of the user ``uid`` may hold: the keyed hash under the active key,
    then under the rolling one, so a key rotation does not make remembered devices give a code
    again.

    The uid is hashed with the token: a user's own row moved onto a sysadmin in the database
    does not remember the sysadmin's devices.
    """
    return app.secrets.keyed_hashes(TOKEN_PURPOSE, f"{uid}:{token}")


def refusal(app: App, user: User) -> str | None:
    """Why the policy forbids remembering this user's devices, or None when it allows it."""
    login = app.settings.user_login
    if not login.mfa.enabled:
        return "MFA is disabled by policy (userLogin.mfa.enabled is false)"
    if not login.remember_me.enabled:
        return "remember-me is disabled by policy (userLogin.rememberMe.enabled is false)"
    if user.is_admin and login.remember_me.disabled_for_sysadmins:
        return (
            "remember-me is disabled for sysadmins "
            "(userLogin.rememberMe.disabledForSysAdmins is true)"
        )
    return None


@dataclass(frozen=True)
class IssuedToken:
    id: int
    token: str  # give it to the device once; it is not stored anywhere
    expires_at: datetime


def issue(app: App, org: str, user_ref: str) -> IssuedToken:
    """A new remember-me token for a user whose MFA is active, valid rememberMe.days days."""
    with app.uow() as uow:
        organization, user = lookup.get_org_user(uow.session, org, user_ref)
        who = lookup.who(organization, user)
        reason = refusal(app, user)
        if reason:
            raise Conflict(f"cannot remember a device of {who}: {reason}")
        # under the user's lock, a reset running meanwhile either comes first (and MFA is not
        # active here) or after (and revokes this token with the others)
        lookup.lock_users(uow.session, [user.id])
        secret = uow.session.get(MfaSecret, user.id, populate_existing=True)
        if secret is None or secret.state != "active":
            raise Conflict(f"cannot remember a device of {who}: MFA is not active")
        token = secrets.token_urlsafe(32)
        now = app.now()
        row = RememberToken(
            user_id=user.id,
            token_hash=token_hash(app, user.uid, token),
            created_at=now,
            expires_at=now + timedelta(days=app.settings.user_login.remember_me.days),
        )
        uow.session.add(row)
        uow.session.flush()
        audit.record(
            uow.session,
            app,
            "remember.issue",
            org=organization.slug,
            user=user.handle,
            details={"token_id": row.id, "expires_at": row.expires_at.isoformat()},
        )
        uow.commit()
        return IssuedToken(row.id, token, row.expires_at)


def is_remembered(session: Session, app: App, user: User, token: str) -> bool:
    """True when ``token`` is a live remember-me token of ``user``, whose MFA is active, and the
    policy allows it."""
    # issued tokens are URL-safe ASCII: anything else was never issued (and may not encode)
    if not token or not token.isascii() or refusal(app, user):
        return False
    found = session.scalar(
        select(RememberToken.id)
        .join(MfaSecret, MfaSecret.user_id == RememberToken.user_id)
        .where(
            RememberToken.token_hash.in_(token_hashes(app, user.uid, token)),
            RememberToken.user_id == user.id,
            live(app, app.now()),
            MfaSecret.state == "active",  # nothing to skip without active MFA
        )
    )
    return found is not None


def check(app: App, org: str, user_ref: str, token: str) -> bool:
    with app.uow() as uow:
        _, user = lookup.get_org_user(uow.session, org, user_ref)
        return is_remembered(uow.session, app, user, token)


@dataclass(frozen=True)
class RememberInfo:
    id: int
    created_at: datetime
    expires_at: datetime  # the earlier of the stored expiry and creation + rememberMe.days
    revoked_at: datetime | None
    state: str  # live | expired | revoked


def list_tokens(app: App, org: str, user_ref: str) -> list[RememberInfo]:
    """The user's remember-me tokens, newest first (never the tokens themselves)."""
    now = app.now()
    with app.uow() as uow:
        _, user = lookup.get_org_user(uow.session, org, user_ref)
        rows = uow.session.scalars(
            select(RememberToken)
            .where(RememberToken.user_id == user.id)
            .order_by(RememberToken.id.desc())
        ).all()
        infos = []
        for r in rows:
            expires_at = expiry(app, r.created_at, r.expires_at)
            state = "revoked" if r.revoked_at else "expired" if expires_at <= now else "live"
            infos.append(RememberInfo(r.id, r.created_at, expires_at, r.revoked_at, state))
        return infos


def revoke(app: App, org: str, user_ref: str, token_id: int | None = None) -> int:
    """Revoke one token (by id) or all live ones of the user; returns how many were revoked."""
    with app.uow() as uow:
        organization, user = lookup.get_org_user(uow.session, org, user_ref)
        now = app.now()
        query = update(RememberToken).where(
            RememberToken.user_id == user.id, RememberToken.revoked_at.is_(None)
        )
        if token_id is not None:
            # an id past a 64-bit integer cannot be stored, so no token has it
            exists = None if not 0 < token_id < 2**63 else uow.session.scalar(
                select(RememberToken.id).where(
                    RememberToken.id == token_id, RememberToken.user_id == user.id
                )
            )
            if exists is None:
                raise NotFound(
                    f"remember-me token {token_id} does not exist for "
                    f"{lookup.who(organization, user)}"
                )
            query = query.where(RememberToken.id == token_id)
        revoked = uow.session.execute(
            query.values(revoked_at=now).execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        audit.record(
            uow.session,
            app,
            "remember.revoke",
            org=organization.slug,
            user=user.handle,
            details={"token_id": token_id, "revoked": revoked},
        )
        uow.commit()
        return int(revoked)
