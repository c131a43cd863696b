"""A user's failure throttle: the back-off, the lock and the rolling 24-hour budget of wrong codes.

Three bounds, checked before a code is compared and counted after a wrong one, at login
(``verification``) and at the confirmation of an enrollment (``enrollment``) alike:

- back-off: after n consecutive failures the next code counts only base·2^(n-1) seconds later
  (capped); a success clears n;
- lock: ``lockAfterFailures`` consecutive failures (at most 100) lock the user until
  ``user unlock`` or a reset;
- budget: at most ``maxFailuresPerDay`` counted failures in any 24 hours. A success gives none
  back, so an attacker who has the password gets that many guesses a day however often the real
  user logs in; a slot frees 24 hours after the failure that took it.

Callers hold the user's lock (``lookup.lock_users``), so no other attempt on the user comes
between one attempt's check and its count; the counting itself is SQL (an INSERT, ``+ 1``,
``count(*)``), never a number read into Python and written back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, func, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import Label

from mfactl.app import App
from mfactl.config import Throttle
from mfactl.db.models import MfaFailure, MfaSecret
from mfactl.services import audit

WINDOW = timedelta(hours=24)


def backoff_seconds(throttle: Throttle, failures: int) -> int:
    """base·2^(n-1), capped at maxDelaySeconds; 0 with no failures or a zero base."""
    if failures <= 0 or throttle.base_delay_seconds <= 0:
        return 0
    exponent = min(failures - 1, 40)  # 2^40 s is past any cap; keeps the number small
    return int(min(throttle.base_delay_seconds * 2**exponent, throttle.max_delay_seconds))


def failures_today(user_id: int, now: datetime) -> Label[int]:
    """The user's counted failures of the last 24 hours, as a column of the caller's SELECT (the
    verify hot path reads it with the secret row, in the same statement)."""
    return (
        select(func.count())
        .where(MfaFailure.user_id == user_id, MfaFailure.at > now - WINDOW)
        .scalar_subquery()
        .label("failures_today")
    )


@dataclass(frozen=True)
class Failures:
    """What the throttle reads of a user, with the secret row."""

    consecutive: int
    last_failed_at: datetime | None
    today: int  # in the last 24 hours


def wait_seconds(
    session: Session, throttle: Throttle, user_id: int, failures: Failures, now: datetime
) -> int:
    """0 when a code may be compared now; otherwise the seconds until one may."""
    backoff = 0
    delay = backoff_seconds(throttle, failures.consecutive)
    if delay and failures.last_failed_at is not None:
        remaining = (failures.last_failed_at + timedelta(seconds=delay) - now).total_seconds()
        backoff = max(0, math.ceil(remaining))
    return max(backoff, _budget_wait(session, throttle, user_id, failures.today, now))


def _budget_wait(
    session: Session, throttle: Throttle, user_id: int, today: int, now: datetime
) -> int:
    """Seconds until the 24-hour window has a free slot; 0 while it has one."""
    over = today - throttle.max_failures_per_day
    if over < 0:
        return 0
    # with `over` + 1 failures too many for a slot, the one that frees it is the (over+1)-th
    # oldest of the window (more than one only after maxFailuresPerDay was lowered)
    freeing = session.scalar(
        select(MfaFailure.at)
        .where(MfaFailure.user_id == user_id, MfaFailure.at > now - WINDOW)
        .order_by(MfaFailure.at)
        .offset(over)
        .limit(1)
    )
    if freeing is None:  # the window emptied meanwhile (only possible without the user's lock)
        return 0
    return max(1, math.ceil((freeing + WINDOW - now).total_seconds()))


@dataclass(frozen=True)
class Counted:
    consecutive: int
    locked: bool
    retry_after_seconds: int  # until the next code counts; 0: at once


def count_failure(
    session: Session, app: App, user_id: int, org: str, handle: str, state: str
) -> Counted | None:
    """Count a wrong code against the user's secret in ``state``; None when there is none."""
    now = app.now()
    throttle = app.settings.user_login.mfa.throttle
    locks = case(
        (MfaSecret.failed_attempts + 1 >= throttle.lock_after_failures, True),
        else_=MfaSecret.locked,
    )
    # MariaDB evaluates SET left to right with the new values: set `locked` first so every
    # engine sees the old failed_attempts in both expressions.
    counted = session.execute(
        update(MfaSecret)
        .where(MfaSecret.user_id == user_id, MfaSecret.state == state)
        .ordered_values(
            (MfaSecret.locked, locks),
            (MfaSecret.failed_attempts, MfaSecret.failed_attempts + 1),
            (MfaSecret.last_failed_at, now),
        )
        .execution_options(synchronize_session=False)
    )
    if counted.rowcount != 1:  # type: ignore[attr-defined]
        return None  # reset meanwhile (only possible without the user's lock)
    # failures that left the window are of no more use: the table holds at most a day's budget
    session.execute(
        delete(MfaFailure)
        .where(MfaFailure.user_id == user_id, MfaFailure.at <= now - WINDOW)
        .execution_options(synchronize_session=False)
    )
    session.execute(insert(MfaFailure).values(user_id=user_id, at=now))
    consecutive, locked, today = session.execute(
        select(MfaSecret.failed_attempts, MfaSecret.locked, failures_today(user_id, now)).where(
            MfaSecret.user_id == user_id
        )
    ).one()
    if locked and consecutive == throttle.lock_after_failures:
        audit.record(
            session,
            app,
            "mfa.lock",
            org=org,
            user=handle,
            outcome="locked",
            details={"failed_attempts": consecutive},
        )
    retry = max(
        backoff_seconds(throttle, consecutive),
        _budget_wait(session, throttle, user_id, today, now),
    )
    return Counted(consecutive, bool(locked), retry)


def clear_budget(session: Session, user_ids: Sequence[int]) -> int:
    """Forget the users' counted failures of the day (an unlock, a reset); returns how many."""
    cleared = session.execute(
        delete(MfaFailure)
        .where(MfaFailure.user_id.in_(user_ids))
        .execution_options(synchronize_session=False)
    )
    return int(cleared.rowcount)  # type: ignore[attr-defined]
