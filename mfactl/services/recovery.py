"""Recovery codes: single-use codes that stand in for a TOTP code when the phone is lost.

A set of ``userLogin.mfa.recoveryCodes.count`` codes is made when MFA is confirmed (through
``mfactl.api`` or the setup page) or by ``user recovery-codes generate``, and shown once. Each
code is 12 characters from ``ALPHABET`` (31 symbols without look-alikes: 59 bits from
``secrets``), written ``xxxx-xxxx-xxxx`` and accepted however it is typed (case, spaces and
dashes are ignored).

Only a keyed hash of each code is stored: HMAC-SHA256 under a key derived from the secret store
(as for links and remember-me tokens), of the user's uid and the code, so a copy of the
database yields no code and a row written into it by hand works for nobody. Not a slow KDF: a
code carries 59 random bits, so there is nothing to stretch, the key is not in the database,
and a cheap hash keeps a storm of guesses cheap to refuse.

A use is decided under the user's lock, in django-otp's order (lock, shape, throttle, compare):
the code is accepted by one conditional UPDATE (``… WHERE used_at IS NULL``), so a code works
once even when two uses race; a wrong (or used) code is counted in the user's throttle like a
wrong TOTP code; a malformed one is neither compared nor counted. A use writes the audit event
``mfa.recovery_code_used`` (with how many remain) and queues an email to the user.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, delete, func, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from mfactl.app import App
from mfactl.db import driver
from mfactl.db.models import MfaSecret, RecoveryCode, User
from mfactl.errors import Conflict
from mfactl.services import audit, lookup, throttle

if TYPE_CHECKING:
    from mfactl.services.verification import VerifyResult

PURPOSE = "recovery-code"  # its own derived key: a recovery code's hash is no link's hash
ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"  # no 0/o, 1/i/l look-alikes
GROUPS, GROUP_LENGTH = 3, 4
LENGTH = GROUPS * GROUP_LENGTH
LOW = 2  # "down to their last codes": login_requirement and --recovery-codes-low say so
_IGNORED = str.maketrans("", "", " -\t")
_MAX_TYPED = 64  # longer than any way of typing a code


def new_code() -> str:
    """A fresh code, ``xxxx-xxxx-xxxx``."""
    raw = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    return "-".join(raw[i : i + GROUP_LENGTH] for i in range(0, LENGTH, GROUP_LENGTH))


def normalized(code: str) -> str | None:
    """The code as stored (lower case, no spaces or dashes), or None when it cannot be one."""
    if len(code) > _MAX_TYPED:
        return None
    cleaned = code.translate(_IGNORED).lower()
    if len(cleaned) != LENGTH or any(c not in ALPHABET for c in cleaned):
        return None
    return cleaned


def code_hashes(app: App, uid: str, code: str) -> tuple[str, ...]:
    """The keyed hashes a stored code of user ``uid`` may hold: under the active key, then the
    rolling one. The uid is hashed with the code, so a row moved onto another user is no code
    of theirs."""
    return app.secrets.keyed_hashes(PURPOSE, f"{uid}:{code}")


def remaining_sql(user_id: Any) -> ColumnElement[Any]:
    """The user's unused codes, as a column: NULL when the user has no set at all."""
    return (
        select(func.sum(case((RecoveryCode.used_at.is_(None), 1), else_=0)))
        .where(RecoveryCode.user_id == user_id)
        .scalar_subquery()
    )


def is_low(remaining: int | None) -> bool:
    """The rule of "down to their last codes" (none at all counts as low)."""
    return remaining is None or remaining <= LOW


def enabled(app: App) -> bool:
    return app.settings.user_login.mfa.recovery_codes.count > 0


def make_set(session: Session, app: App, user_id: int, uid: str, now: datetime) -> list[str]:
    """Replace the user's codes with a new set, in the caller's transaction; the codes, to show
    once (only their hashes are stored)."""
    session.execute(
        delete(RecoveryCode)
        .where(RecoveryCode.user_id == user_id)
        .execution_options(synchronize_session=False)
    )
    codes: list[str] = []
    while len(codes) < app.settings.user_login.mfa.recovery_codes.count:
        code = new_code()
        if code not in codes:
            codes.append(code)
    rows = [
        {
            "user_id": user_id,
            "code_hash": code_hashes(app, uid, normalized(code) or "")[0],
            "created_at": now,
            "used_at": None,
        }
        for code in codes
    ]
    session.execute(insert(RecoveryCode), rows)
    return codes


