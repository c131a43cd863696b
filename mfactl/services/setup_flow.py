"""The setup page's use cases: look at a link, open it for one browser, show the step, confirm.

A browser is known by a random secret in its session cookie; the database keeps only a keyed
hash of it (``held_by``), so a copy of the database cannot act as the browser. Opening a link
gives that browser alone a hold on it until ``held_until`` (``HOLD`` after opening): within the
hold a reload or a second tab shows the same step, and any other browser is refused. Once the
hold has run out, the link (while unused) can be opened again, with a new secret. All of it lives
in the database, and every key is derived from the secret store, so any replica can serve any
step.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from mfactl import totp
from mfactl.app import App
from mfactl.db.models import ActionToken, MfaSecret, Organization, User
from mfactl.errors import Conflict, Gone, NotFound
from mfactl.services import audit, links, lookup, throttle
from mfactl.services.enrollment import (
    activate_pending,
    begin_enrollment,
    first_recovery_codes,
    secret_params,
)

HOLD = timedelta(minutes=15)
SESSION_PURPOSE = "web-session"
CSRF_PURPOSE = "web-csrf"
ELSEWHERE = (
    "this link was opened in another browser; if that was not you, "
    "ask your administrator for a new link"
)
NO_FLOW = (
    "there is no MFA setup in progress in this browser; open the link from your email "
    "(if it no longer works, ask your administrator for a new one)"
)
HOLD_OVER = (
    "this setup page has expired; open the link from your email again to start over "
    "(if it no longer works, ask your administrator for a new one)"
)


def new_browser_secret() -> str:
    return secrets.token_urlsafe(32)


def csrf_token(app: App, browser_secret: str) -> str:
    """The CSRF token of a browser's session: a keyed hash of its secret, nothing stored."""
    return app.secrets.keyed_hashes(CSRF_PURPOSE, browser_secret)[0]


def csrf_ok(app: App, browser_secret: str, token: str) -> bool:
    expected = app.secrets.keyed_hashes(CSRF_PURPOSE, browser_secret)
    given = token.encode("ascii", "replace")
    return any(hmac.compare_digest(given, e.encode("ascii")) for e in expected)


@dataclass(frozen=True)
class Who:
    """Whom a page is about, as the page names them."""

    org: str
    org_name: str
    user: str
    user_name: str
    purpose: str  # reset | enroll
    issuer: str


@dataclass(frozen=True)
class LinkPage:
    who: Who
    held_here: bool  # this browser has opened it already: the step is where to go


@dataclass(frozen=True)
class StepPage:
    who: Who
    account: str
    secret: str  # shown to the holding browser only
    otpauth_uri: str
    digits: int
    held_until: datetime


@dataclass(frozen=True)
class DonePage:
    who: Who
    # the first recovery codes, on the answer to the right code only: shown once, never again
    recovery_codes: tuple[str, ...] = ()


@dataclass(frozen=True)
class CodeOutcome:
    result: str  # ok | wrong | malformed | throttled | locked
    retry_after_seconds: int | None = None
    drift_steps: int | None = None


def _who(app: App, link: ActionToken, org: Organization, user: User) -> Who:
    issuer = app.settings.user_login.mfa.issuer
    return Who(org.slug, org.name, user.handle, user.display_name, link.purpose, issuer)


def _holder(app: App, browser_secret: str | None) -> tuple[str, ...]:
    """The hashes the browser's hold may be stored under (active key first); () for none."""
    return app.secrets.keyed_hashes(SESSION_PURPOSE, browser_secret) if browser_secret else ()


def _held_elsewhere(
    held_by: str | None,
    held_until: datetime | None,
    opened_at: datetime | None,
    mine: tuple[str, ...],
    now: datetime,
) -> bool:
    """Does another browser hold the link (or the platform's own app, which opened it with
    ``links.open_link``)?"""
    if held_by is None:
        return opened_at is not None
    return held_by not in mine and held_until is not None and held_until > now


def _held_here(
    held_by: str | None, held_until: datetime | None, mine: tuple[str, ...], now: datetime
) -> bool:
    return held_by in mine and held_until is not None and held_until > now


# the link page is what scanners and previews fetch: one statement, built once (Core, no ORM)
_LOOK = (
    select(
        ActionToken.purpose,
        ActionToken.expires_at,
        ActionToken.used_at,
        ActionToken.opened_at,
        ActionToken.held_by,
        ActionToken.held_until,
        Organization.slug,
        Organization.name,
        User.handle,
        User.display_name,
        MfaSecret.state,
    )
    .join(User, User.id == ActionToken.user_id)
    .join(Organization, Organization.id == User.organization_id)
    .outerjoin(MfaSecret, MfaSecret.user_id == User.id)
    # the link's keyed hash under the active key, then the rolling one
    .where(ActionToken.token_hash.in_(bindparam("token_hashes", expanding=True)))
)


