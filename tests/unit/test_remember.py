"""Remember-me tokens: issued, checked, expired, revoked, and what the policy allows."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

import pytest
from sqlalchemy import insert, select, update

from mfactl.app import App
from mfactl.crypto import generate_key
from mfactl.db.models import RememberToken, User
from mfactl.errors import Conflict, NotFound
from mfactl.services import policy, remember
from tests.conftest import FrozenClock
from tests.unit.helpers import people, set_login, use_keys
from tests.unit.test_verification import enrolled


def test_remember_me_issue_check_expire_revoke(app: App, clock: FrozenClock) -> None:
    people(app, "alice", "bob")
    enrolled(app, "alice")
    issued = remember.issue(app, "acme", "alice")
    assert remember.check(app, "acme", "alice", issued.token)
    assert not remember.check(app, "acme", "bob", issued.token)
    assert not remember.check(app, "acme", "alice", issued.token + "x")
    needs = policy.login_requirement(app, "acme", "alice", remember_token=issued.token)
    assert needs == policy.LoginRequirement("allow", "this device is remembered")
    with app.uow() as uow:
        stored = uow.session.scalars(select(RememberToken.token_hash)).all()
        uid = uow.session.scalar(select(User.uid).where(User.handle == "alice"))
    assert uid is not None
    assert stored == [remember.token_hash(app, uid, issued.token)] and issued.token not in stored
    other = remember.issue(app, "acme", "alice")
    assert [t.state for t in remember.list_tokens(app, "acme", "alice")] == ["live", "live"]
    assert remember.revoke(app, "acme", "alice", other.id) == 1
    assert not remember.check(app, "acme", "alice", other.token)
    assert remember.check(app, "acme", "alice", issued.token)
    with pytest.raises(NotFound, match=r"^remember-me token 999 does not exist for acme/alice$"):
        remember.revoke(app, "acme", "alice", 999)
    assert issued.expires_at == app.now() + timedelta(days=30)  # rememberMe.days
    clock.advance(30 * 86400 - 1)
    assert remember.check(app, "acme", "alice", issued.token)
    clock.advance(1)
    assert not remember.check(app, "acme", "alice", issued.token)
    assert [t.state for t in remember.list_tokens(app, "acme", "alice")] == ["revoked", "expired"]
    assert remember.revoke(app, "acme", "alice") == 1  # the expired one was not yet revoked


def test_revoking_another_users_token_is_not_found(app: App) -> None:
    people(app, "alice", "bob")
    enrolled(app, "alice")
    issued = remember.issue(app, "acme", "alice")
    with pytest.raises(
        NotFound, match=rf"^remember-me token {issued.id} does not exist for acme/bob$"
    ):
        remember.revoke(app, "acme", "bob", issued.id)
    assert remember.check(app, "acme", "alice", issued.token)


def test_no_token_for_an_enrollment_still_pending(app: App) -> None:
    from mfactl.services import enrollment
    from tests.unit.helpers import phone_code

    people(app, "alice")
    uri = enrollment.enable_user(app, "acme", "alice").otpauth_uri
    assert uri is not None
    with pytest.raises(
        Conflict, match=r"^cannot remember a device of acme/alice: MFA is not active$"
    ):
        remember.issue(app, "acme", "alice")
    enrollment.confirm_user(app, "acme", "alice", phone_code(uri, app.now()))
    with app.uow() as uow:
        assert uow.session.scalars(select(RememberToken)).all() == []  # none went live


def test_remember_me_refusals(app: App) -> None:
    people(app, "alice", "bob", admin=("alice",))
    enrolled(app, "alice")
    with pytest.raises(Conflict, match=r"^cannot remember a device of acme/bob: MFA is not"):
        remember.issue(app, "acme", "bob")
    issued = remember.issue(app, "acme", "alice")
    set_login(app, disabled_for_sysadmins=True)
    with pytest.raises(Conflict, match=r"remember-me is disabled for sysadmins"):
        remember.issue(app, "acme", "alice")
    assert not remember.check(app, "acme", "alice", issued.token)
    set_login(app, disabled_for_sysadmins=False, enabled=False)
    with pytest.raises(Conflict, match=r"remember-me is disabled by policy"):
        remember.issue(app, "acme", "alice")
    set_login(app, enabled=True, mfa={"enabled": False})
    with pytest.raises(Conflict, match=r"MFA is disabled by policy"):
        remember.issue(app, "acme", "alice")


def test_a_remembered_device_needs_active_mfa(app: App) -> None:
    from sqlalchemy import delete

    from mfactl.db.models import MfaSecret

    people(app, "alice")
    enrolled(app, "alice")
    issued = remember.issue(app, "acme", "alice")
    with app.uow() as uow:  # as a reset does
        uow.session.execute(delete(MfaSecret))
        uow.commit()
    assert not remember.check(app, "acme", "alice", issued.token)


def test_lowering_remember_me_days_ends_the_older_tokens(app: App, clock: FrozenClock) -> None:
    from mfactl.services import users
    from mfactl.services.listing import list_users
    from mfactl.services.selection import UserFilter

    people(app, "alice")
    enrolled(app, "alice")
    old = remember.issue(app, "acme", "alice")  # stored: valid for 30 days
    clock.advance(10 * 86400)
    new = remember.issue(app, "acme", "alice")
    issued_at = clock.now
    set_login(app, days=7)

    assert not remember.check(app, "acme", "alice", old.token)
    assert remember.check(app, "acme", "alice", new.token)
    listed = [(t.state, t.expires_at) for t in remember.list_tokens(app, "acme", "alice")]
    assert listed == [
        ("live", issued_at + timedelta(days=7)),
        ("expired", issued_at - timedelta(days=3)),
    ]
    [row] = list_users(app, UserFilter(org="acme"))
    assert row["remember_tokens"] == 1
    assert users.user_status(app, "acme", "alice").remember_tokens == 1  # the same rule
    clock.advance(7 * 86400 - 1)
    assert remember.check(app, "acme", "alice", new.token)
    clock.advance(1)
    assert not remember.check(app, "acme", "alice", new.token)
    assert [t.state for t in remember.list_tokens(app, "acme", "alice")] == ["expired"] * 2
    assert [r["remember_tokens"] for r in list_users(app, UserFilter(org="acme"))] == [0]
    set_login(app, days=60)  # the stored expiry still bounds it: raising gives no more
    assert remember.check(app, "acme", "alice", new.token)
    clock.now = new.expires_at
    assert not remember.check(app, "acme", "alice", new.token)


def _remembered_by_hand(app: App, handle: str, token_hash: str) -> None:
    """A remember-me row written straight into the database, as someone with write access could."""
    with app.uow() as uow:
        user_id = uow.session.scalar(select(User.id).where(User.handle == handle))
        uow.session.execute(
            insert(RememberToken),
            [
                {
                    "user_id": user_id,
                    "token_hash": token_hash,
                    "created_at": app.now(),
                    "expires_at": app.now() + timedelta(days=30),
                }
            ],
        )
        uow.commit()


def test_a_remember_me_row_written_by_hand_skips_no_code(app: App) -> None:
    people(app, "root", "mallory", admin=("root",))
    enrolled(app, "root")
    enrolled(app, "mallory")
    # the plain SHA-256 of a chosen token: what an earlier mfactl stored, so its tokens end too
    chosen = secrets.token_urlsafe(32)
    _remembered_by_hand(app, "root", hashlib.sha256(chosen.encode()).hexdigest())
    # and the plain SHA-256 of what today's hash covers (root's uid, readable in the database,
    # and the token): only the key makes the hash
    with app.uow() as uow:
        root_uid = uow.session.scalar(select(User.uid).where(User.handle == "root"))
    bound = secrets.token_urlsafe(32)
    _remembered_by_hand(app, "root", hashlib.sha256(f"{root_uid}:{bound}".encode()).hexdigest())
    # mallory's own token, its row moved onto root: the hash is bound to mallory's uid
    own = remember.issue(app, "acme", "mallory").token
    with app.uow() as uow:
        root_id = uow.session.scalar(select(User.id).where(User.handle == "root"))
        uow.session.execute(update(RememberToken).values(user_id=root_id))
        uow.commit()

    for token in (chosen, bound, own):
        assert not remember.check(app, "acme", "root", token)
        needs = policy.login_requirement(app, "acme", "root", remember_token=token)
        assert needs.decision == "code"
    assert not remember.check(app, "acme", "mallory", own)  # its row is not mallory's any more
    assert not remember.check(app, "acme", "root", "caf\u00e9 \udcff")  # never issued


def test_a_remembered_device_outlives_a_key_rotation_until_its_key_is_removed(app: App) -> None:
    old, new = app.settings.secret_store.active_key, generate_key()
    people(app, "alice")
    enrolled(app, "alice")
    before = remember.issue(app, "acme", "alice").token
    use_keys(app, new, rolling=old)  # the rotation: the old key is now the rolling one
    assert remember.check(app, "acme", "alice", before)
    after = remember.issue(app, "acme", "alice").token
    use_keys(app, new)  # the rolling key removed: what only it can check stops working
    assert not remember.check(app, "acme", "alice", before)
    assert remember.check(app, "acme", "alice", after)
