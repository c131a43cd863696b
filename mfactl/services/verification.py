"""Verifying a TOTP code: throttle, constant-time compare, replay refusal, atomic bookkeeping.

The order is django-otp's: throttle check, compare, replay check, then reset or increment the
failure count. Attempts on one user take turns under the user's row lock (``lookup.lock_users``),
as do resets and enrollments, so each reads what the previous one committed. Acceptance is one
conditional UPDATE (``… WHERE last_used_step < :step``), so two concurrent uses of one code give
exactly one success even without it; the ciphertext is not part of the condition, because an
online ``keys migrate`` re-encrypts the same secret meanwhile; failures are counted in SQL
(``failed_attempts = failed_attempts + 1``), never read-modify-written in Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from mfactl import totp
from mfactl.app import App
from mfactl.config import Throttle
from mfactl.db.models import MfaSecret, Organization, User
from mfactl.errors import Conflict
from mfactl.services import audit, lookup

RESULTS = ("ok", "wrong", "replayed", "throttled", "locked", "not_enrolled", "malformed")


@dataclass(frozen=True)
class VerifyResult:
    result: str  # one of RESULTS
    drift_steps: int | None = None  # wrong, but valid this many steps away (with explain=True)
    retry_after_seconds: int | None = None  # throttled (or wrong): when the next try counts
    # the secret's own period, which turns drift steps into seconds (not part of the JSON)
    period: int | None = field(default=None, compare=False)

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


def backoff_seconds(throttle: Throttle, failures: int) -> int:
    """base·2^(n-1), capped at maxDelaySeconds; 0 with no failures or a zero base."""
    if failures <= 0 or throttle.base_delay_seconds <= 0:
        return 0
    exponent = min(failures - 1, 40)  # 2^40 s is past any cap; keeps the number small
    return int(min(throttle.base_delay_seconds * 2**exponent, throttle.max_delay_seconds))


def retry_after(
    throttle: Throttle, failures: int, last_failed_at: datetime | None, now: datetime
) -> int:
    delay = backoff_seconds(throttle, failures)
    if not delay or last_failed_at is None:
        return 0
    remaining = (last_failed_at + timedelta(seconds=delay) - now).total_seconds()
    return max(0, math.ceil(remaining))


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


def _locked_secret(session: Session, user_id: int) -> Any:
    """The user's secret row, read under the user's lock: attempts on one user take turns, so
    each sees what the previous one wrote (its failures, its accepted step) and none compares a
    code against a secret that a reset or re-enrollment has replaced meanwhile."""
    lookup.lock_users(session, [user_id])
    return session.execute(
        select(*_SECRET_COLUMNS).where(MfaSecret.user_id == user_id)
    ).one_or_none()


def _check(
    session: Session, app: App, target: Target, row: Any, code: str, explain: bool
) -> VerifyResult:
    """The order of django-otp: throttle, compare, replay, then accept or count the failure."""
    if row is None or row.state != "active":
        return VerifyResult("not_enrolled")
    if row.locked:
        return VerifyResult("locked")
    if not looks_like_a_code(code, row.digits):
        # a slip of the keyboard (letters, empty, too short or long) can never match: it is
        # neither compared nor counted, so it cannot start a back-off or lock anybody out
        return VerifyResult("malformed")
    now = app.now()
    throttle = app.settings.user_login.mfa.throttle
    wait = retry_after(throttle, row.failed_attempts, row.last_failed_at, now)
    if wait:
        return VerifyResult("throttled", retry_after_seconds=wait)
    who = f"{target.org}/{target.handle}"
    secret = app.secrets.open_secret(target.uid, row.ciphertext, who).plaintext
    params = totp.TotpParams(row.algorithm, row.digits, row.period)
    found = totp.match(
        secret,
        code,
        now,
        params,
        app.settings.user_login.mfa.valid_window,
        look_for_drift=explain,
    )
    if found.step is None:
        return count_failure(session, app, target, found.drift_steps, row.period, now)
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


def looks_like_a_code(code: str, digits: int) -> bool:
    code = code.strip().replace(" ", "")  # as totp.match reads it
    return len(code) == digits and code.isascii() and code.isdigit()


def count_failure(
    session: Session,
    app: App,
    target: Target,
    drift: int | None,
    period: int,
    now: datetime,
    state: str = "active",
) -> VerifyResult:
    """Count a wrong code against the user's secret (in ``state``), locking it at the limit.

    The setup page counts wrong codes for a pending secret too: one throttle per user.
    """
    throttle = app.settings.user_login.mfa.throttle
    lock_after = throttle.lock_after_failures
    locks = (
        case((MfaSecret.failed_attempts + 1 >= lock_after, True), else_=MfaSecret.locked)
        if lock_after > 0
        else MfaSecret.locked
    )
    # MariaDB evaluates SET left to right with the new values: set `locked` first so every
    # engine sees the old failed_attempts in both expressions.
    session.execute(
        update(MfaSecret)
        .where(MfaSecret.user_id == target.user_id, MfaSecret.state == state)
        .ordered_values(
            (MfaSecret.locked, locks),
            (MfaSecret.failed_attempts, MfaSecret.failed_attempts + 1),
            (MfaSecret.last_failed_at, now),
        )
        .execution_options(synchronize_session=False)
    )
    counted = session.execute(
        select(MfaSecret.failed_attempts, MfaSecret.locked).where(
            MfaSecret.user_id == target.user_id
        )
    ).one_or_none()
    if counted is None:  # reset meanwhile (only possible without the user's lock)
        return VerifyResult("not_enrolled")
    failures, locked = counted
    if locked and lock_after > 0 and failures == lock_after:
        audit.record(
            session,
            app,
            "mfa.lock",
            org=target.org,
            user=target.handle,
            outcome="locked",
            details={"failed_attempts": failures},
        )
    retry = backoff_seconds(throttle, failures)
    return VerifyResult(
        "wrong",
        drift_steps=drift,
        retry_after_seconds=retry or None,
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
        secret = _locked_secret(uow.session, target.user_id)
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
    """Clear the failure count and the lock, with an audit event."""
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
        audit.record(
            uow.session,
            app,
            "mfa.unlock",
            org=organization.slug,
            user=user.handle,
            details={"was_locked": before.was_locked, "failed_attempts": before.failed_attempts},
        )
        uow.commit()
        return before
