"""TOTP enrollment: a pending secret and its otpauth URI, then activation by a correct code.

``begin_enrollment`` and ``confirm_enrollment`` work inside the caller's session: they neither
commit nor write audit events, so a caller (``user enable``, an enrollment link) can do both in
its own unit of work. ``enable_user`` and ``confirm_user`` are the complete use cases.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mfactl import totp
from mfactl.app import App
from mfactl.db.models import MfaSecret, Organization, User
from mfactl.errors import Conflict, WrongCode
from mfactl.services import audit, lookup, recovery, throttle


def totp_params(app: App) -> totp.TotpParams:
    """The algorithm, digits and period new secrets get, from values.yaml."""
    mfa = app.settings.user_login.mfa
    return totp.TotpParams(mfa.algorithm, mfa.digits, mfa.period)


def secret_params(secret: MfaSecret) -> totp.TotpParams:
    """The parameters a stored secret was enrolled with (they outlive a change of values.yaml)."""
    return totp.TotpParams(secret.algorithm, secret.digits, secret.period)


def require_mfa_enabled(app: App) -> None:
    if not app.settings.user_login.mfa.enabled:
        raise Conflict(
            "MFA is disabled by policy (userLogin.mfa.enabled is false), so nobody can enroll",
            hint="set userLogin.mfa.enabled: true in values.yaml",
        )


def begin_enrollment(session: Session, app: App, org: Organization, user: User) -> str:
    """Create (or replace a pending) secret for the user; return its otpauth URI.

    Raises Conflict when MFA is already active or MFA is disabled by policy.
    """
    require_mfa_enabled(app)
    lookup.lock_users(session, [user.id])
    existing = session.get(MfaSecret, user.id, populate_existing=True)
    if existing is not None and existing.state == "active":
        raise Conflict(
            f"MFA is already active for {lookup.who(org, user)}",
            hint=f"reset it first: mfactl user reset --org {org.slug} --user {user.handle}",
        )
    params = totp_params(app)
    secret = totp.new_secret()
    sealed = app.secrets.seal_secret(user.uid, secret)
    now = app.now()
    if existing is None:
        session.add(
            MfaSecret(
                user_id=user.id,
                state="pending",
                ciphertext=sealed.ciphertext,
                key_id=sealed.key_id,
                algorithm=params.algorithm,
                digits=params.digits,
                period=params.period,
                created_at=now,
                last_used_step=-1,
                failed_attempts=0,
                locked=False,
            )
        )
    else:
        existing.ciphertext = sealed.ciphertext
        existing.key_id = sealed.key_id
        existing.algorithm = params.algorithm
        existing.digits = params.digits
        existing.period = params.period
        existing.created_at = now
        existing.confirmed_at = None
        existing.last_used_step = -1
        existing.last_used_at = None
        existing.failed_attempts = 0
        existing.last_failed_at = None
        existing.locked = False
    session.flush()
    return totp.provisioning_uri(secret, params, app.settings.user_login.mfa.issuer, user.handle)


def confirm_enrollment(
    session: Session, app: App, org: Organization, user: User, code: str
) -> None:
    """Activate the pending secret when the code is right (its step becomes last_used_step).

    The user's throttle applies as at login: a wrong code is counted (back-off, lock, the day's
    budget) and raises WrongCode, which the caller commits before letting it go, or the count
    would roll back with the confirmation. Raises Conflict when there is no pending secret, the
    user is locked or throttled.
    """
    who = lookup.who(org, user)
    lookup.lock_users(session, [user.id])
    pending = session.get(MfaSecret, user.id, populate_existing=True)
    if pending is None:
        raise Conflict(
            f"{who} has no pending MFA enrollment",
            hint=f"start one: mfactl user enable --org {org.slug} --user {user.handle}",
        )
    if pending.state != "pending":
        raise Conflict(f"MFA is already active for {who}")
    if pending.locked:
        raise Conflict(
            f"MFA of {who} is locked after too many wrong codes",
            hint=f"an administrator can clear it: mfactl user unlock --org {org.slug} "
            f"--user {user.handle}",
        )
    if not totp.looks_like_a_code(code, pending.digits):
        raise Conflict(f"the code is wrong for {who}")  # it can never match: not counted
    now = app.now()
    today = session.scalar(select(throttle.failures_today(user.id, now)))
    failures = throttle.Failures(pending.failed_attempts, pending.last_failed_at, today or 0)
    settings = app.settings.user_login.mfa.throttle
    wait = throttle.wait_seconds(session, settings, user.id, failures, now)
    if wait:
        raise Conflict(f"too many wrong codes for {who}; the next one counts in {wait} s")
    opened = app.secrets.open_secret(user.uid, pending.ciphertext, who)
    found = totp.match(
        opened.plaintext,
        code,
        now,
        secret_params(pending),
        app.settings.user_login.mfa.valid_window,
        look_for_drift=True,
    )
    if found.step is None:
        hint = totp.drift_hint(found.drift_steps, pending.period)
        throttle.count_failure(session, app, user.id, org.slug, user.handle, "pending")
        session.expire(pending)  # counted in SQL: what the object holds is out of date
        raise WrongCode(f"the code is wrong for {who}{hint}")
    activate_pending(session, who, pending, found.step, now)


def activate_pending(
    session: Session, who: str, pending: MfaSecret, step: int, now: datetime
) -> None:
    """Make the checked pending secret active, ``step`` its last accepted one."""
    # On the very enrollment that was checked (the user's lock already keeps a re-enrollment
    # out; not the ciphertext, which an online `keys migrate` may re-encrypt meanwhile).
    activated = session.execute(
        update(MfaSecret)
        .where(
            MfaSecret.user_id == pending.user_id,
            MfaSecret.state == "pending",
            MfaSecret.created_at == pending.created_at,
        )
        .values(
            state="active",
            confirmed_at=now,
            last_used_step=step,
            last_used_at=now,
            failed_attempts=0,
            last_failed_at=None,
            locked=False,
        )
        .execution_options(synchronize_session=False)
    )
    if activated.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(f"the pending MFA enrollment of {who} changed meanwhile; start again")
    session.expire(pending)


# --- the use cases -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Enrollment:
    org: str
    user: str
    state: str  # pending | active
    otpauth_uri: str | None  # None when an existing pending secret was confirmed
    recovery_codes: tuple[str, ...] = ()  # a first set, made on confirmation when asked for


def enable_user(app: App, org: str, user_ref: str, *, keep_pending: bool = False) -> Enrollment:
    """Create (or replace) the user's pending secret, audited; the URI is for the user only.

    With ``keep_pending``, an existing pending secret is kept (the user may already have it in
    their app, about to confirm it) and the result carries no URI.
    """
    with app.uow() as uow:
        organization, user = lookup.get_org_user(uow.session, org, user_ref)
        who = lookup.who(organization, user)
        if keep_pending:
            lookup.lock_users(uow.session, [user.id])
            current = uow.session.get(MfaSecret, user.id)
            if current is not None and current.state == "pending":
                require_mfa_enabled(app)
                return Enrollment(organization.slug, user.handle, "pending", None)
            if current is None:  # a code for a secret not made yet can never be right
                raise Conflict(
                    f"{who} has no pending MFA enrollment for a code to confirm",
                    hint=f"start one with `mfactl user enable --org {organization.slug} "
                    f"--user {user.handle} --no-confirm`, then give the code the app shows",
                )
        try:
            uri = begin_enrollment(uow.session, app, organization, user)
            audit.record(
                uow.session,
                app,
                "mfa.enroll",
                org=organization.slug,
                user=user.handle,
                details={"state": "pending", "key_id": app.secrets.active_key_id},
            )
            uow.commit()
        except IntegrityError:  # two enrollments of one user raced; the other one won
            raise Conflict(f"another enrollment of {who} started meanwhile") from None
        return Enrollment(organization.slug, user.handle, "pending", uri)


def confirm_user(
    app: App, org: str, user_ref: str, code: str, *, recovery_codes: bool = False
) -> Enrollment:
    """Activate the user's pending secret with a code from their authenticator, audited; with
    ``recovery_codes`` (the login server's confirmation, which can show them to the user), a
    first set of recovery codes is made too when the feature is on."""
    with app.uow() as uow:
        organization, user = lookup.get_org_user(uow.session, org, user_ref)
        try:
            confirm_enrollment(uow.session, app, organization, user, code)
        except WrongCode:
            uow.commit()  # the failure counts, though nothing is confirmed
            raise
        codes = first_recovery_codes(uow.session, app, user) if recovery_codes else ()
        details = {"recovery_codes": len(codes)} if codes else {}
        audit.record(
            uow.session,
            app,
            "mfa.confirm",
            org=organization.slug,
            user=user.handle,
            details=details,
        )
        uow.commit()
        return Enrollment(organization.slug, user.handle, "active", None, codes)


def first_recovery_codes(session: Session, app: App, user: User) -> tuple[str, ...]:
    """The first set of recovery codes of a user whose MFA was just confirmed, in the caller's
    transaction; () when recovery codes are off (count 0)."""
    if not recovery.enabled(app):
        return ()
    return tuple(recovery.make_set(session, app, user.id, user.uid, app.now()))
