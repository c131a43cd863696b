"""The throttle: the day's budget of wrong codes (logins between or not), the lock at 100 whatever
the setting, what unlock and reset clear, and enrollment confirmation counted alike."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from mfactl.app import App
from mfactl.db.models import ActionToken, AuditEvent, MfaFailure, MfaSecret
from mfactl.errors import Conflict, WrongCode
from mfactl.services import enrollment, links, reset, verification
from tests.conftest import FrozenClock
from tests.unit.helpers import mails, people, phone_code, token_in
from tests.unit.test_verification import enrolled, with_throttle

DAY = 24 * 3600


def wrong_code(uri: str, moment: datetime) -> str:
    """A code the window around ``moment`` does not accept."""
    window = {phone_code(uri, moment, offset) for offset in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in window)


def counted_today(app: App) -> int:
    with app.uow() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(MfaFailure)) or 0)


def verify(app: App, code: str) -> verification.VerifyResult:
    return verification.verify(app, "acme", "alice", code)


def test_the_budget_holds_across_successful_logins(app: App, clock: FrozenClock) -> None:
    people(app, "alice")
    uri = enrolled(app)
    clock.advance(30)
    first_failure = clock.now
    for _ in range(9):  # the defaults: the attacker's wrong code, then the user's login
        assert verify(app, wrong_code(uri, clock.now)).result == "wrong"
        clock.advance(1)  # the back-off of one failure
        assert verify(app, phone_code(uri, clock.now)).ok  # clears the back-off, not the budget
        clock.advance(29)
    tenth = verify(app, wrong_code(uri, clock.now))
    assert tenth.result == "wrong"
    assert tenth.retry_after_seconds == DAY - 9 * 30  # until the first failure leaves the window
    clock.advance(30)
    # the 11th wrong code in 24 hours is not compared; nor, until a slot frees, is the right one
    assert verify(app, wrong_code(uri, clock.now)) == verification.VerifyResult(
        "throttled", retry_after_seconds=DAY - 10 * 30
    )
    assert verify(app, phone_code(uri, clock.now)).result == "throttled"
    assert counted_today(app) == 10
    clock.now = first_failure + timedelta(seconds=DAY)
    assert verify(app, phone_code(uri, clock.now)).ok


def test_a_slot_frees_24_hours_after_the_failure_that_took_it(app: App, clock: FrozenClock) -> None:
    people(app, "alice")
    uri = enrolled(app)
    with_throttle(app, base_delay_seconds=0, max_failures_per_day=3)
    clock.advance(30)
    start = clock.now
    for gap in (0, 100, 100):  # failures at start, +100 s, +200 s
        clock.advance(gap)
        last = verify(app, wrong_code(uri, clock.now))
        assert last.result == "wrong"
    assert last.retry_after_seconds == DAY - 200  # the one that filled it says how long
    clock.now = start + timedelta(seconds=DAY - 1)
    assert verify(app, wrong_code(uri, clock.now)).retry_after_seconds == 1
    assert verify(app, wrong_code(uri, clock.now)).result == "throttled"
    clock.advance(1)  # the first failure leaves the window: exactly one more is counted
    assert verify(app, wrong_code(uri, clock.now)).result == "wrong"
    assert verify(app, wrong_code(uri, clock.now)) == verification.VerifyResult(
        "throttled", retry_after_seconds=100
    )
    clock.advance(100)
    assert verify(app, phone_code(uri, clock.now)).ok
    with app.uow() as uow:  # failures that left the window are pruned
        assert uow.session.scalar(select(func.min(MfaFailure.at))) > start


def test_the_wait_for_a_free_slot_rounds_up(app: App, clock: FrozenClock) -> None:
    """1.5 s before a slot frees, the answer is 2 s: a login server that waits 1 s is refused."""
    people(app, "alice")
    uri = enrolled(app)
    with_throttle(app, base_delay_seconds=0, max_failures_per_day=1)
    clock.advance(30)
    start = clock.now
    assert verify(app, wrong_code(uri, clock.now)).retry_after_seconds == DAY
    clock.now = start + timedelta(seconds=DAY - 1.5)
    assert verify(app, phone_code(uri, clock.now)) == verification.VerifyResult(
        "throttled", retry_after_seconds=2
    )


def test_100_failures_in_a_row_lock_whatever_the_budget(app: App, clock: FrozenClock) -> None:
    people(app, "alice")
    uri = enrolled(app)
    with_throttle(app, base_delay_seconds=0, max_failures_per_day=1000)  # lock: its default
    clock.advance(30)
    wrong = wrong_code(uri, clock.now)
    for _ in range(99):
        assert verify(app, wrong).result == "wrong"
    with app.uow() as uow:
        assert uow.session.scalar(select(MfaSecret.locked)) is False
    assert verify(app, wrong).result == "wrong"  # the 100th
    assert verify(app, phone_code(uri, clock.now)).result == "locked"
    with app.uow() as uow:
        events = uow.session.scalars(select(AuditEvent).where(AuditEvent.action == "mfa.lock"))
        assert [e.details for e in events] == [{"failed_attempts": 100}]


def test_unlock_and_reset_clear_the_budget(app: App, clock: FrozenClock) -> None:
    people(app, "alice")
    uri = enrolled(app)
    with_throttle(app, base_delay_seconds=0, max_failures_per_day=2)
    clock.advance(30)
    for _ in range(2):
        verify(app, wrong_code(uri, clock.now))
    assert verify(app, phone_code(uri, clock.now)).result == "throttled"
    # an administrator who unlocks means "let them in now": the day's count goes too
    unlocked = verification.unlock(app, "acme", "alice")
    assert (unlocked.was_locked, unlocked.failed_attempts) == (False, 2)
    assert counted_today(app) == 0
    assert verify(app, phone_code(uri, clock.now)).ok
    with app.uow() as uow:
        event = uow.session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
        assert event is not None and event.action == "mfa.unlock"
        assert event.details["failures_today"] == 2
    clock.advance(30)
    verify(app, wrong_code(uri, clock.now))
    assert counted_today(app) == 1
    reset.reset_user(app, "acme", "alice", "lost phone", send_email=False)
    assert counted_today(app) == 0


def test_confirmation_counts_in_the_same_throttle(app: App, clock: FrozenClock) -> None:
    people(app, "alice")
    with_throttle(app, base_delay_seconds=0, max_failures_per_day=3)
    uri = enrollment.enable_user(app, "acme", "alice").otpauth_uri
    assert uri is not None
    for _ in range(2):
        with pytest.raises(WrongCode, match=r"^the code is wrong for acme/alice$"):
            enrollment.confirm_user(app, "acme", "alice", wrong_code(uri, clock.now))
    with pytest.raises(Conflict, match=r"^the code is wrong for acme/alice$"):
        enrollment.confirm_user(app, "acme", "alice", "12ab56")  # malformed: not counted
    with app.uow() as uow:  # counted and committed, though the confirmation raised
        assert uow.session.scalar(select(MfaSecret.failed_attempts)) == 2
    assert counted_today(app) == 2
    # a new pending secret (a new `user enable`) does not give the day's guesses back
    uri = enrollment.enable_user(app, "acme", "alice").otpauth_uri
    assert uri is not None
    with pytest.raises(WrongCode):
        enrollment.confirm_user(app, "acme", "alice", wrong_code(uri, clock.now))
    with pytest.raises(Conflict, match=r"^too many wrong codes for acme/alice; the next one "):
        enrollment.confirm_user(app, "acme", "alice", phone_code(uri, clock.now))
    with app.uow() as uow:  # the right code was refused unread: still pending
        assert uow.session.scalar(select(MfaSecret.state)) == "pending"
    clock.advance(DAY)
    enrollment.confirm_user(app, "acme", "alice", phone_code(uri, clock.now))
    # and failures at confirmation and at login share the day's budget
    clock.advance(30)
    for _ in range(3):
        assert verify(app, wrong_code(uri, clock.now)).result == "wrong"
    assert verify(app, wrong_code(uri, clock.now)).result == "throttled"


def test_confirmation_locks_after_100_wrong_codes(app: App, clock: FrozenClock) -> None:
    people(app, "alice")
    with_throttle(app, base_delay_seconds=0, max_failures_per_day=1000, lock_after_failures=3)
    uri = enrollment.enable_user(app, "acme", "alice").otpauth_uri
    assert uri is not None
    for _ in range(3):
        with pytest.raises(WrongCode):
            enrollment.confirm_user(app, "acme", "alice", wrong_code(uri, clock.now))
    with pytest.raises(Conflict, match=r"^MFA of acme/alice is locked after too many wrong"):
        enrollment.confirm_user(app, "acme", "alice", phone_code(uri, clock.now))
    verification.unlock(app, "acme", "alice")
    enrollment.confirm_user(app, "acme", "alice", phone_code(uri, clock.now))


def test_a_link_confirmation_counts_and_the_link_stays_usable(
    mail_app: App, clock: FrozenClock
) -> None:
    app = mail_app
    people(app, "alice")
    with_throttle(app, base_delay_seconds=0, max_failures_per_day=2)
    reset.reset_user(app, "acme", "alice", "lost phone")
    [mail] = mails(app)
    token = token_in(mail)
    uri = links.open_link(app, "acme", token).otpauth_uri
    for _ in range(2):
        with pytest.raises(WrongCode):
            links.confirm_link(app, "acme", token, wrong_code(uri, clock.now))
    assert counted_today(app) == 2
    with app.uow() as uow:
        assert uow.session.scalar(select(ActionToken.used_at)) is None
    with pytest.raises(Conflict, match="too many wrong codes"):
        links.confirm_link(app, "acme", token, phone_code(uri, clock.now))
    clock.advance(DAY)  # the link lives 72 hours; the budget frees after 24
    assert links.confirm_link(app, "acme", token, phone_code(uri, clock.now)).user == "alice"