def remove(session: Session, user_ids: Sequence[int]) -> int:
    """Delete the users' codes (a reset), in the caller's transaction; how many went."""
    removed = session.execute(
        delete(RecoveryCode)
        .where(RecoveryCode.user_id.in_(user_ids))
        .execution_options(synchronize_session=False)
    )
    return int(removed.rowcount)  # type: ignore[attr-defined]


# --- administering -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratedCodes:
    org: str
    user: str
    codes: tuple[str, ...]  # shown once; never stored, logged or audited
    created_at: datetime

    def to_json(self) -> dict[str, object]:
        """`user recovery-codes generate --json`."""
        return {
            "org": self.org,
            "user": self.user,
            "codes": list(self.codes),
            "created_at": _iso(self.created_at),
        }


@dataclass(frozen=True)
class CodesStatus:
    org: str
    user: str
    remaining: int
    created_at: datetime | None  # of the current set; None without one

    def to_json(self) -> dict[str, object]:
        """`user recovery-codes status --json`."""
        return {
            "org": self.org,
            "user": self.user,
            "remaining": self.remaining,
            "created_at": _iso(self.created_at),
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(session: Session, user_id: int) -> tuple[int, datetime | None]:
    remaining, created_at = session.execute(
        select(
            func.sum(case((RecoveryCode.used_at.is_(None), 1), else_=0)),
            func.max(RecoveryCode.created_at),
        ).where(RecoveryCode.user_id == user_id)
    ).one()
    return int(remaining or 0), created_at


def status(app: App, org: str, user_ref: str) -> CodesStatus:
    """How many unused codes the user has, and when their set was made (never the codes)."""
    with app.uow() as uow:
        organization, user = lookup.get_org_user(uow.session, org, user_ref)
        with lookup.reading(f"the user {lookup.who(organization, user)}"):
            remaining, created_at = _status(uow.session, user.id)
        return CodesStatus(organization.slug, user.handle, remaining, created_at)


def generate(app: App, org: str, user_ref: str) -> GeneratedCodes:
    """A new set for a user whose MFA is active, replacing any earlier set, audited."""
    with app.uow() as uow:
        organization, user = lookup.get_org_user(uow.session, org, user_ref)
        who = lookup.who(organization, user)
        if not enabled(app):
            raise Conflict(
                "recovery codes are turned off (userLogin.mfa.recoveryCodes.count is 0)",
                hint="set userLogin.mfa.recoveryCodes.count in values.yaml",
            )
        lookup.lock_users(uow.session, [user.id])
        state = uow.session.scalar(select(MfaSecret.state).where(MfaSecret.user_id == user.id))
        if state != "active":
            raise Conflict(
                f"MFA is not active for {who}: recovery codes are for a user who has it",
                hint=f"enroll first: mfactl user enable --org {organization.slug} "
                f"--user {user.handle}",
            )
        replaced, _ = _status(uow.session, user.id)
        now = app.now()
        codes = make_set(uow.session, app, user.id, user.uid, now)
        audit.record(
            uow.session,
            app,
            "mfa.recovery_codes_generate",
            org=organization.slug,
            user=user.handle,
            details={"count": len(codes), "replaced_unused": replaced},  # never the codes
        )
        uow.commit()
        return GeneratedCodes(organization.slug, user.handle, tuple(codes), now)


def revoke(app: App, org: str, user_ref: str) -> int:
    """Remove the user's codes, audited; how many unused ones were removed."""
    with app.uow() as uow:
        organization, user = lookup.get_org_user(uow.session, org, user_ref)
        lookup.lock_users(uow.session, [user.id])
        unused, _ = _status(uow.session, user.id)
        remove(uow.session, [user.id])
        audit.record(
            uow.session,
            app,
            "mfa.recovery_codes_revoke",
            org=organization.slug,
            user=user.handle,
            details={"revoked_unused": unused},
        )
        uow.commit()
        return unused


# --- using a code (the login path) ---------------------------------------------------------------

_READ = lookup.user_with_secret(lookup.SECRETS.c.state, lookup.SECRETS.c.locked)


def use(app: App, org: str, user_ref: str, code: str) -> VerifyResult:
    """Log in with a recovery code instead of a TOTP code: ok (the code is used up), wrong
    (counted in the throttle), throttled, locked, not_enrolled or malformed (not counted).

    One read without the lock answers a user who cannot use a code at all; the rest is decided
    under the user's lock, in one transaction with its audit event and email."""
    # here, not at the top: `users list` and the policy use this module's SQL rules, and must
    # not load pyotp, Jinja2 and cryptography for them
    from mfactl.services.verification import VerifyResult

    app.check_schema()
    typed = normalized(code)
    statement, params = lookup.bind_user(_READ, org, user_ref)
    with driver.borrowed(app.engine) as connection:
        row = connection.first(statement, params)
    if row is not None and isinstance(row.state, str | None):  # else: the unit of work names it
        if row.state != "active":
            return VerifyResult("not_enrolled")
        if row.locked:
            return VerifyResult("locked")
        if typed is None:
            return VerifyResult("malformed")
    with app.uow() as uow:
        result = _use(uow.session, app, org, user_ref, typed)
        uow.commit()
        return result


def _use(session: Session, app: App, org: str, user_ref: str, typed: str | None) -> VerifyResult:
    from mfactl.services.verification import VerifyResult

    organization, user = lookup.get_org_user(session, org, user_ref)
    lookup.lock_users(session, [user.id])
    now = app.now()
    with lookup.reading(f"the user {lookup.who(organization, user)}", secret=True):
        secret = session.execute(
            select(
                MfaSecret.state,
                MfaSecret.locked,
                MfaSecret.failed_attempts,
                MfaSecret.last_failed_at,
                throttle.failures_today(user.id, now),
            ).where(MfaSecret.user_id == user.id)
        ).one_or_none()
    if secret is None or secret.state != "active":
        return VerifyResult("not_enrolled")
    if secret.locked:
        return VerifyResult("locked")
    if typed is None:
        return VerifyResult("malformed")  # it can never match: neither compared nor counted
    failures = throttle.Failures(
        secret.failed_attempts, secret.last_failed_at, secret.failures_today
    )
    settings = app.settings.user_login.mfa.throttle
    wait = throttle.wait_seconds(session, settings, user.id, failures, now)
    if wait:
        return VerifyResult("throttled", retry_after_seconds=wait)
    # the code is used up by this one statement, or by none: `used_at IS NULL` is the rule that
    # a code works once, kept in the statement itself
    accepted = session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash.in_(code_hashes(app, user.uid, typed)),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not accepted:
        counted = throttle.count_failure(
            session, app, user.id, organization.slug, user.handle, "active"
        )
        if counted is None:
            return VerifyResult("not_enrolled")
        return VerifyResult("wrong", retry_after_seconds=counted.retry_after_seconds or None)
    # a right code clears the failures in a row, as a right TOTP code does (not the day's budget)
    session.execute(
        update(MfaSecret)
        .where(MfaSecret.user_id == user.id)
        .values(failed_attempts=0, last_failed_at=None)
        .execution_options(synchronize_session=False)
    )
    remaining, _ = _status(session, user.id)
    audit.record(
        session,
        app,
        "mfa.recovery_code_used",
        org=organization.slug,
        user=user.handle,
        details={"remaining": remaining},  # never the code
    )
    if user.email:
        _queue_notice(session, app, organization.slug, organization.name, user, remaining, now)
    return VerifyResult("ok", recovery_codes_left=remaining)


def _queue_notice(
    session: Session,
    app: App,
    org: str,
    org_name: str,
    user: User,
    remaining: int,
    now: datetime,
) -> None:
    """The email "A recovery code was used for <organization>", queued with the use."""
    from mfactl.services import outbox

    mail = outbox.NewMail(
        user_id=user.id,
        recipient=user.email,
        kind="recovery_used",
        context={
            "org": org,
            "org_name": org_name,
            "user": user.handle,
            "name": user.display_name or user.handle,
            "remaining": remaining,
            "used_at": now.strftime("%Y-%m-%d %H:%M UTC"),
            "issuer": app.settings.user_login.mfa.issuer,
        },
    )
    outbox.enqueue(session, app, [mail])
