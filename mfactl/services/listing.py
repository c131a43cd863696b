"""The MFA status listing: one JSON-shaped dict per selected user, streamed from the database.

Built for a million users in constant memory: a Core select of only the needed columns, read in
batches through a server-side cursor (``yield_per``), and no ORM objects or type decorators per
row; times are formatted straight from the naive UTC value the database returns.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, TypedDict

from sqlalchemy import Select, String, func, select, type_coerce

from mfactl.app import App
from mfactl.config import Settings
from mfactl.db.models import MfaSecret, Organization, RememberToken, User
from mfactl.services import lookup, policy, recovery, remember
from mfactl.services.selection import UserFilter, apply_filter

BATCH = 2000  # rows fetched at a time from the server-side cursor


class ListedUser(TypedDict):
    """One user in `users list --json`; the keys and their order are a stable contract."""

    org: str
    user: str
    email: str
    name: str
    admin: bool
    mfa: str  # active | pending | none
    mfa_key_active: bool | None  # ciphertext made with the active key; None without a secret
    enrolled_at: str | None  # ISO 8601 UTC with Z
    last_used_at: str | None
    locked: bool
    remember_tokens: int  # live remember-me tokens (services.remember.live)
    compliant: bool
    recovery_codes: int | None  # unused recovery codes; None when the user has no set


# The field names, in order, of each listed user: a stable contract (README "users list").
FIELDS = tuple(ListedUser.__annotations__)


def utc_iso(value: datetime | str | None) -> str | None:
    """A naive UTC time as the database returns it (datetime, or text on SQLite) -> ISO Z."""
    if value is None:
        return None
    if isinstance(value, str):  # SQLite: "YYYY-MM-DD HH:MM:SS[.ffffff]"
        return f"{value[:10]}T{value[11:19]}Z"
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def listing_query(app: App, flt: UserFilter, now: datetime) -> Select[Any]:
    """The selected users' listed columns, ordered by organization then handle."""
    remembered = (
        select(func.count())
        .where(RememberToken.user_id == User.id, remember.live(app, now))
        .correlate(User)
        .scalar_subquery()
    )
    query = (
        select(
            Organization.slug,
            User.handle,
            User.email,
            User.display_name,
            User.is_admin,
            MfaSecret.state,
            MfaSecret.key_id,
            # the raw stored value, skipping UtcDateTime's per-row conversion
            type_coerce(MfaSecret.confirmed_at, String),
            type_coerce(MfaSecret.last_used_at, String),
            MfaSecret.locked,
            remembered,
            recovery.remaining_sql(User.id),
        )
        .join(Organization, Organization.id == User.organization_id)
        .outerjoin(MfaSecret, MfaSecret.user_id == User.id)
        .order_by(Organization.slug, User.handle)
    )
    return apply_filter(query, app.settings, flt)


def list_users(app: App, flt: UserFilter) -> Iterator[ListedUser]:
    """Yield each selected user's MFA status, as read from the database (constant memory)."""
    settings = app.settings
    compliance = _Compliance(settings)
    kid = settings.secret_store.active_key_id
    with app.uow() as uow:
        if flt.org:
            lookup.get_org(uow.session, flt.org)  # NotFound (exit 3) rather than an empty list
        connection = uow.session.connection()
        result = connection.execution_options(yield_per=BATCH).execute(
            listing_query(app, flt, app.now())
        )
        # `with` closes the cursor even when the reader stops early (PyMySQL warns otherwise)
        with result:
            for batch in result.partitions():  # a list at a time: less per-row overhead
                for (
                    org,
                    handle,
                    email,
                    name,
                    admin,
                    state,
                    key,
                    enrolled,
                    used,
                    locked,
                    n,
                    codes,
                ) in batch:
                    if type(name) is not str or type(email) is not str or type(handle) is not str:
                        lookup.check_user_text(org, handle, email, name)
                    admin = bool(admin)
                    state = state or "none"
                    codes = None if codes is None else int(codes)
                    yield {
                        "org": org,
                        "user": handle,
                        "email": email,
                        "name": name,
                        "admin": admin,
                        "mfa": state,
                        "mfa_key_active": None if key is None else key == kid,
                        "enrolled_at": utc_iso(enrolled),
                        "last_used_at": utc_iso(used),
                        "locked": bool(locked),
                        "remember_tokens": n,
                        "compliant": compliance[admin, state, bool(codes)],
                        "recovery_codes": codes,
                    }


class _Compliance(dict[tuple[bool, str, bool], bool]):
    """``policy.compliant`` by (admin, MFA state, has an unused recovery code): asked once per
    kind of user and state rather than once per row."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings

    def __missing__(self, key: tuple[bool, str, bool]) -> bool:
        admin, state, has_codes = key
        self[key] = answer = policy.compliant(self.settings, admin, state, int(has_codes))
        return answer

