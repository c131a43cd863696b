"""Users: add one, and report a user's status (importing many: services/user_import.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from mfactl.app import App
from mfactl.db.models import ActionToken, MfaSecret, RememberToken, User
from mfactl.errors import Conflict
from mfactl.services import audit, lookup, validation
from mfactl.services import remember as remember_tokens


@dataclass(frozen=True)
class UserInfo:
    org: str
    user: str
    email: str
    name: str
    admin: bool
    uid: str
    created_at: datetime

    def to_json(self) -> dict[str, object]:
        """`user add --json` (the uid is internal: it binds ciphertexts to their user)."""
        return {
            "org": self.org,
            "user": self.user,
            "email": self.email,
            "name": self.name,
            "admin": self.admin,
            "created_at": self.created_at,
        }


def _info(org_slug: str, user: User) -> UserInfo:
    return UserInfo(
        org_slug,
        user.handle,
        user.email,
        user.display_name,
        user.is_admin,
        user.uid,
        user.created_at,
    )


def add_user(
    app: App,
    org: str,
    handle: str,
    email: str,
    *,
    name: str | None = None,
    admin: bool = False,
) -> UserInfo:
    handle = validation.handle(handle)
    email = validation.email(email)
    name = validation.display_name(name)
    with app.uow() as uow:
        organization = lookup.get_org(uow.session, org)
        clash = uow.session.scalars(
            select(User).where(
                User.organization_id == organization.id,
                (User.handle == handle) | (User.email == email),
            )
        ).first()
        if clash is not None:
            what = f"handle {handle}" if clash.handle == handle else f"email {email}"
            raise Conflict(f"a user with {what} already exists in organization {organization.slug}")
        user = User(
            uid=str(uuid.uuid4()),
            organization_id=organization.id,
            handle=handle,
            email=email,
            display_name=name,
            is_admin=admin,
            created_at=app.now(),
        )
        uow.session.add(user)
        audit.record(
            uow.session,
            app,
            "user.add",
            org=organization.slug,
            user=handle,
            details={"email": email, "admin": admin},
        )
        try:
            uow.commit()
        except IntegrityError:
            raise Conflict(
                f"user {handle} or email {email} already exists in organization {organization.slug}"
            ) from None
        return _info(organization.slug, user)


# --- status ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserStatus:
    org: str
    user: str
    email: str
    name: str
    admin: bool
    created_at: datetime
    mfa: str  # active | pending | none
    mfa_key_active: bool | None  # ciphertext under the active key (None: no secret)
    key_id: str | None
    algorithm: str | None
    digits: int | None
    period: int | None
    enrolled_at: datetime | None
    last_used_at: datetime | None
    failed_attempts: int
    last_failed_at: datetime | None
    locked: bool
    remember_tokens: int
    open_links: int


def user_status(app: App, org: str, user_ref: str) -> UserStatus:
    with app.uow() as uow:
        organization, user = lookup.get_org_user(uow.session, org, user_ref)
        lookup.check_user_text(organization.slug, user.handle, user.email, user.display_name)
        now = app.now()
        with lookup.reading(f"the user {lookup.who(organization, user)}", secret=True):
            secret = uow.session.get(MfaSecret, user.id)
        remember = (
            uow.session.scalar(
                select(func.count())
                .select_from(RememberToken)
                .where(RememberToken.user_id == user.id, remember_tokens.live(app, now))
            )
            or 0
        )
        links = (
            uow.session.scalar(
                select(func.count())
                .select_from(ActionToken)
                .where(
                    ActionToken.user_id == user.id,
                    ActionToken.used_at.is_(None),
                    ActionToken.expires_at > now,
                )
            )
            or 0
        )
        active_key_id = app.settings.secret_store.active_key_id
        return UserStatus(
            org=organization.slug,
            user=user.handle,
            email=user.email,
            name=user.display_name,
            admin=user.is_admin,
            created_at=user.created_at,
            mfa=secret.state if secret else "none",
            mfa_key_active=(secret.key_id == active_key_id) if secret else None,
            key_id=secret.key_id if secret else None,
            algorithm=secret.algorithm if secret else None,
            digits=secret.digits if secret else None,
            period=secret.period if secret else None,
            enrolled_at=secret.confirmed_at if secret else None,
            last_used_at=secret.last_used_at if secret else None,
            failed_attempts=secret.failed_attempts if secret else 0,
            last_failed_at=secret.last_failed_at if secret else None,
            locked=bool(secret.locked) if secret else False,
            remember_tokens=int(remember),
            open_links=int(links),
        )
