"""Reset MFA (one user or every user a filter selects) and mail links: reset and enrollment.

Each change is one transaction with bulk statements: the secrets go, the throttle with them
(the secret's row and the day's counted failures), recovery codes are deleted, remember-me
tokens are revoked, unused links end, an audit event per user is written, and the links and
their emails are queued in the outbox. The emails are sent after the commit; if sending fails
the change stands and the email waits for `mail retry`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from mfactl.app import App
from mfactl.db.batching import chunks
from mfactl.db.models import ActionToken, AuditEvent, MfaSecret, Organization, RememberToken, User
from mfactl.errors import Conflict, InvalidInput
from mfactl.services import delivery, lookup, outbox, recovery, throttle, validation
from mfactl.services.links import LinkTarget, end_unused_links, issue_links
from mfactl.services.outbox import NewMail
from mfactl.services.progress import Progress
from mfactl.services.selection import UserFilter, apply_filter

MAX_REASON = 500


@dataclass(frozen=True)
class Target:
    user_id: int
    org: str
    org_name: str
    user: str
    email: str
    name: str
    admin: bool
    mfa: str  # active | pending | none


@dataclass(frozen=True)
class EmailOutcome:
    status: str  # sent | queued | not_requested | no_address
    error: str | None = None


@dataclass(frozen=True)
class ResetResult:
    org: str
    user: str
    had_mfa: str
    email: EmailOutcome
    replaced_link: bool = False  # a live link of the same purpose was ended by this one


@dataclass(frozen=True)
class BulkResult:
    """A bulk reset or a round of invitations: how many, and what became of their emails."""

    selected: int
    changed: int
    skipped: int  # enrollment invitations: users who already have MFA active
    sent: int
    queued: int
    no_address: int
    error: str | None  # the first sending error, when some emails wait in the outbox
    interrupted: bool = False  # Ctrl-C stopped the sending, not the mail server

    def to_json(self) -> dict[str, object]:
        """`users reset --json`, `users enable --send-email --json`."""
        return {
            "selected": self.selected,
            "changed": self.changed,
            "skipped": self.skipped,
            "emails": {
                "sent": self.sent,
                "queued": self.queued,
                "no_address": self.no_address,
                "error": self.error,
            },
        }


def reason_text(reason: str | None) -> str:
    cleaned = (reason or "").strip()
    if not cleaned:
        raise InvalidInput("a reason is required (--reason), for the audit log")
    if validation.has_control(cleaned):
        raise InvalidInput("the reason must be one line without control characters")
    if validation.has_bidi_control(cleaned):
        raise InvalidInput("the reason contains a bidirectional control character")
    if len(cleaned) > MAX_REASON:
        raise InvalidInput(f"the reason is longer than {MAX_REASON} characters")
    return cleaned


def _targets_query() -> Any:
    return (
        select(
            User.id,
            Organization.slug,
            Organization.name,
            User.handle,
            User.email,
            User.display_name,
            User.is_admin,
            MfaSecret.state,
        )
        .join(Organization, Organization.id == User.organization_id)
        .outerjoin(MfaSecret, MfaSecret.user_id == User.id)
        .order_by(Organization.slug, User.handle)
    )


def _targets(session: Session, query: Any) -> list[Target]:
    return [
        Target(uid, slug, org_name, handle, email, name, bool(admin), state or "none")
        for uid, slug, org_name, handle, email, name, admin, state in session.execute(query)
    ]


def _one(session: Session, org: str, user: str, *, lock: bool = False) -> Target:
    """One user; with ``lock``, read under the user's lock, so what it shows (the MFA state) is
    what the change that follows acts on."""
    _, found = lookup.get_org_user(session, org, user)
    if lock:
        lookup.lock_users(session, [found.id])
    [target] = _targets(session, _targets_query().where(User.id == found.id))
    return target


def _selected(
    session: Session, app: App, flt: UserFilter, *, lock: bool = False
) -> list[Target]:
    """Everyone the filter selects; with ``lock``, those of them who still match it once their
    locks are held, read under them (an enrollment finished meanwhile is seen)."""
    if flt.org:
        lookup.get_org(session, flt.org)  # an unknown organization is exit 3, not "0 users"
    query = apply_filter(_targets_query(), app.settings, flt)
    targets = _targets(session, query)
    if not lock:
        return targets
    ids = [t.user_id for t in targets]
    lookup.lock_users(session, ids)
    # the ids are in the query's order, and so is each chunk: together, the database's order
    return [t for part in chunks(ids) for t in _targets(session, query.where(User.id.in_(part)))]


def describe_user(app: App, org: str, user: str) -> Target:
    """Who a reset would hit: shown before asking for confirmation."""
    with app.uow() as uow:
        return _one(uow.session, org, user)


def select_users(app: App, flt: UserFilter) -> list[Target]:
    """Everyone a filter selects, for the confirmation of a bulk action."""
    with app.uow() as uow:
        return _selected(uow.session, app, flt)


# --- the shared core: bulk statements in the caller's transaction --------------------------------


def _audit(
    session: Session, app: App, action: str, targets: Sequence[Target], details: dict[str, Any]
) -> None:
    """One audit event per user, inserted in bulk (never a token or a secret in details)."""
    now = app.now()
    rows = [
        {
            "at": now,
            "actor": app.actor[:200],
            "action": action,
            "organization": t.org,
            "user_handle": t.user,
            "outcome": "ok",
            "details": {**details, "had_mfa": t.mfa} if action == "user.reset" else details,
        }
        for t in targets
    ]
    for part in chunks(rows):
        session.execute(insert(AuditEvent), list(part))


def _queue_links(
    session: Session, app: App, targets: Sequence[Target], purpose: str
) -> dict[int, int]:
    """Links and their emails for the targets that have an address; user id -> outbox id."""
    mailable = [t for t in targets if t.email]
    issued = issue_links(
        session, app, [LinkTarget(t.user_id, t.org, t.user) for t in mailable], purpose
    )
    ttl = app.settings.email.links.ttl_hours
    mails = [
        NewMail(
            user_id=t.user_id,
            recipient=t.email,
            kind=purpose,
            context={
                "org": t.org,
                "org_name": t.org_name,
                "user": t.user,
                "name": t.name or t.user,
                "link": link.url,
                "expires_at": link.expires_at.strftime("%Y-%m-%d %H:%M UTC"),
                "ttl_hours": ttl,
                "issuer": app.settings.user_login.mfa.issuer,
            },
            link_hash=link.token_hash,
            link_token=link.token,
        )
        for t, link in zip(mailable, issued, strict=True)
    ]
    ids = outbox.enqueue(session, app, mails)
    return {t.user_id: message_id for t, message_id in zip(mailable, ids, strict=True)}


def _reset(
    session: Session,
    app: App,
    targets: Sequence[Target],
    reason: str,
    *,
    send_email: bool,
    bulk: bool,
) -> dict[int, int]:
    now = app.now()
    user_ids = [t.user_id for t in targets]
    lookup.lock_users(session, user_ids)
    for part in chunks(user_ids):
        session.execute(delete(MfaSecret).where(MfaSecret.user_id.in_(part)))
        recovery.remove(session, part)
        throttle.clear_budget(session, part)
        session.execute(
            update(RememberToken)
            .where(RememberToken.user_id.in_(part), RememberToken.revoked_at.is_(None))
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )
    end_unused_links(session, now, user_ids)
    outbox.cancel_unsent(session, user_ids, "not sent: a later reset of this user ended its link")
    queued = _queue_links(session, app, targets, "reset") if send_email else {}
    details: dict[str, Any] = {"reason": reason, "email": send_email}
    if bulk:
        details["bulk"] = True
    _audit(session, app, "user.reset", targets, details)
    return queued


def _check_mfa_enabled(app: App) -> None:
    if not app.settings.user_login.mfa.enabled:
        raise Conflict(
            "MFA is disabled by policy (userLogin.mfa.enabled: false); no setup link is sent"
        )


def _outcome(message_id: int | None, report: delivery.Delivery | None) -> EmailOutcome:
    if message_id is None or report is None:
        return EmailOutcome("no_address")
    if message_id in report.sent:
        return EmailOutcome("sent")
    if message_id in report.cancelled:
        return EmailOutcome("queued", "not sent: its link was replaced by a newer one meanwhile")
    error = report.error_for(message_id) or (
        "not sent by this command: another mfactl process took it meanwhile (to send it, or to "
        "cancel it for a newer link); `mfactl mail list` shows what became of it"
    )
    return EmailOutcome("queued", error)


def _summary(
    targets: Sequence[Target],
    report: delivery.Delivery,
    *,
    selected: int,
    no_address: int,
    skipped: int = 0,
) -> BulkResult:
    return BulkResult(
        selected=selected,
        changed=len(targets),
        skipped=skipped,
        sent=len(report.sent),
        queued=report.queued,
        no_address=no_address,
        error=report.first_error,
        interrupted=report.interrupted,
    )


# --- the use cases -------------------------------------------------------------------------------


def reset_user(
    app: App, org: str, user: str, reason: str | None, *, send_email: bool = True
) -> ResetResult:
    """Remove a user's MFA setup (the user and their data stay) and mail them a setup link."""
    why = reason_text(reason)
    with app.uow() as uow:
        target = _one(uow.session, org, user, lock=True)
        if send_email:
            _check_mfa_enabled(app)
        queued = _reset(uow.session, app, [target], why, send_email=send_email, bulk=False)
        uow.commit()
    if not send_email:
        return ResetResult(target.org, target.user, target.mfa, EmailOutcome("not_requested"))
    message_id = queued.get(target.user_id)
    report = delivery.deliver(app, [message_id]) if message_id is not None else None
    return ResetResult(target.org, target.user, target.mfa, _outcome(message_id, report))


