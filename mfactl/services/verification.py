"""Verifying a TOTP code: throttle, constant-time compare, replay refusal, atomic bookkeeping.

The order is django-otp's: throttle check, compare, replay check, then reset or increment the
failure count. A login's right code, for a user with no failures to weigh, is accepted without
the user's lock (``_without_lock``): one read, the crypto with no lock held, and one conditional
UPDATE that holds only if nothing it read has changed (the ciphertext too, so a reset, a new
enrollment or an online ``keys migrate`` in between sends the attempt down the locked path).
Everything else takes turns under the user's row lock (``lookup.lock_users``), as resets and
enrollments do, so each reads what the previous one committed: there acceptance is one
conditional UPDATE (``… WHERE last_used_step < :step``, no ciphertext, which a migration may
have re-sealed), so two concurrent uses of one code give exactly one success; failures are
counted in SQL (``failed_attempts = failed_attempts + 1``), never read-modify-written in
Python. The bounds on wrong codes (back-off, lock, the day's budget) are ``throttle``'s, shared
with enrollment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.orm import Session

from mfactl import totp
from mfactl.app import App
from mfactl.db import driver
from mfactl.db.models import MfaFailure, MfaSecret, Organization, User
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
    # a recovery code accepted: how many unused ones the user has left (not part of the JSON)
    recovery_codes_left: int | None = field(default=None, compare=False)

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


@dataclass(frozen=True)
class _Compared:
    """What the read without the lock found for a code: the sealed secret it compared with."""

    ciphertext: str
    found: totp.Match


def _check(
    session: Session,
    app: App,
    target: Target,
    row: Any,
    code: str,
    explain: bool,
    compared: _Compared | None = None,
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
    for column in ("last_used_step", "failed_attempts"):
        if type(getattr(row, column)) is not int:  # SQLite keeps any value in any column
            raise DamagedSecret(
                f"the MFA secret of the user {who} is damaged: its {column} is not a number"
            )
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
    if compared is not None and compared.ciphertext == row.ciphertext:
        found = compared.found  # the same secret and code: a login pays for one comparison
    else:
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


# --- the login path: read, compute outside any lock, then accept by compare-and-swap -------------

_FAILURES = cast(Table, MfaFailure.__table__)
_S = lookup.SECRETS.c
_READ = lookup.user_with_secret(
    lookup.USERS.c.uid,
    lookup.ORGANIZATIONS.c.slug,
    lookup.USERS.c.handle,
    _S.user_id,
    _S.state,
    _S.ciphertext,
    _S.algorithm,
    _S.digits,
    _S.period,
    _S.last_used_step,
    _S.failed_attempts,
    _S.locked,
    select(func.count())
    .where(_FAILURES.c.user_id == lookup.USERS.c.id, _FAILURES.c.at > bindparam("since"))
    .scalar_subquery()
    .label("failures_today"),
)
# accepted only if nothing that decided the answer changed since the read: the same sealed
# secret (not replaced by a reset or a new enrollment, nor re-sealed by keys migrate), still
# active and unlocked, no failure counted and no code accepted meanwhile
_ACCEPT = (
    update(lookup.SECRETS)
    .where(
        _S.user_id == bindparam("secret_of"),
        _S.ciphertext == bindparam("read_ciphertext"),
        _S.state == "active",
        _S.locked.is_(False),
        _S.failed_attempts == 0,
        _S.last_used_step == bindparam("read_step"),
    )
    .values(last_used_step=bindparam("step"), last_used_at=bindparam("used_at"))
)


def _without_lock(app: App, org: str, user_ref: str, code: str) -> VerifyResult | _Compared | None:
    """The answer for a user with no failures to weigh, without taking the user's lock: one read,
    the crypto and TOTP maths with no lock held, and for a right code one conditional UPDATE.
    Otherwise the locked path decides, from a fresh read: an unknown user (its NotFound), a
    throttle to weigh, a damaged row to name (None), a wrong code to count, or a change that came
    between the read and the UPDATE (what was compared, which it reuses for the same secret)."""
    now = app.now()
    statement, params = lookup.bind_user(_READ, org, user_ref)
    params["since"] = now - throttle.WINDOW
    with driver.borrowed(app.engine) as connection:
        row = connection.first(statement, params)
        if row is None or not _well_formed(row):
            return None
        answer = _compare(app, row, code, now)
        if not isinstance(answer, _Accept):
            return answer
        accepted = connection.write(_ACCEPT, answer.values)
    return VerifyResult("ok") if accepted == 1 else answer.compared


@dataclass(frozen=True)
class _Accept:
    """A right code, to be accepted if nothing changed since the read."""

    values: dict[str, Any]
    compared: _Compared


_TYPES = {
    "uid": str,
    "slug": str,
    "handle": str,
    "ciphertext": str,
    "algorithm": str,
    "digits": int,
    "period": int,
    "last_used_step": int,
    "failed_attempts": int,
    "failures_today": int,
}


def _well_formed(row: Any) -> bool:
    """Whether the row read holds what its columns should: anything else (a damaged row, a
    BLOB where text belongs) the locked path reads again and names."""
    if row.user_id is None:
        return True  # no secret: the NULLs of the outer join
    return all(isinstance(getattr(row, name), kind) for name, kind in _TYPES.items())


def _compare(
    app: App, row: Any, code: str, now: datetime
) -> VerifyResult | _Compared | _Accept | None:
    """What the read alone says of the code (see ``_without_lock``)."""
    if row.user_id is None or row.state != "active":
        return VerifyResult("not_enrolled")
    if row.locked:
        return VerifyResult("locked")
    limit = app.settings.user_login.mfa.throttle.max_failures_per_day
    if row.failed_attempts or row.failures_today >= limit:
        return None
    try:
        stored = totp.stored_params(row.algorithm, row.digits, row.period)
    except ValueError:
        return None
    if not totp.looks_like_a_code(code, stored.digits):
        return VerifyResult("malformed", digits=row.digits)
    who = f"{row.slug}/{row.handle}"
    secret = app.secrets.open_secret(row.uid, row.ciphertext, who).plaintext
    window = app.settings.user_login.mfa.valid_window
    found = totp.match(secret, code, now, stored, window)
    compared = _Compared(row.ciphertext, found)
    if found.step is None:
        return compared
    if found.step <= row.last_used_step:
        return VerifyResult("replayed")
    accept = {
        "secret_of": row.user_id,
        "read_ciphertext": row.ciphertext,
        "read_step": row.last_used_step,
        "step": found.step,
        "used_at": now,
    }
    return _Accept(accept, compared)


def verify(
    app: App,
    org: str,
    user_ref: str,
    code: str,
    *,
    explain: bool = False,
    audited: bool = False,
) -> VerifyResult:
    """Verify a code; ``audited`` records an mfa.verify event too, ``explain`` looks for the
    drift of a wrong code.

    A login (neither) is first answered without the user's lock (``_without_lock``); what that
    cannot answer is decided under the lock, in one unit of work, from a fresh read."""
    compared = None
    if not (explain or audited):
        app.check_schema()
        answer = _without_lock(app, org, user_ref, code)
        if isinstance(answer, VerifyResult):
            return answer
        compared = answer
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
        result = _check(uow.session, app, target, secret, code, explain, compared)
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
