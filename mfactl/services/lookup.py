"""Finding organizations and users by what administrators type."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from mfactl.db.models import MfaSecret, Organization, User
from mfactl.errors import DamagedRow, DamagedSecret, NotFound
from mfactl.services import validation


def get_org(session: Session, slug: str) -> Organization:
    org = session.scalars(select(Organization).where(matches_org(slug))).first()
    if org is None:
        raise NotFound(f"organization {validation.shown(slug)} does not exist")
    return org


def user_reference(user_ref: str) -> tuple[bool, str]:
    """(by email?, the reference as stored): a user is found by handle, or by email when the
    reference has an '@'."""
    ref = user_ref.strip().lower()
    return "@" in ref, ref


def org_reference(slug: str) -> str:
    return slug.strip().lower()


def matches_user(user_ref: str) -> ColumnElement[bool]:
    """The WHERE clause finding a user by handle, or by email when the reference has an '@'."""
    by_email, ref = user_reference(user_ref)
    return User.email == ref if by_email else User.handle == ref


def matches_org(slug: str) -> ColumnElement[bool]:
    return Organization.slug == org_reference(slug)


# --- the login path: Core statements built once, bound per call ---------------------------------

USERS = cast(Table, User.__table__)
ORGANIZATIONS = cast(Table, Organization.__table__)
SECRETS = cast(Table, MfaSecret.__table__)


def user_with_secret(*columns: ColumnElement[Any]) -> dict[bool, Select[Any]]:
    """A statement reading ``columns`` of one user, their organization and their MFA secret
    (NULLs without one), bound with ``org`` and ``user`` (see ``bind_user``); by email (True)
    or by handle (False)."""
    joined = USERS.join(ORGANIZATIONS, ORGANIZATIONS.c.id == USERS.c.organization_id).outerjoin(
        SECRETS, SECRETS.c.user_id == USERS.c.id
    )
    base = select(*columns).select_from(joined).where(ORGANIZATIONS.c.slug == bindparam("org"))
    return {
        True: base.where(USERS.c.email == bindparam("user")),
        False: base.where(USERS.c.handle == bindparam("user")),
    }


def bind_user(
    statements: dict[bool, Select[Any]], org: str, user_ref: str
) -> tuple[Select[Any], dict[str, Any]]:
    """The statement of ``user_with_secret`` that finds ``user_ref``, and its parameters."""
    by_email, ref = user_reference(user_ref)
    return statements[by_email], {"org": org_reference(org), "user": ref}


def get_user(session: Session, org: Organization, user_ref: str) -> User:
    """A user of ``org`` by handle, or by email when the reference contains '@'."""
    query = select(User).where(User.organization_id == org.id, matches_user(user_ref))
    with reading(f"the user {org.slug}/{user_ref.strip().lower()[:64]}"):
        user = session.scalars(query).first()
    if user is None:
        raise NotFound(
            f"user {validation.shown(user_ref)} does not exist in organization {org.slug}"
        )
    return user


def get_org_user(session: Session, org_slug: str, user_ref: str) -> tuple[Organization, User]:
    org = get_org(session, org_slug)
    return org, get_user(session, org, user_ref)


def lock_users(session: Session, user_ids: Iterable[int]) -> None:
    """Hold the users' row locks until the transaction ends.

    Every change to a user's MFA state (enrollment, confirmation, verification, a link opened or
    confirmed, a reset, a new link, a remember-me token) takes this lock first and reads that
    state after it, so changes to one user run one after the other, each on what the previous
    one committed, and always locking in the same order (users, by id), which also keeps them
    from deadlocking one another. SQLite has no row locks: its one write lock is taken at once
    (BEGIN IMMEDIATE), where it would otherwise come at the first write, after the reads.
    """
    connection = session.connection()
    # a use case may reach this more than once (a reset, then its links): a lock held by this
    # transaction is not asked for again
    transaction, held = session.info.get("mfactl.locked", (None, set()))
    if transaction is not session.get_transaction():
        held = set()
        session.info["mfactl.locked"] = (session.get_transaction(), held)
    ids = sorted(set(user_ids) - held)
    if not ids:
        return
    held.update(ids)
    if connection.dialect.name == "sqlite":
        raw = connection.connection.dbapi_connection
        # the driver opens a transaction only at the first write; once it has, the write lock
        # is held already
        if raw is not None and not raw.in_transaction:
            # through SQLAlchemy, so that a lock not had within the busy timeout is its
            # OperationalError ("database is locked"), which callers report as unavailable
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        return
    for start in range(0, len(ids), 1000):
        part = ids[start : start + 1000]
        session.execute(
            select(User.id).where(User.id.in_(part)).order_by(User.id).with_for_update()
        )


def who(org: Organization, user: User) -> str:
    """How errors and audit name a user: org/handle."""
    return f"{org.slug}/{user.handle}"


def check_user_text(org: str, handle: object, email: object, name: object) -> None:
    """Refuse a user row whose text columns hold something else (a BLOB written behind mfactl's
    back), naming the user by what is text (exit 5)."""
    columns = {"handle": handle, "email": email, "name": name}
    for column, value in columns.items():
        if type(value) is not str:
            who = f"the user {org}/{handle}" if type(handle) is str else f"a user of {org}"
            raise DamagedRow(
                f"the row of {who} is damaged: its {column} is {type(value).__name__}, not text",
                named=True,
            )


@contextmanager
def reading(whose: str, *, secret: bool = False) -> Iterator[None]:
    """Rows read inside belong to ``whose`` (``the user acme/alice``): a damaged value in them
    is reported naming it, as a secret store error (6) for an MFA secret row, else as a
    configuration error (5)."""
    try:
        yield
    except DamagedRow as exc:
        if exc.named:
            raise
        message = f"the {'MFA secret' if secret else 'row'} of {whose} is damaged: {exc.message}"
        raise (DamagedSecret(message) if secret else DamagedRow(message, named=True)) from None
