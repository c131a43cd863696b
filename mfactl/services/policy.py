"""The MFA policy: what a login needs from a user, and who breaks the policy.

``userLogin.mfa.enabled`` switches MFA on at all; ``mandatory`` requires it from everyone and
``mandatoryForSysAdmins`` from sysadmins. A user who enrolled gives a code even when MFA is
optional for them; a remembered device skips the code.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, false, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from mfactl.app import App
from mfactl.config import Settings
from mfactl.db.models import MfaSecret, Organization, User
from mfactl.services import lookup, remember

ALLOW = "allow"  # may log in without a code
ENROLL = "enroll"  # must enroll MFA before going on
CODE = "code"  # must give a TOTP code


@dataclass(frozen=True)
class LoginRequirement:
    decision: str  # allow | enroll | code
    reason: str

    @property
    def needs_code(self) -> bool:
        return self.decision == CODE

    @property
    def needs_enrollment(self) -> bool:
        return self.decision == ENROLL


# --- the rule: does the policy require MFA of this user? (Python and its SQL twin) -----------


def required_reason(settings: Settings, is_admin: bool) -> str | None:
    """Why the policy requires MFA from this user, or None when it does not."""
    mfa = settings.user_login.mfa
    if not mfa.enabled:
        return None
    if mfa.mandatory:
        return "MFA is mandatory for everyone"
    if is_admin and mfa.mandatory_for_sysadmins:
        return "MFA is mandatory for sysadmins"
    return None


def requires_mfa_sql(settings: Settings) -> ColumnElement[bool]:
    """SQL twin of ``required_reason`` (is not None), for a query joined on User."""
    mfa = settings.user_login.mfa
    if not mfa.enabled:
        return false()
    if mfa.mandatory:
        return true()
    if mfa.mandatory_for_sysadmins:
        return User.is_admin.is_(True)
    return false()


def compliant(settings: Settings, is_admin: bool, mfa_state: str) -> bool:
    """May this user stay as they are under the policy (MFA active, or not required)?"""
    return mfa_state == "active" or required_reason(settings, is_admin) is None


def noncompliant_sql(settings: Settings) -> ColumnElement[bool]:
    """SQL twin of ``not compliant``, for a query that outer-joins MfaSecret on User."""
    return and_(
        requires_mfa_sql(settings),
        or_(MfaSecret.user_id.is_(None), MfaSecret.state != "active"),
    )


def decide(
    settings: Settings, is_admin: bool, mfa_state: str, remembered: bool
) -> LoginRequirement:
    """The pure rule: policy, the user's MFA state and a remembered device -> the requirement."""
    if not settings.user_login.mfa.enabled:
        return LoginRequirement(ALLOW, "MFA is disabled by policy")
    if mfa_state == "active":
        if remembered:
            return LoginRequirement(ALLOW, "this device is remembered")
        return LoginRequirement(CODE, "MFA is active for this user")
    required = required_reason(settings, is_admin)
    if required:
        return LoginRequirement(ENROLL, required + " and this user has not enrolled")
    return LoginRequirement(ALLOW, "MFA is optional for this user and not set up")


def login_requirement(
    app: App, org: str, user_ref: str, *, remember_token: str | None = None
) -> LoginRequirement:
    """What a login server must ask this user for (call it after the password check)."""
    app.check_schema()
    user = remember.login_user(app, org, user_ref)
    remembered = bool(remember_token) and remember.is_remembered(app, user, remember_token or "")
    return decide(app.settings, user.is_admin, user.mfa_state, remembered)


@dataclass(frozen=True)
class Violation:
    org: str
    user: str
    email: str
    admin: bool
    mfa: str  # none | pending
    reason: str


def check_policy(app: App, org: str | None = None) -> list[Violation]:
    """The users the policy requires MFA from who have not activated it."""
    query = (
        select(Organization.slug, User.handle, User.email, User.is_admin, MfaSecret.state)
        .join(Organization, Organization.id == User.organization_id)
        .outerjoin(MfaSecret, MfaSecret.user_id == User.id)
        .where(noncompliant_sql(app.settings))
        .order_by(Organization.slug, User.handle)
    )
    with app.uow() as uow:
        if org:
            query = query.where(Organization.id == lookup.get_org(uow.session, org).id)
        out = []
        for slug, handle, email, is_admin, state in uow.session.execute(query):
            reason = required_reason(app.settings, is_admin)
            assert reason is not None  # the query selected only users it requires MFA from
            out.append(Violation(slug, handle, email, is_admin, state or "none", reason))
        return out
