"""Changes to one user racing each other, on each engine, with the interleaving forced.

Each test pauses one change at the worst moment (after it has read the user's state, before it
writes) while a second change to the same user runs in another thread, and keeps it paused until
the second has arrived (at the lock it asks for, or wherever the test says): events, not sleeps,
so the two overlap however slow the machine, and each test asserts that they did. The user's
lock (``lookup.lock_users``) makes the second wait for the first, so the outcome is always that
of one order or the other, never a mix of both.
"""

from __future__ import annotations

import secrets as secrets_module
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from mfactl.app import App
from mfactl.config import Email
from mfactl.db.models import MfaSecret, RememberToken
from mfactl.errors import Conflict, MfactlError, Unavailable, from_database
from mfactl.services import enrollment, links, lookup, remember, reset, verification
from tests.conftest import FrozenClock
from tests.unit.helpers import people, phone_code
from tests.unit.test_reset import mails as mails_of
from tests.unit.test_reset import token_in
from tests.unit.test_verification import enrolled

WAIT = 30  # seconds: only ever reached when a test is broken, never a pause that makes it pass


class Overlap:
    """Holds the first change inside itself (it has read the user's state; it holds the user's
    lock) until the second change has arrived at its own point (the lock it asks for, the
    statement it writes with, or its end), so the two are certain to overlap: no sleep, however
    slow the machine. ``together`` records that both were inside at once."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self.first_inside = threading.Event()
        self.second_arrived = threading.Event()
        self.first_thread: int | None = None
        self.first_resumed = False
        self.together = False

    def pause_first(self) -> None:
        """In the first change, once: say it is inside, then wait there for the second."""
        with self._guard:
            if self.first_thread is not None:
                return
            self.first_thread = threading.get_ident()
        self.first_inside.set()
        # a hook that never fires fails the test (`together` stays false) rather than hang it
        self.second_arrived.wait(WAIT)
        with self._guard:
            self.first_resumed = True

    def second_arrives(self) -> None:
        """In the second change: it has reached its point; the first may go on."""
        with self._guard:
            if (
                not self.first_inside.is_set()  # the first change itself, before its pause
                or threading.get_ident() == self.first_thread
                or self.second_arrived.is_set()
            ):
                return
            self.together = not self.first_resumed
            self.second_arrived.set()


def race(first: Callable[[], Any], second: Callable[[], Any], overlap: Overlap) -> list[Any]:
    """Run ``first`` in a thread until it is paused inside its change, then ``second`` here;
    the outcome of each, or the MfactlError it raised. Both were inside at once."""
    outcomes: list[Any] = [None, None]

    def run(index: int, work: Callable[[], Any]) -> None:
        try:
            outcomes[index] = work()
        except MfactlError as exc:
            outcomes[index] = exc

    thread = threading.Thread(target=run, args=(0, first))
    thread.start()
    assert overlap.first_inside.wait(WAIT), "the first change never reached its pause"
    run(1, second)
    overlap.second_arrives()  # at the latest when it is done (for a second that takes no lock)
    thread.join(WAIT)
    assert not thread.is_alive()
    assert overlap.together, "the second change did not arrive while the first was paused"
    return outcomes


def pausing(target: Any, name: str, monkeypatch: pytest.MonkeyPatch) -> Overlap:
    """Make ``target.name`` pause, once, in the thread that calls it first, after it returns,
    until the second change arrives; by default, the second arrives when it is done."""
    original = getattr(target, name)
    overlap = Overlap()

    def paused(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        overlap.pause_first()
        return result

    monkeypatch.setattr(target, name, paused)
    return overlap


def arriving_at_the_lock(overlap: Overlap, monkeypatch: pytest.MonkeyPatch) -> Overlap:
    """The second change arrives when it asks for the user's lock, which the first holds: the
    first goes on, and the second waits for it there."""
    original = lookup.lock_users

    def lock_users(*args: Any, **kwargs: Any) -> None:
        overlap.second_arrives()
        original(*args, **kwargs)

    monkeypatch.setattr(lookup, "lock_users", lock_users)
    return overlap


def arriving_at_a_write(overlap: Overlap, engine: Engine, table: str) -> Overlap:
    """The second change arrives when it is about to update ``table`` (it has read the rows);
    ``engine`` is the test's own, thrown away after it."""

    def before_cursor_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith(f"UPDATE {table.upper()}"):
            overlap.second_arrives()

    event.listen(engine, "before_cursor_execute", before_cursor_execute)
    return overlap