def org_label(app: App, org: str) -> str:
    """How a page about a link to ``org`` names it: the organization's name when the slug is
    one, else the slug as the link gave it. Reads only, and says nothing of users or tokens."""
    with app.uow() as uow:
        name = uow.session.scalars(select(Organization.name).where(lookup.matches_org(org))).first()
    return name if name is not None else org


def look_at_link(app: App, org: str, token: str, browser_secret: str | None) -> LinkPage:
    """What the link's page shows; reads only (mail scanners and previews fetch links)."""
    mine = _holder(app, browser_secret)
    cleaned = token.strip()
    slug = org.strip().lower()
    with app.uow() as uow:
        row = None
        if cleaned and len(cleaned) <= 200:  # longer is no link anybody was sent
            hashes = links.token_hashes(app, cleaned)
            found = uow.session.execute(_LOOK, {"token_hashes": list(hashes)})
            row = found.first()
        if row is None or row.slug != slug:
            raise NotFound(f"this link is not valid for organization {slug}")
    links.require_usable(row.used_at, row.expires_at, row.state, f"{row.slug}/{row.handle}", app)
    now = app.now()
    if _held_elsewhere(row.held_by, row.held_until, row.opened_at, mine, now):
        raise Conflict(ELSEWHERE)
    issuer = app.settings.user_login.mfa.issuer
    who = Who(row.slug, row.name, row.handle, row.display_name, row.purpose, issuer)
    return LinkPage(who, _held_here(row.held_by, row.held_until, mine, now))


