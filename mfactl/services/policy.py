"""The MFA policy: what a login needs from a user, and who breaks the policy.

``userLogin.mfa.enabled`` switches MFA on at all; ``mandatory`` requires it from everyone and
``mandatoryForSysAdmins`` from sysadmins. A user who enrolled gives a code even when MFA is
optional for them; a remembered device skips the code. With ``recoveryCodes.required``, a user
whose MFA is active must also have an unused recovery code.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, false, func, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from mfactl.app import App
from mfactl.config import Settings
from mfactl.db.models import MfaSecret, Organization, User
from mfactl.services import lookup, recovery, remember

ALLOW = "allow"  # may log in without a code
ENROLL = "enroll"  # must enroll MFA before going on
CODE = "code"  # must give a TOTP code


@dataclass(frozen=True)
class LoginRequirement:
    decision: str  # allow | enroll | code
    reason: str
    # with a code asked: the user's unused recovery codes (None without a set), and whether
    # they are down to their last ones (recovery.LOW or fewer), to tell them to get new ones
    recovery_codes_left: int | None = None
    recovery_codes_low: bool = False

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


NO_RECOVERY_CODES = "recovery codes are required and this user has none left"


def violation(
    settings: Settings, is_admin: bool, mfa_state: str, recovery_codes: int | None
) -> str | None:
    """Why this user breaks the policy, or None: MFA required and not active, or (with
    ``recoveryCodes.required``) MFA active without an unused recovery code."""
    if mfa_state != "active":
        return required_reason(settings, is_admin)
    mfa = settings.user_login.mfa
    if mfa.enabled and mfa.recovery_codes.required and not recovery_codes:
        return NO_RECOVERY_CODES
    return None


def compliant(
    settings: Settings, is_admin: bool, mfa_state: str, recovery_codes: int | None
) -> bool:
    """May this user stay as they are under the policy?"""
    return violation(settings, is_admin, mfa_state, recovery_codes) is None


def noncompliant_sql(settings: Settings) -> ColumnElement[bool]:
    """SQL twin of ``not compliant``, for a query that outer-joins MfaSecret on User."""
    not_active = and_(
        requires_mfa_sql(settings),
        or_(MfaSecret.user_id.is_(None), MfaSecret.state != "active"),
    )
    mfa = settings.user_login.mfa
    if not (mfa.enabled and mfa.recovery_codes.required):
        return not_active
    left = func.coalesce(recovery.remaining_sql(User.id), 0)
    return or_(not_active, and_(MfaSecret.state == "active", left == 0))


def decide(
    settings: Settings,
    is_admin: bool,
    mfa_state: str,
    remembered: bool,
    recovery_codes: int | None = None,
) -> LoginRequirement:
    """The pure rule: policy, the user's MFA state and a remembered device -> the requirement."""
    if not settings.user_login.mfa.enabled:
        return LoginRequirement(ALLOW, "MFA is disabled by policy")
    if mfa_state == "active":
        if remembered:
            return LoginRequirement(ALLOW, "this device is remembered")
        if settings.user_login.mfa.recovery_codes.count == 0:
            return LoginRequirement(CODE, "MFA is active for this user")
        return LoginRequirement(
            CODE,
            "MFA is active for this user",
            recovery_codes_left=recovery_codes,
            recovery_codes_low=recovery.is_low(recovery_codes),
        )
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
    return decide(app.settings, user.is_admin, user.mfa_state, remembered, user.recovery_codes)


@dataclass(frozen=True)
class Violation:
    org: str
    user: str
    email: str
    admin: bool
    mfa: str  # none | pending (MFA required), or active (recovery codes required)
    reason: str


def check_policy(app: App, org: str | None = None) -> list[Violation]:
    """The users who break the policy: MFA required and not active, or recovery codes required
    and none left."""
    query = (
        select(
            Organization.slug,
            User.handle,
            User.email,
            User.is_admin,
            MfaSecret.state,
            recovery.remaining_sql(User.id),
        )
        .join(Organization, Organization.id == User.organization_id)
        .outerjoin(MfaSecret, MfaSecret.user_id == User.id)
        .where(noncompliant_sql(app.settings))
        .order_by(Organization.slug, User.handle)
    )
    with app.uow() as uow:
        if org:
            query = query.where(Organization.id == lookup.get_org(uow.session, org).id)
        out = []
        for slug, handle, email, is_admin, state, left in uow.session.execute(query):
            reason = violation(app.settings, is_admin, state or "none", left)
            assert reason is not None  # the query selected only users who break the policy
            out.append(Violation(slug, handle, email, is_admin, state or "none", reason))
        return out
