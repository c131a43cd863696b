"""Concurrent verification on each engine: one code, many threads, each its own connection."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from sqlalchemy import func, select

from mfactl.app import App
from mfactl.config import Throttle
from mfactl.db.models import MfaFailure, MfaSecret, User
from mfactl.services import verification
from tests.conftest import FrozenClock, make_app
from tests.unit.helpers import people, phone_code
from tests.unit.test_verification import enrolled

THREADS = 20
WRONG = 50


def _app(url: str, clock: FrozenClock, key: str) -> App:
    application = make_app(url, clock, key)
    login = application.settings.user_login
    # no back-off, and a budget and a lock the WRONG codes all fit in: every one is compared
    throttle = Throttle(base_delay_seconds=0, max_delay_seconds=0, max_failures_per_day=WRONG)
    application.settings = replace(
        application.settings,
        user_login=replace(login, mfa=replace(login.mfa, throttle=throttle)),
    )
    # every thread holds its own connection at the same time
    application._engine_kwargs = (
        {"pool_size": WRONG + 5, "max_overflow": 0} if url.startswith("postgresql") else {}
    )
    return application


def _all_at_once(count: int, work: Callable[[], str]) -> Counter[str]:
    barrier = threading.Barrier(count)
    results: list[str] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        outcome = work()
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return Counter(results)


@pytest.fixture
def busy(app: App, clock: FrozenClock, active_key: str) -> Iterator[tuple[App, str]]:
    """Alice enrolled (and her otpauth URI), on an App giving every thread its own connection."""
    application = _app(app.settings.database.url, clock, active_key)
    people(application, "alice")
    yield application, enrolled(application)
    application.close()


def test_one_code_used_concurrently_succeeds_once(
    busy: tuple[App, str], clock: FrozenClock
) -> None:
    busy_app, uri = busy
    clock.advance(30)
    code = phone_code(uri, busy_app.now())
    outcomes = _all_at_once(
        THREADS, lambda: verification.verify(busy_app, "acme", "alice", code).result
    )
    assert outcomes == Counter({"ok": 1, "replayed": THREADS - 1})


def test_concurrent_wrong_codes_are_all_counted(busy: tuple[App, str]) -> None:
    busy_app, uri = busy
    right = phone_code(uri, busy_app.now())
    wrong = "000000" if right != "000000" else "111111"
    outcomes = _all_at_once(
        WRONG, lambda: verification.verify(busy_app, "acme", "alice", wrong).result
    )
    assert outcomes == Counter({"wrong": WRONG})
    with busy_app.uow() as uow:
        user_id = uow.session.scalars(select(User.id)).one()
        failures = uow.session.scalar(
            select(MfaSecret.failed_attempts).where(MfaSecret.user_id == user_id)
        )
    assert failures == WRONG


def test_during_a_back_off_racing_attempts_are_compared_one_at_a_time(
    busy: tuple[App, str], clock: FrozenClock
) -> None:
    busy_app, uri = busy
    login = busy_app.settings.user_login
    throttle = Throttle(base_delay_seconds=1, max_delay_seconds=60)
    busy_app.settings = replace(
        busy_app.settings, user_login=replace(login, mfa=replace(login.mfa, throttle=throttle))
    )
    clock.advance(30)
    right = phone_code(uri, clock.now)
    wrong = "000000" if right != "000000" else "111111"
    assert verification.verify(busy_app, "acme", "alice", wrong).result == "wrong"
    clock.advance(1)  # the back-off of one failure is over: one more attempt may be compared
    outcomes = _all_at_once(
        THREADS, lambda: verification.verify(busy_app, "acme", "alice", wrong).result
    )
    assert outcomes == Counter({"wrong": 1, "throttled": THREADS - 1})
    with busy_app.uow() as uow:
        assert uow.session.scalar(select(MfaSecret.failed_attempts)) == 2


def test_concurrent_wrong_codes_never_exceed_the_days_budget(busy: tuple[App, str]) -> None:
    busy_app, uri = busy
    login = busy_app.settings.user_login
    # no back-off to order them: the budget alone stands between WRONG racing codes
    throttle = Throttle(base_delay_seconds=0, max_delay_seconds=0, max_failures_per_day=10)
    busy_app.settings = replace(
        busy_app.settings, user_login=replace(login, mfa=replace(login.mfa, throttle=throttle))
    )
    right = phone_code(uri, busy_app.now())
    wrong = "000000" if right != "000000" else "111111"
    outcomes = _all_at_once(
        WRONG, lambda: verification.verify(busy_app, "acme", "alice", wrong).result
    )
    assert outcomes == Counter({"wrong": 10, "throttled": WRONG - 10})
    with busy_app.uow() as uow:
        assert uow.session.scalar(select(func.count()).select_from(MfaFailure)) == 10
        assert uow.session.scalar(select(MfaSecret.failed_attempts)) == 10