@pytest.fixture
def mailing(app: App, tmp_path: Path) -> App:
    """The app, writing its emails as files."""
    email = replace(Email(), transport="file", file_dir=str(tmp_path / "mail"))
    app.settings = replace(app.settings, email=email)
    return app


def live_tokens(app: App) -> list[int]:
    with app.uow() as uow:
        query = select(RememberToken.id).where(RememberToken.revoked_at.is_(None))
        return list(uow.session.scalars(query))


def test_a_remember_me_token_issued_during_a_reset_does_not_survive_it(
    app: App, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    people(app, "alice")
    enrolled(app)
    # the token is drawn after the "MFA is active" check and before the INSERT
    paused = arriving_at_the_lock(
        pausing(remember.secrets, "token_urlsafe", monkeypatch), monkeypatch
    )
    issued, done = race(
        lambda: remember.issue(app, "acme", "alice"),
        lambda: reset.reset_user(app, "acme", "alice", "stolen laptop", send_email=False),
        paused,
    )
    assert done.had_mfa == "active"
    assert live_tokens(app) == []  # the reset came second and revoked it
    monkeypatch.undo()
    clock.advance(30)
    enrolled(app)  # a new phone
    assert not remember.check(app, "acme", "alice", issued.token)


def test_enrolling_again_while_the_first_enrollment_is_confirmed_never_activates_the_second(
    app: App, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    people(app, "alice")
    first_uri = enrollment.enable_user(app, "acme", "alice").otpauth_uri
    assert first_uri is not None
    # the confirmation pauses after opening the pending secret, before activating it
    paused = arriving_at_the_lock(pausing(app.secrets, "open_secret", monkeypatch), monkeypatch)
    confirmed, again = race(
        lambda: enrollment.confirm_user(app, "acme", "alice", phone_code(first_uri, app.now())),
        lambda: enrollment.enable_user(app, "acme", "alice"),
        paused,
    )
    monkeypatch.undo()
    assert isinstance(confirmed, enrollment.Enrollment)  # it held the lock: it went first
    assert isinstance(again, Conflict)  # so MFA was active when the second one looked
    clock.advance(30)
    assert verification.verify(app, "acme", "alice", phone_code(first_uri, app.now())).ok


def test_a_check_in_flight_finishes_before_a_reset_removes_the_secret(
    app: App, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    people(app, "alice")
    enrolled(app)
    clock.advance(30)
    # a wrong code's check pauses under alice's lock, after reading her secret; meanwhile an
    # admin resets alice
    paused = arriving_at_the_lock(pausing(verification, "_locked_secret", monkeypatch), monkeypatch)
    checked, done = race(
        lambda: verification.verify(app, "acme", "alice", "000000"),
        lambda: reset.reset_user(app, "acme", "alice", "lost phone", send_email=False),
        paused,
    )
    # the check held alice's lock: it counted its failure, then the reset removed the secret
    # (before the lock, the reset could delete the row between the two, and the count failed)
    assert checked.result == "wrong"
    assert done.had_mfa == "active"
    with app.uow() as uow:
        assert uow.session.scalars(select(MfaSecret)).all() == []


def test_a_wrong_code_compared_without_the_lock_is_counted_after_a_reset_as_not_enrolled(
    app: App, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    people(app, "alice")
    enrolled(app)
    clock.advance(30)
    # a login's check compares without the lock; it pauses there until a reset has gone through
    paused = pausing(app.secrets, "open_secret", monkeypatch)
    checked, done = race(
        lambda: verification.verify(app, "acme", "alice", "000000"),
        lambda: reset.reset_user(app, "acme", "alice", "lost phone", send_email=False),
        paused,
    )
    # its failure is counted under the lock, from a fresh read: the reset came first, so there
    # is no secret to count against (one order, never a failure on a removed secret)
    assert checked.result == "not_enrolled"
    assert done.had_mfa == "active"
    with app.uow() as uow:
        assert uow.session.scalars(select(MfaSecret)).all() == []


def test_a_right_code_read_before_a_reset_and_new_enrollment_is_not_accepted(
    app: App, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    people(app, "alice")
    old_phone = enrolled(app)
    clock.advance(30)
    code = phone_code(old_phone, clock())

    def replaced() -> None:
        reset.reset_user(app, "acme", "alice", "lost phone", send_email=False)
        enrolled(app)  # her new phone, active at once

    # the old phone's right code is read and compared without the lock, and pauses before its
    # UPDATE until alice has a new secret
    paused = pausing(app.secrets, "open_secret", monkeypatch)
    checked, _ = race(lambda: verification.verify(app, "acme", "alice", code), replaced, paused)
    # the UPDATE finds another secret than the one compared: the check is done again under the
    # lock against the new secret, and the old phone's code is wrong there
    assert checked.result == "wrong"
    with app.uow() as uow:
        [secret] = uow.session.scalars(select(MfaSecret)).all()
        assert secret.failed_attempts == 1


def test_a_new_secret_at_the_same_step_does_not_take_a_code_of_the_old_one(
    app: App, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    people(app, "alice")
    old_phone = enrolled(app)  # its code of this step accepted: the last step read below
    code = phone_code(old_phone, clock(), 1)  # the old phone's next code: right, and unused

    def replaced() -> None:
        reset.reset_user(app, "acme", "alice", "lost phone", send_email=False)
        enrolled(app)  # the new phone confirmed at the same step: the same last step

    paused = pausing(app.secrets, "open_secret", monkeypatch)
    checked, _ = race(lambda: verification.verify(app, "acme", "alice", code), replaced, paused)
    # the row read and the row now agree on every count; only the sealed secret tells them
    # apart, and the UPDATE holds it: the check is done again against the new secret
    assert checked.result == "wrong"


def test_a_right_code_read_before_a_wrong_one_was_counted_is_throttled(
    app: App, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    people(app, "alice")
    uri = enrolled(app)
    clock.advance(30)
    paused = pausing(app.secrets, "open_secret", monkeypatch)
    checked, other = race(
        lambda: verification.verify(app, "acme", "alice", phone_code(uri, clock())),
        lambda: verification.verify(app, "acme", "alice", "000000"),
        paused,
    )
    # the wrong code was counted between the read and the UPDATE: the right code's UPDATE
    # misses, and under the lock it meets the back-off the failure started
    assert other.result == "wrong"
    assert checked.result == "throttled"


def test_a_link_replaced_while_it_is_being_opened_is_either_used_first_or_refused(
    mailing: App, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = mailing
    people(app, "alice")
    reset.send_enroll_email(app, "acme", "alice")
    old = token_in(mails_of(app)[0])
    opened = links.open_link(app, "acme", old)
    # the confirmation pauses right after reading the link; meanwhile a new link is sent
    paused = arriving_at_the_lock(pausing(links, "_checked_token", monkeypatch), monkeypatch)
    confirmed, resent = race(
        lambda: links.confirm_link(app, "acme", old, phone_code(opened.otpauth_uri, app.now())),
        lambda: reset.send_reset_email(app, "acme", "alice"),
        paused,
    )
    monkeypatch.undo()
    # the confirmation held alice's lock, so it came first; the new link is then refused,
    # because her MFA is active: never an active MFA from a link that had been replaced
    assert isinstance(confirmed, links.ConfirmedLink)
    assert isinstance(resent, Conflict) and "already active" in resent.message


def test_a_link_opened_while_a_reset_replaces_it_leaves_one_coherent_state(
    mailing: App, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = mailing
    people(app, "alice")
    enrolled(app)
    reset.reset_user(app, "acme", "alice", "lost phone")
    old = token_in(mails_of(app)[0])
    paused = arriving_at_the_lock(
        pausing(secrets_module, "token_urlsafe", monkeypatch), monkeypatch
    )
    # the reset pauses while drawing its new link (holding alice's lock); the old link is
    # opened meanwhile and must wait, then finds itself replaced
    done, opened = race(
        lambda: reset.reset_user(app, "acme", "alice", "second reset", send_email=True),
        lambda: links.open_link(app, "acme", old),
        paused,
    )
    monkeypatch.undo()
    assert done.email.status == "sent"
    assert isinstance(opened, Conflict) and "replaced" in opened.message
    with app.uow() as uow:
        assert uow.session.scalars(select(MfaSecret)).all() == []  # nothing pending from it


def test_database_failures_become_documented_errors() -> None:
    from sqlalchemy.exc import IntegrityError, OperationalError

    deadlock = OperationalError("UPDATE …", {}, Exception("deadlock detected\nDETAIL: …"))
    gone = OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    duplicate = IntegrityError("INSERT …", {}, Exception("duplicate key value"))
    assert isinstance(from_database(deadlock), Conflict)
    assert "run it again" in from_database(deadlock).message  # type: ignore[union-attr]
    timeout = OperationalError("UPDATE …", {}, Exception("canceling statement due to lock timeout"))
    assert isinstance(from_database(timeout), Conflict)
    assert isinstance(from_database(gone), Unavailable)
    assert isinstance(from_database(duplicate), Conflict)
    assert from_database(ValueError("not the database")) is None


def test_the_api_survives_the_server_closing_its_pooled_connections(
    postgres_url: str, clock: FrozenClock, active_key: str
) -> None:
    import mfactl.api
    from mfactl.db.engine import make_engine, upgrade_schema
    from tests.conftest import make_app

    engine = make_engine(postgres_url)
    upgrade_schema(engine)
    engine.dispose()
    application = make_app(postgres_url, clock, active_key)
    try:
        from tests.conftest import _wipe

        _wipe(application)
        people(application, "alice")
        uri = enrolled(application, "alice")
        mfa = mfactl.api.Mfa(application)
        clock.advance(30)
        assert mfa.verify("acme", "alice", phone_code(uri, clock())).ok  # a pooled connection
        assert application.engine.pool.checkedin() >= 1
        admin = create_engine(postgres_url, poolclass=NullPool)
        with admin.connect() as conn:  # the server restarts, as it were
            ended = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar()
        admin.dispose()
        assert ended >= 1
        clock.advance(30)
        assert mfa.verify("acme", "alice", phone_code(uri, clock())).ok
    finally:
        application.close()


def test_a_user_lock_not_had_in_time_on_sqlite_is_unavailable_not_a_traceback(
    sqlite_app: App, clock: FrozenClock
) -> None:
    import sqlite3

    from sqlalchemy import event

    import mfactl.api

    people(sqlite_app, "alice")
    uri = enrolled(sqlite_app, "alice")
    sqlite_app.engine.dispose()

    @event.listens_for(sqlite_app.engine, "connect")
    def impatient(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=200")  # instead of 30 s

    other = sqlite3.connect(sqlite_app.engine.url.database or "", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        clock.advance(30)
        with pytest.raises(Unavailable, match="database is locked"):
            mfactl.api.Mfa(sqlite_app).verify("acme", "alice", phone_code(uri, clock()))
    finally:
        other.rollback()
        other.close()
    assert mfactl.api.Mfa(sqlite_app).verify("acme", "alice", phone_code(uri, clock())).ok


@pytest.mark.parametrize("right", [True, False])
def test_a_check_during_an_online_key_migration_gives_the_right_answer(
    app: App, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch, right: bool
) -> None:
    from mfactl.crypto import generate_key
    from mfactl.services import keys
    from tests.conftest import make_app

    people(app, "alice")
    uri = enrolled(app)
    clock.advance(30)
    old = app.settings.secret_store.active_key
    rotated = make_app(app.settings.database.url, clock, generate_key(), rolling_key=old)
    code = phone_code(uri, clock()) if right else "000000"
    # the check pauses after opening the secret; the migration re-encrypts it meanwhile
    paused = arriving_at_a_write(
        pausing(rotated.secrets, "open_secret", monkeypatch), rotated.engine, "mfa_secrets"
    )
    try:
        checked, report = race(
            lambda: verification.verify(rotated, "acme", "alice", code),
            lambda: keys.migrate(rotated),
            paused,
        )
    finally:
        rotated.close()
    assert report.migrated == 1
    assert checked.result == ("ok" if right else "wrong")
    with app.uow() as uow:
        [secret] = uow.session.scalars(select(MfaSecret)).all()
        assert secret.failed_attempts == (0 if right else 1)  # a wrong code is counted


def test_invitations_read_the_state_under_the_locks(
    mailing: App, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mfactl.services.selection import UserFilter

    app = mailing
    people(app, "alice")
    uri = enrollment.enable_user(app, "acme", "alice").otpauth_uri
    assert uri is not None
    # the bulk invitation pauses after selecting alice (pending), before taking the locks;
    # meanwhile she confirms her enrollment
    paused = pausing(reset, "_targets", monkeypatch)
    invited, confirmed = race(
        lambda: reset.invite_users(app, UserFilter(org="acme")),
        lambda: enrollment.confirm_user(app, "acme", "alice", phone_code(uri, app.now())),
        paused,
    )
    assert confirmed.state == "active"
    assert invited.selected == 1 and invited.skipped == 1 and invited.sent == 0
    assert mails_of(app) == []  # no invitation to enroll for someone enrolled