def open_for_browser(app: App, org: str, token: str, browser_secret: str, client: str) -> None:
    """Open the link for this browser: a new pending secret, held by it for ``HOLD``.

    Opening again within the hold (a second tab, the button pressed twice) changes nothing.
    The hold is claimed by one conditional UPDATE, so of two browsers opening at once one wins.
    """
    mine = _holder(app, browser_secret)
    with app.uow() as uow:
        session = uow.session
        link, organization, user = links.checked_link(session, app, org, token)
        now = app.now()
        if _held_elsewhere(link.held_by, link.held_until, link.opened_at, mine, now):
            raise Conflict(ELSEWHERE)
        if _held_here(link.held_by, link.held_until, mine, now):
            return
        free = or_(ActionToken.held_by.is_(None), ActionToken.held_until <= now)
        claimed = session.execute(
            update(ActionToken)
            .where(
                ActionToken.id == link.id,
                ActionToken.used_at.is_(None),
                ActionToken.expires_at > now,
                or_(ActionToken.held_by.in_(mine), free),
            )
            .values(
                held_by=mine[0],
                held_until=now + HOLD,
                opened_at=func.coalesce(ActionToken.opened_at, now),
            )
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict(ELSEWHERE)
        # starting again makes a new secret, but not a fresh throttle: the failures of the
        # earlier hold still count
        before = session.get(MfaSecret, user.id, populate_existing=True)
        failures = (
            (before.failed_attempts, before.last_failed_at, before.locked) if before else None
        )
        begin_enrollment(session, app, organization, user)
        if failures is not None:
            pending = session.get(MfaSecret, user.id)
            assert pending is not None
            pending.failed_attempts, pending.last_failed_at, pending.locked = failures
        details = {"purpose": link.purpose, "client": client, "via": "setup page"}
        audit.record(
            session, app, "link.open", org=organization.slug, user=user.handle, details=details
        )
        uow.commit()


def _held_link(
    session: Session, app: App, mine: tuple[str, ...]
) -> tuple[ActionToken, Organization, User]:
    """The link this browser holds (its latest), or why there is no step to show."""
    if not mine:
        raise NotFound(NO_FLOW)
    row = session.execute(
        select(ActionToken, Organization, User)
        .join(User, User.id == ActionToken.user_id)
        .join(Organization, Organization.id == User.organization_id)
        .where(ActionToken.held_by.in_(mine))
        .order_by(ActionToken.held_until.desc(), ActionToken.id.desc())
        .limit(1)
    ).first()
    if row is None:
        raise NotFound(NO_FLOW)
    link, organization, user = row
    return link, organization, user


def step_for_browser(app: App, browser_secret: str | None) -> StepPage | DonePage:
    """The step this browser is at: the QR code to scan, or the success page once done."""
    mine = _holder(app, browser_secret)
    with app.uow() as uow:
        link, organization, user = _held_link(uow.session, app, mine)
        return _view(uow.session, app, link, organization, user)


def _view(
    session: Session, app: App, link: ActionToken, organization: Organization, user: User
) -> StepPage | DonePage:
    who = _who(app, link, organization, user)
    if link.used_at is not None:
        return DonePage(who)
    links.check_usable(session, app, link, organization, user)
    if link.held_until is None or link.held_until <= app.now():
        raise Gone(HOLD_OVER)
    pending = session.get(MfaSecret, user.id, populate_existing=True)
    if pending is None or pending.state != "pending":
        raise Gone(links.EXPIRED)
    who_text = lookup.who(organization, user)
    secret = app.secrets.open_secret(user.uid, pending.ciphertext, who_text).plaintext
    uri = totp.provisioning_uri(secret, secret_params(pending), who.issuer, user.handle)
    return StepPage(who, user.handle, secret, uri, pending.digits, link.held_until)


def confirm_for_browser(
    app: App, browser_secret: str | None, code: str, client: str
) -> tuple[CodeOutcome, StepPage | DonePage]:
    """Check the code against the held link's pending secret; right, MFA is active.

    A wrong code counts in the user's throttle (the same back-off and lock as at login); the
    right one uses the link up, activates the secret and makes the first recovery codes in one
    transaction. The page to show next comes with the outcome (with those codes, once).
    """
    mine = _holder(app, browser_secret)
    with app.uow() as uow:
        session = uow.session
        link, organization, user = _held_link(session, app, mine)
        lookup.lock_users(session, [user.id])
        session.refresh(link)
        now = app.now()
        if link.used_at is None:
            links.check_usable(session, app, link, organization, user)
        if link.held_by not in mine or link.held_until is None or link.held_until <= now:
            raise Gone(HOLD_OVER)
        if link.used_at is not None:  # done already (the form sent twice)
            return CodeOutcome("ok"), DonePage(_who(app, link, organization, user))
        pending = session.get(MfaSecret, user.id, populate_existing=True)
        if pending is None or pending.state != "pending":
            raise Gone(links.EXPIRED)
        outcome = _check_code(session, app, pending, organization, user, code, now)
        codes: tuple[str, ...] = ()
        if outcome.result == "ok":
            used = session.execute(
                update(ActionToken)
                .where(
                    ActionToken.id == link.id,
                    ActionToken.used_at.is_(None),
                    ActionToken.expires_at > now,
                    ActionToken.held_by.in_(mine),
                )
                .values(used_at=now)
                .execution_options(synchronize_session=False)
            )
            if used.rowcount != 1:  # type: ignore[attr-defined]
                raise Gone(links.USED)
            codes = first_recovery_codes(session, app, user)
        details = {"purpose": link.purpose, "client": client, "via": "setup page"}
        audit.record(
            session,
            app,
            "link.confirm",
            org=organization.slug,
            user=user.handle,
            outcome=outcome.result,
            details=details,
        )
        uow.commit()
        if outcome.result == "ok":
            return outcome, DonePage(_who(app, link, organization, user), codes)
        return outcome, _view(uow.session, app, link, organization, user)


def _check_code(
    session: Session,
    app: App,
    pending: MfaSecret,
    org: Organization,
    user: User,
    code: str,
    now: datetime,
) -> CodeOutcome:
    """The login's order for a pending secret: lock, shape, throttle, compare, count."""
    if pending.locked:
        return CodeOutcome("locked")
    if not totp.looks_like_a_code(code, pending.digits):
        return CodeOutcome("malformed")
    today = session.scalar(select(throttle.failures_today(user.id, now))) or 0
    failures = throttle.Failures(pending.failed_attempts, pending.last_failed_at, today)
    settings = app.settings.user_login.mfa.throttle
    wait = throttle.wait_seconds(session, settings, user.id, failures, now)
    if wait:
        return CodeOutcome("throttled", retry_after_seconds=wait)
    who = lookup.who(org, user)
    secret = app.secrets.open_secret(user.uid, pending.ciphertext, who).plaintext
    window = app.settings.user_login.mfa.valid_window
    found = totp.match(secret, code, now, secret_params(pending), window, look_for_drift=True)
    if found.step is None:
        # the same count as a wrong code at login: back-off, lock, the day's budget
        counted = throttle.count_failure(session, app, user.id, org.slug, user.handle, "pending")
        if counted is None:  # only without the user's lock, which this holds
            raise Conflict("the pending enrollment changed meanwhile; start again from the link")
        if counted.locked:
            return CodeOutcome("locked")
        return CodeOutcome("wrong", counted.retry_after_seconds or None, found.drift_steps)
    activate_pending(session, who, pending, found.step, now)
    return CodeOutcome("ok")
