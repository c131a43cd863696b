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
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, select, update
from sqlalchemy.sql.elements import ColumnElement

from mfactl.app import App
from mfactl.db import driver
from mfactl.db.models import MfaSecret, RememberToken
from mfactl.errors import Conflict, NotFound
from mfactl.services import audit, lookup, recovery

TOKEN_PURPOSE = "remember-token"  # its own derived key: a remember-me hash is no link's hash

_TOKENS = cast(Table, RememberToken.__table__).c


def _live(now: Any, oldest: Any) -> ColumnElement[bool]:
    """The rule: not revoked, and before its expiry, the earlier of the one stored and its
    creation + today's rememberMe.days (lowering the days ends older tokens)."""
    return and_(_TOKENS.revoked_at.is_(None), _TOKENS.expires_at > now, _TOKENS.created_at > oldest)


_LIVE = _live(bindparam("now"), bindparam("oldest"))  # bound per call with live_params


def live_params(app: App, now: datetime) -> dict[str, datetime]:
    return {"now": now, "oldest": now - timedelta(days=app.settings.user_login.remember_me.days)}


def live(app: App, now: datetime) -> ColumnElement[bool]:
    """The SQL test of a live token at ``now``."""
    return _live(**live_params(app, now))


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


def refusal(app: App, is_admin: bool) -> str | None:
    """Why the policy forbids remembering this user's devices, or None when it allows it."""
    login = app.settings.user_login
    if not login.mfa.enabled:
        return "MFA is disabled by policy (userLogin.mfa.enabled is false)"
    if not login.remember_me.enabled:
        return "remember-me is disabled by policy (userLogin.rememberMe.enabled is false)"
    if is_admin and login.remember_me.disabled_for_sysadmins:
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
        reason = refusal(app, user.is_admin)
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


# the login path: Core statements built once, run on the driver (see db/driver.py)
_USER = lookup.user_with_secret(
    lookup.USERS.c.id,
    lookup.USERS.c.uid,
    lookup.USERS.c.is_admin,
    lookup.SECRETS.c.state,
    recovery.remaining_sql(lookup.USERS.c.id).label("recovery_codes"),
)
_LIVE_TOKEN = (
    select(_TOKENS.id)
    .where(
        _TOKENS.user_id == bindparam("token_of"),
        # under the active key, then the rolling one (the same hash twice without one)
        _TOKENS.token_hash.in_([bindparam("active_hash"), bindparam("rolling_hash")]),
        _LIVE,
    )
    .limit(1)
)


@dataclass(frozen=True)
class LoginUser:
    """What the login path reads of a user: enough for the policy and the remember-me check."""

    id: int
    uid: str
    is_admin: bool
    mfa_state: str  # active | pending | none
    recovery_codes: int | None = None  # unused recovery codes; None without a set


def login_user(app: App, org: str, user_ref: str) -> LoginUser:
    """The user, by one statement on the login path's connection; NotFound naming what is
    missing, the organization or the user."""
    statement, params = lookup.bind_user(_USER, org, user_ref)
    with driver.borrowed(app.engine) as connection:
        row = connection.first(statement, params)
    if row is None or not isinstance(row.uid, str) or not isinstance(row.state, str | None):
        # not there, or damaged: the unit of work names which
        with app.uow() as uow:
            _, user = lookup.get_org_user(uow.session, org, user_ref)
            mfa = uow.session.get(MfaSecret, user.id)
            left = uow.session.scalar(select(recovery.remaining_sql(user.id)))
            return LoginUser(
                user.id,
                user.uid,
                user.is_admin,
                mfa.state if mfa else "none",
                None if left is None else int(left),
            )
    left = row.recovery_codes
    return LoginUser(
        row.id,
        row.uid,
        bool(row.is_admin),
        row.state or "none",
        None if left is None else int(left),
    )


def is_remembered(app: App, user: LoginUser, token: str) -> bool:
    """True when ``token`` is a live remember-me token of ``user``, whose MFA is active, and the
    policy allows it."""
    # issued tokens are URL-safe ASCII: anything else was never issued (and may not encode)
    if not token or not token.isascii() or user.mfa_state != "active":
        return False  # nothing to skip without active MFA
    if refusal(app, user.is_admin):
        return False
    hashes = token_hashes(app, user.uid, token)
    params = {
        "token_of": user.id,
        "active_hash": hashes[0],
        "rolling_hash": hashes[-1],
        **live_params(app, app.now()),
    }
    with driver.borrowed(app.engine) as connection:
        return connection.first(_LIVE_TOKEN, params) is not None


def check(app: App, org: str, user_ref: str, token: str) -> bool:
    app.check_schema()
    return is_remembered(app, login_user(app, org, user_ref), token)


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
            exists = (
                None
                if not 0 < token_id < 2**63
                else uow.session.scalar(
                    select(RememberToken.id).where(
                        RememberToken.id == token_id, RememberToken.user_id == user.id
                    )
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
