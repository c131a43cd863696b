"""The MFA policy: what a login needs from a user, and who breaks the policy."""

from __future__ import annotations

import itertools

import pytest

from mfactl.app import App
from mfactl.errors import NotFound
from mfactl.services import enrollment, orgs, policy, users
from mfactl.services.listing import list_users
from mfactl.services.selection import UserFilter
from tests.unit.helpers import people, set_login
from tests.unit.test_verification import enrolled


def test_login_requirement_and_policy_check(app: App) -> None:
    people(app, "alice", "bob", "carol", admin=("alice",))
    enrolled(app, "carol")
    need = {u: policy.login_requirement(app, "acme", u).decision for u in ("alice", "bob", "carol")}
    assert need == {"alice": "allow", "bob": "allow", "carol": "code"}
    assert policy.check_policy(app) == []
    set_login(app, mfa={"mandatory_for_sysadmins": True})
    assert policy.login_requirement(app, "acme", "alice") == policy.LoginRequirement(
        "enroll", "MFA is mandatory for sysadmins and this user has not enrolled"
    )
    assert policy.check_policy(app) == [
        policy.Violation(
            "acme", "alice", "alice@example.com", True, "none", "MFA is mandatory for sysadmins"
        )
    ]
    set_login(app, mfa={"mandatory": True})
    assert [v.user for v in policy.check_policy(app)] == ["alice", "bob"]
    with pytest.raises(NotFound, match=r"^organization 'nope' does not exist$"):
        policy.check_policy(app, org="nope")
    set_login(app, mfa={"enabled": False})
    assert policy.check_policy(app) == []
    assert policy.login_requirement(app, "acme", "carol").decision == "allow"


POLICIES = list(itertools.product((True, False), repeat=3))  # enabled, mandatory, for sysadmins


@pytest.mark.parametrize(("enabled", "mandatory", "for_sysadmins"), POLICIES)
def test_every_reader_of_the_policy_agrees_on_who_breaks_it(
    app: App, enabled: bool, mandatory: bool, for_sysadmins: bool
) -> None:
    """users list (compliant, --noncompliant), policy check and login_requirement ask the one
    rule in services/policy.py, for each kind of user and MFA state."""
    orgs.add_org(app, "acme")
    for admin, state in itertools.product((True, False), ("none", "pending", "active")):
        handle = f"{'admin' if admin else 'user'}-{state}"
        users.add_user(app, "acme", handle, f"{handle}@example.com", admin=admin)
        if state == "pending":
            enrollment.enable_user(app, "acme", handle)
        elif state == "active":
            enrolled(app, handle)
    set_login(
        app,
        mfa={"enabled": enabled, "mandatory": mandatory, "mandatory_for_sysadmins": for_sysadmins},
    )
    required = enabled and mandatory
    required_of_admins = enabled and (mandatory or for_sysadmins)
    expected = {"admin-none", "admin-pending"} if required_of_admins else set()
    expected |= {"user-none", "user-pending"} if required else set()

    listed = {row["user"]: row["compliant"] for row in list_users(app, UserFilter())}
    assert {user for user, ok in listed.items() if not ok} == expected
    selected = {row["user"] for row in list_users(app, UserFilter(noncompliant=True))}
    assert selected == expected
    assert {v.user for v in policy.check_policy(app)} == expected
    needs = {user: policy.login_requirement(app, "acme", user).decision for user in listed}
    assert {user for user, need in needs.items() if need == "enroll"} == expected


def test_the_rule_asked_of_listing_is_the_policys(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """users list takes `compliant` from policy.compliant, not from a copy of its rule."""
    people(app, "alice", "bob")
    enrolled(app, "alice")
    monkeypatch.setattr(
        policy, "compliant", lambda settings, is_admin, state, codes: state == "none"
    )
    listed = {row["user"]: row["compliant"] for row in list_users(app, UserFilter())}
    assert listed == {"alice": False, "bob": True}