def reset_users(
    app: App,
    flt: UserFilter,
    reason: str | None,
    *,
    send_email: bool = True,
    progress: Progress | None = None,
) -> BulkResult:
    """Reset everyone the filter selects in one transaction, then send their emails."""
    why = reason_text(reason)
    if send_email:
        _check_mfa_enabled(app)
    with app.uow() as uow:
        targets = _selected(uow.session, app, flt, lock=True)
        queued = _reset(uow.session, app, targets, why, send_email=send_email, bulk=True)
        uow.commit()
    report = delivery.deliver(app, list(queued.values()), progress=progress)
    no_address = len(targets) - len(queued) if send_email else 0
    return _summary(targets, report, selected=len(targets), no_address=no_address)


def send_reset_email(app: App, org: str, user: str) -> ResetResult:
    """A fresh reset link for a user whose MFA is not active; the previous link stops working."""
    return _send_link(app, org, user, "reset")


def send_enroll_email(app: App, org: str, user: str) -> ResetResult:
    """Mail one user an enrollment link (refused when MFA is already active)."""
    return _send_link(app, org, user, "enroll")


def _was_reset(session: Session, target: Target) -> bool:
    """Has this user's MFA ever been reset (the reset's audit event, written with it)?"""
    query = select(AuditEvent.id).where(
        AuditEvent.action == "user.reset",
        AuditEvent.organization == target.org,
        AuditEvent.user_handle == target.user,
    )
    return session.scalars(query.limit(1)).first() is not None


