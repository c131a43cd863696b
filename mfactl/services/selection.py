"""Which users a filter selects: shared by `users list`, `users reset` and `users enable`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, and_, false, func, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from mfactl.config import Settings, key_id
from mfactl.db.models import MfaSecret, Organization, RememberToken, User

MFA_STATES = ("active", "pending", "none")


@dataclass(frozen=True)
class UserFilter:
    org: str | None = None
    mfa: str | None = None  # active | pending | none
    admins: bool = False
    stale_key: bool = False  # a secret not under the active key
    noncompliant: bool = False  # the policy requires MFA and it is not active
    locked: bool = False
    search: str | None = None  # handle, email or name contains


def active_key_id(settings: Settings) -> str | None:
    key = settings.secret_store.active_key
    return key_id(key) if key else None


def mfa_required(settings: Settings) -> ColumnElement[bool]:
    """SQL truth of "the policy requires MFA from this user" (joined on User)."""
    mfa = settings.user_login.mfa
    if not mfa.enabled:
        return false()
    if mfa.mandatory:
        return true()
    if mfa.mandatory_for_sysadmins:
        return User.is_admin.is_(True)
    return false()


def filtered_users(
    settings: Settings, flt: UserFilter, now: datetime
) -> Select[tuple[object, ...]]:
    """SELECT User, Organization.slug, MfaSecret (outer), live remember-token count, ordered."""
    remember = (
        select(RememberToken.user_id, func.count().label("n"))
        .where(RememberToken.revoked_at.is_(None), RememberToken.expires_at > now)
        .group_by(RememberToken.user_id)
        .subquery()
    )
    query = (
        select(User, Organization.slug, MfaSecret, func.coalesce(remember.c.n, 0))
        .join(Organization, Organization.id == User.organization_id)
        .outerjoin(MfaSecret, MfaSecret.user_id == User.id)
        .outerjoin(remember, remember.c.user_id == User.id)
        .order_by(Organization.slug, User.handle)
    )
    return apply_filter(query, settings, flt)


def apply_filter(query: Select, settings: Settings, flt: UserFilter) -> Select:
    """Add the filter's WHERE clauses to a query that joins User, Organization and MfaSecret."""
    if flt.org:
        query = query.where(Organization.slug == flt.org.strip().lower())
    if flt.mfa == "none":
        query = query.where(MfaSecret.user_id.is_(None))
    elif flt.mfa in ("active", "pending"):
        query = query.where(MfaSecret.state == flt.mfa)
    if flt.admins:
        query = query.where(User.is_admin.is_(True))
    if flt.stale_key:
        kid = active_key_id(settings)
        stale = MfaSecret.user_id.is_not(None)
        query = query.where(stale if kid is None else and_(stale, MfaSecret.key_id != kid))
    if flt.noncompliant:
        query = query.where(
            mfa_required(settings),
            or_(MfaSecret.user_id.is_(None), MfaSecret.state != "active"),
        )
    if flt.locked:
        query = query.where(MfaSecret.locked.is_(True))
    if flt.search:
        pattern = (
            "%"
            + flt.search.strip()
            .lower()
            .replace("\\", "\\\\")
            .replace("%", "\\%")
            .replace("_", "\\_")
            + "%"
        )
        query = query.where(
            or_(
                User.handle.like(pattern, escape="\\"),
                User.email.like(pattern, escape="\\"),
                func.lower(User.display_name).like(pattern, escape="\\"),
            )
        )
    return query


def compliant(settings: Settings, is_admin: bool, mfa_state: str) -> bool:
    """Python twin of ``mfa_required``: may this user stay as they are under the policy?"""
    mfa = settings.user_login.mfa
    required = mfa.enabled and (mfa.mandatory or (is_admin and mfa.mandatory_for_sysadmins))
    return not required or mfa_state == "active"
