"""Verification: ok, replay, wrong (with drift), throttle, lock and unlock, RFC 6238 vectors."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from mfactl.app import App
from mfactl.config import Throttle
from mfactl.db.models import AuditEvent, MfaSecret, User
from mfactl.errors import Conflict, SecretStoreError
from mfactl.services import enrollment, users, verification
from tests.conftest import FrozenClock
from tests.unit.helpers import people, phone_code
from tests.unit.test_totp import SEEDS, VECTORS


def with_throttle(app: App, **values: int) -> None:
    login = app.settings.user_login
    throttle = replace(Throttle(), **values)
    mfa = replace(login.mfa, throttle=throttle)
    app.settings = replace(app.settings, user_login=replace(login, mfa=mfa))


def enrolled(app: App, handle: str = "alice") -> str:
    """Enroll the user; returns the otpauth URI (the phone's copy of the secret)."""
    uri = enrollment.enable_user(app, "acme", handle).otpauth_uri
    assert uri is not None
    enrollment.confirm_user(app, "acme", handle, phone_code(uri, app.now()))
    return uri


def test_ok_then_replayed_then_next_step(app: App, clock: FrozenClock) -> None:
    people(app, "alice")
    uri = enrolled(app)
    # the confirmation used the current step: the same code again is a replay
    assert (
        verification.verify(app, "acme", "alice", phone_code(uri, app.now())).result == "replayed"
    )
    clock.advance(30)
    code = phone_code(uri, app.now())
    assert verification.verify(app, "acme", "alice", code).ok
    assert verification.verify(app, "acme", "alice", code).result == "replayed"
    # a code of an earlier step, though inside the window, is a replay too
    clock.advance(30)
    early = phone_code(uri, app.now(), offset_steps=-1)
    assert verification.verify(app, "acme", "alice", early).result == "replayed"


def test_wrong_code_drift_and_not_enrolled(app: App, clock: FrozenClock) -> None:
    people(app, "alice", "bob")
    uri = enrolled(app)
    clock.advance(60)
    late = phone_code(uri, app.now(), offset_steps=3)
    result = verification.verify(app, "acme", "alice", late, explain=True)
    assert result == verification.VerifyResult("wrong", drift_steps=3, retry_after_seconds=1)
    assert verification.verify(app, "acme", "bob", "123456").result == "not_enrolled"
    enrollment.enable_user(app, "acme", "bob")  # pending is not enrolled either
    assert verification.verify(app, "acme", "bob", "123456").result == "not_enrolled"


def test_backoff_throttles_with_a_frozen_clock(app: App, clock: FrozenClock) -> None:
    people(app, "alice")
    uri = enrolled(app)
    with_throttle(app, base_delay_seconds=2, max_delay_seconds=5)
    clock.advance(30)
    good = phone_code(uri, app.now())
    assert verification.verify(app, "acme", "alice", "000000").retry_after_seconds == 2
    # during the back-off even the right code is not looked at, and is not consumed
    throttled = verification.verify(app, "acme", "alice", good)
    assert throttled == verification.VerifyResult("throttled", retry_after_seconds=2)
    clock.advance(2)
    assert verification.verify(app, "acme", "alice", "000001").retry_after_seconds == 4
    clock.advance(3)
    assert verification.verify(app, "acme", "alice", good).retry_after_seconds == 1
    clock.advance(1)
    assert verification.verify(app, "acme", "alice", "000002").retry_after_seconds == 5  # cap
    clock.advance(5)
    assert verification.verify(app, "acme", "alice", good).ok  # success clears the count
    clock.advance(30)
    assert verification.verify(app, "acme", "alice", "000003").retry_after_seconds == 2


def test_a_wrong_code_counts_against_its_own_user_only(app: App, clock: FrozenClock) -> None:
    people(app, "alice", "bob")
    enrolled(app, "alice")
    bob = enrolled(app, "bob")
    clock.advance(30)
    with_throttle(app, base_delay_seconds=60)
    assert verification.verify(app, "acme", "alice", "000000").result == "wrong"
    with app.uow() as uow:
        failures = dict(
            uow.session.execute(
                select(User.handle, MfaSecret.failed_attempts).join(
                    MfaSecret, MfaSecret.user_id == User.id
                )
            ).all()
        )
    assert failures == {"alice": 1, "bob": 0}
    assert verification.verify(app, "acme", "bob", phone_code(bob, app.now())).ok


def test_the_retry_time_rounds_up(app: App, clock: FrozenClock) -> None:
    people(app, "alice")
    uri = enrolled(app)
    with_throttle(app, base_delay_seconds=2)
    clock.advance(30)
    assert verification.verify(app, "acme", "alice", "000000").retry_after_seconds == 2
    clock.advance(0.5)
    assert verification.verify(app, "acme", "alice", "000000") == verification.VerifyResult(
        "throttled", retry_after_seconds=2
    )
    clock.advance(1)  # 0.5 s of the back-off left: still throttled, and told 1 s, not 0
    good = phone_code(uri, app.now())
    assert verification.verify(app, "acme", "alice", good) == verification.VerifyResult(
        "throttled", retry_after_seconds=1
    )
    clock.advance(0.5)
    assert verification.verify(app, "acme", "alice", good).ok


def test_a_code_typed_with_spaces_is_the_code(app: App, clock: FrozenClock) -> None:
    people(app, "alice")
    uri = enrolled(app)
    clock.advance(30)
    code = phone_code(uri, app.now())
    assert verification.verify(app, "acme", "alice", f" {code[:3]} {code[3:]} ").ok
    with app.uow() as uow:
        assert uow.session.scalar(select(MfaSecret.failed_attempts)) == 0


def test_the_drift_search_runs_only_when_asked(
    app: App, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mfactl import totp

    people(app, "alice")
    enrolled(app)
    with_throttle(app, base_delay_seconds=0)
    computed = []
    code_at_step = totp.code_at_step

    def counted(secret: str, step: int, params: totp.TotpParams) -> str:
        computed.append(step)
        return code_at_step(secret, step, params)

    monkeypatch.setattr(totp, "code_at_step", counted)
    clock.advance(30)
    assert verification.verify(app, "acme", "alice", "000000").result == "wrong"
    assert len(computed) == 3  # the window, ±1 step: a login pays for nothing more
    computed.clear()
    assert verification.verify(app, "acme", "alice", "000000", explain=True).result == "wrong"
    assert len(computed) == 3 + 2 * (totp.DRIFT_SEARCH_STEPS - 1)


def test_lock_after_failures_and_unlock(app: App, clock: FrozenClock) -> None:
    people(app, "alice")
    uri = enrolled(app)
    with_throttle(app, base_delay_seconds=0, lock_after_failures=3)
    for _ in range(3):
        assert verification.verify(app, "acme", "alice", "000000").result == "wrong"
    clock.advance(30)
    assert verification.verify(app, "acme", "alice", phone_code(uri, app.now())).result == "locked"
    unlocked = verification.unlock(app, "acme", "alice")
    assert unlocked.was_locked and unlocked.failed_attempts == 3
    # the count starts again from zero: one more slip is one failure, not the fourth
    assert verification.verify(app, "acme", "alice", "000000").result == "wrong"
    assert verification.verify(app, "acme", "alice", phone_code(uri, app.now())).ok
    with app.uow() as uow:
        actions = uow.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions[-2:] == ["mfa.lock", "mfa.unlock"]
    users.add_user(app, "acme", "zed", "zed@example.com")
    with pytest.raises(Conflict, match=r"^acme/zed has no MFA secret to unlock$"):
        verification.unlock(app, "acme", "zed")


def test_a_malformed_code_is_neither_compared_nor_counted(app: App, clock: FrozenClock) -> None:
    people(app, "alice")
    uri = enrolled(app)
    clock.advance(30)
    with_throttle(app, base_delay_seconds=1, lock_after_failures=3)
    for slip in ("", "abc", "12345", "1234567", "12 34 5a", "١٢٣٤٥٦", "9" * 10_000):
        assert verification.verify(app, "acme", "alice", slip).result == "malformed", slip
    with app.uow() as uow:
        failures = uow.session.scalar(select(MfaSecret.failed_attempts))
    assert failures == 0  # no back-off, no lock: the right code goes straight through
    assert verification.verify(app, "acme", "alice", phone_code(uri, app.now())).ok


@pytest.mark.parametrize("algorithm", ["SHA1", "SHA256", "SHA512"])
def test_rfc6238_vectors_through_the_service(app: App, clock: FrozenClock, algorithm: str) -> None:
    people(app, "alice")
    secret = base64.b32encode(SEEDS[algorithm]).decode()
    with app.uow() as uow:
        user = uow.session.scalars(select(User)).one()
        sealed = app.secrets.seal_secret(user.uid, secret)
        uow.session.add(
            MfaSecret(
                user_id=user.id,
                state="active",
                ciphertext=sealed.ciphertext,
                key_id=sealed.key_id,
                algorithm=algorithm,
                digits=8,
                period=30,
                created_at=clock.now,
                last_used_step=-1,
                failed_attempts=0,
                locked=False,
            )
        )
        uow.commit()
    column = {"SHA1": 1, "SHA256": 2, "SHA512": 3}[algorithm]
    for vector in VECTORS:
        clock.now = datetime.fromtimestamp(vector[0], UTC)
        assert verification.verify(app, "acme", "alice", vector[column]).ok, vector


def test_a_swapped_ciphertext_is_refused_naming_the_user(app: App) -> None:
    people(app, "alice", "bob")
    enrolled(app, "alice")
    enrolled(app, "bob")
    with app.uow() as uow:
        alice, bob = uow.session.scalars(select(User).order_by(User.handle)).all()
        stolen = uow.session.get(MfaSecret, alice.id)
        target = uow.session.get(MfaSecret, bob.id)
        assert stolen is not None and target is not None
        target.ciphertext = stolen.ciphertext
        uow.commit()
    with pytest.raises(SecretStoreError) as raised:
        verification.verify(app, "acme", "bob", "123456")
    assert raised.value.message == (
        "the MFA secret stored for acme/bob is bound to another user; it was refused"
    )
    assert raised.value.exit_code == 6
