"""Which users a filter selects: shared by `users list`, `users reset` and `users enable`."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, and_, func, or_

from mfactl.config import Settings
from mfactl.db.models import MfaSecret, Organization, User
from mfactl.errors import InvalidInput
from mfactl.services import policy, recovery

MFA_STATES = ("active", "pending", "none")
# longer than any handle, email or name can be; a pattern much longer makes SQLite refuse it
SEARCH_MAX_CHARS = 320


@dataclass(frozen=True)
class UserFilter:
    org: str | None = None
    mfa: str | None = None  # active | pending | none
    admins: bool = False
    stale_key: bool = False  # a secret not under the active key
    noncompliant: bool = False  # the policy requires MFA and it is not active
    locked: bool = False
    recovery_codes_low: bool = False  # MFA active with recovery.LOW unused codes or fewer
    search: str | None = None  # handle, email or name contains

    def __post_init__(self) -> None:
        if self.search is not None and len(self.search) > SEARCH_MAX_CHARS:
            raise InvalidInput(
                f"the search text is {len(self.search)} characters long; "
                f"at most {SEARCH_MAX_CHARS} are accepted"
            )


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
        kid = settings.secret_store.active_key_id
        stale = MfaSecret.user_id.is_not(None)
        query = query.where(stale if kid is None else and_(stale, MfaSecret.key_id != kid))
    if flt.noncompliant:
        query = query.where(policy.noncompliant_sql(settings))
    if flt.locked:
        query = query.where(MfaSecret.locked.is_(True))
    if flt.recovery_codes_low:
        left = func.coalesce(recovery.remaining_sql(User.id), 0)
        query = query.where(MfaSecret.state == "active", left <= recovery.LOW)
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
