"""Verifying a TOTP code: throttle, constant-time compare, replay refusal, atomic bookkeeping.

The order is django-otp's: throttle check, compare, replay check, then reset or increment the
failure count. Attempts on one user take turns under the user's row lock (``lookup.lock_users``),
as do resets and enrollments, so each reads what the previous one committed. Acceptance is one
conditional UPDATE (``… WHERE last_used_step < :step``), so two concurrent uses of one code give
exactly one success even without it; the ciphertext is not part of the condition, because an
online ``keys migrate`` re-encrypts the same secret meanwhile; failures are counted in SQL
(``failed_attempts = failed_attempts + 1``), never read-modify-written in Python. The bounds on
wrong codes (back-off, lock, the day's budget) are ``throttle``'s, shared with enrollment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mfactl import totp
from mfactl.app import App
from mfactl.db.models import MfaSecret, Organization, User
from mfactl.errors import Conflict, DamagedSecret
from mfactl.services import audit, lookup, throttle

RESULTS = ("ok", "wrong", "replayed", "throttled", "locked", "not_enrolled", "malformed")


@dataclass(frozen=True)
class VerifyResult:
    result: str  # one of RESULTS
    drift_steps: int | None = None  # wrong, but valid this many steps away (with explain=True)
    retry_after_seconds: int | None = None  # throttled (or wrong): when the next try counts
    # the secret's own period, which turns drift steps into seconds (not part of the JSON)
    period: int | None = field(default=None, compare=False)
    # the user's code length, which a malformed code missed (not part of the JSON either)
    digits: int | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        return self.result == "ok"

    @property
    def drift_hint(self) -> str:
        """``""``, or how far off the device clock is (see ``totp.drift_hint``)."""
        return totp.drift_hint(self.drift_steps, self.period) if self.period else ""

    def to_json(self) -> dict[str, object]:
        """`user verify --json`: {"result", "drift_steps", "retry_after_seconds"}."""
        return {
            "result": self.result,
            "drift_steps": self.drift_steps,
            "retry_after_seconds": self.retry_after_seconds,
        }


_SECRET_COLUMNS = (
    MfaSecret.state,
    MfaSecret.ciphertext,
    MfaSecret.algorithm,
    MfaSecret.digits,
    MfaSecret.period,
    MfaSecret.last_used_step,
    MfaSecret.failed_attempts,
    MfaSecret.last_failed_at,
    MfaSecret.locked,
)


@dataclass(frozen=True)
class Target:
    """The user a code is for, as far as verification needs to know."""

    user_id: int
    uid: str
    org: str
    handle: str


def _locked_secret(session: Session, user_id: int, now: datetime) -> Any:
    """The user's secret row and failures of the day, read under the user's lock: attempts on
    one user take turns, so each sees what the previous one wrote (its failures, its accepted
    step) and none compares a code against a secret that a reset or re-enrollment has replaced
    meanwhile."""
    lookup.lock_users(session, [user_id])
    return session.execute(
        select(*_SECRET_COLUMNS, throttle.failures_today(user_id, now)).where(
            MfaSecret.user_id == user_id
        )
    ).one_or_none()


def _check(
    session: Session, app: App, target: Target, row: Any, code: str, explain: bool
) -> VerifyResult:
    """The order of django-otp: throttle, compare, replay, then accept or count the failure."""
    if row is None or row.state != "active":
        return VerifyResult("not_enrolled")
    if row.locked:
        return VerifyResult("locked")
    who = f"{target.org}/{target.handle}"
    try:
        params = totp.stored_params(row.algorithm, row.digits, row.period)
    except ValueError as exc:
        raise DamagedSecret(f"the MFA secret of the user {who} is damaged: {exc}") from None
    if not totp.looks_like_a_code(code, params.digits):
        # it can never match: neither compared nor counted, so it cannot start a back-off, use
        # up the day's budget or lock anybody out
        return VerifyResult("malformed", digits=row.digits)
    now = app.now()
    failures = throttle.Failures(row.failed_attempts, row.last_failed_at, row.failures_today)
    settings = app.settings.user_login.mfa.throttle
    wait = throttle.wait_seconds(session, settings, target.user_id, failures, now)
    if wait:
        return VerifyResult("throttled", retry_after_seconds=wait)
    secret = app.secrets.open_secret(target.uid, row.ciphertext, who).plaintext
    found = totp.match(
        secret,
        code,
        now,
        params,
        app.settings.user_login.mfa.valid_window,
        look_for_drift=explain,
    )
    if found.step is None:
        return _count_failure(session, app, target, found.drift_steps, params.period)
    if found.step <= row.last_used_step:
        return VerifyResult("replayed")
    # the user's lock already orders attempts; the condition keeps the rule in the statement
    accepted = session.execute(
        update(MfaSecret)
        .where(
            MfaSecret.user_id == target.user_id,
            MfaSecret.state == "active",
            MfaSecret.locked.is_(False),
            MfaSecret.last_used_step < found.step,
        )
        .values(last_used_step=found.step, last_used_at=now, failed_attempts=0, last_failed_at=None)
        .execution_options(synchronize_session=False)
    )
    if accepted.rowcount == 1:  # type: ignore[attr-defined]
        return VerifyResult("ok")
    return VerifyResult("replayed")  # a concurrent use of this code (or a later one) won


def _count_failure(
    session: Session, app: App, target: Target, drift: int | None, period: int
) -> VerifyResult:
    counted = throttle.count_failure(
        session, app, target.user_id, target.org, target.handle, "active"
    )
    if counted is None:
        return VerifyResult("not_enrolled")
    return VerifyResult(
        "wrong",
        drift_steps=drift,
        retry_after_seconds=counted.retry_after_seconds or None,
        period=period if drift else None,
    )


def verify(
    app: App,
    org: str,
    user_ref: str,
    code: str,
    *,
    explain: bool = False,
    audited: bool = False,
) -> VerifyResult:
    """Verify a code in its own unit of work; ``audited`` records an mfa.verify event too."""
    with app.uow() as uow:
        # one query for the org and the user: this is a login server's hot path
        row = uow.session.execute(
            select(User.id, User.uid, Organization.slug, User.handle)
            .join(Organization, Organization.id == User.organization_id)
            .where(lookup.matches_org(org), lookup.matches_user(user_ref))
        ).first()
        if row is None:
            lookup.get_org_user(uow.session, org, user_ref)  # raises the right NotFound
            raise AssertionError("unreachable")
        target = Target(row.id, row.uid, row.slug, row.handle)
        with lookup.reading(f"the user {target.org}/{target.handle}", secret=True):
            secret = _locked_secret(uow.session, target.user_id, app.now())
        result = _check(uow.session, app, target, secret, code, explain)
        if audited:
            audit.record(
                uow.session,
                app,
                "mfa.verify",
                org=target.org,
                user=target.handle,
                outcome=result.result,
                details={"drift_steps": result.drift_steps} if result.drift_steps else {},
            )
        uow.commit()
        return result


@dataclass(frozen=True)
class Unlocked:
    org: str
    user: str
    was_locked: bool
    failed_attempts: int


def unlock(app: App, org: str, user_ref: str) -> Unlocked:
    """Clear the failure count, the lock and the day's budget, with an audit event.

    The budget too: an administrator who unlocks a user means "let them in now", and a user who
    locked themselves out would otherwise stay throttled for up to a day."""
    with app.uow() as uow:
        organization, user = lookup.get_org_user(uow.session, org, user_ref)
        lookup.lock_users(uow.session, [user.id])
        secret = uow.session.get(MfaSecret, user.id, populate_existing=True)
        if secret is None:
            raise Conflict(f"{lookup.who(organization, user)} has no MFA secret to unlock")
        before = Unlocked(
            organization.slug, user.handle, bool(secret.locked), secret.failed_attempts
        )
        secret.locked = False
        secret.failed_attempts = 0
        secret.last_failed_at = None
        today = throttle.clear_budget(uow.session, [user.id])
        audit.record(
            uow.session,
            app,
            "mfa.unlock",
            org=organization.slug,
            user=user.handle,
            details={
                "was_locked": before.was_locked,
                "failed_attempts": before.failed_attempts,
                "failures_today": today,
            },
        )
        uow.commit()
        return before