def _live_link(session: Session, app: App, target: Target, purpose: str) -> bool:
    query = select(ActionToken.id).where(
        ActionToken.user_id == target.user_id,
        ActionToken.purpose == purpose,
        ActionToken.used_at.is_(None),
        ActionToken.expires_at > app.now(),
    )
    return session.scalars(query.limit(1)).first() is not None


def _send_link(app: App, org: str, user: str, purpose: str) -> ResetResult:
    _check_mfa_enabled(app)
    with app.uow() as uow:
        target = _one(uow.session, org, user, lock=True)
        if target.mfa == "active":
            hint = (
                f"; a reset link is only sent after a reset (mfactl user reset --org {target.org} "
                f"--user {target.user} --reason …)"
                if purpose == "reset"
                else ""
            )
            raise Conflict(f"MFA is already active for {target.org}/{target.user}{hint}")
        if purpose == "reset" and not _was_reset(uow.session, target):
            # its email says "your MFA has been reset": never claim a reset that did not happen
            raise Conflict(
                f"{target.org}/{target.user} was never reset, so there is no reset to send a "
                "link for",
                hint="to invite them to set up MFA: mfactl user enable --org "
                f"{target.org} --user {target.user} --send-email",
            )
        if not target.email:
            return ResetResult(target.org, target.user, target.mfa, EmailOutcome("no_address"))
        replaced = _live_link(uow.session, app, target, purpose)
        queued = _queue_links(uow.session, app, [target], purpose)
        _audit(uow.session, app, f"user.{purpose}_email", [target], {"purpose": purpose})
        uow.commit()
    message_id = queued[target.user_id]
    report = delivery.deliver(app, [message_id])
    outcome = _outcome(message_id, report)
    return ResetResult(target.org, target.user, target.mfa, outcome, replaced_link=replaced)


def invite_users(app: App, flt: UserFilter, *, progress: Progress | None = None) -> BulkResult:
    """Mail enrollment links to everyone selected who has no active MFA (a mandatory rollout)."""
    _check_mfa_enabled(app)
    with app.uow() as uow:
        selected = _selected(uow.session, app, flt, lock=True)
        targets = [t for t in selected if t.mfa != "active"]
        queued = _queue_links(uow.session, app, targets, "enroll")
        _audit(uow.session, app, "user.enroll_email", targets, {"purpose": "enroll", "bulk": True})
        uow.commit()
    report = delivery.deliver(app, list(queued.values()), progress=progress)
    return _summary(
        targets,
        report,
        selected=len(selected),
        no_address=len(targets) - len(queued),
        skipped=len(selected) - len(targets),
    )
