"""Changes to one user racing each other, on each engine, with the interleaving forced.

Each test pauses one change at the worst moment (after it has read the user's state, before it
writes) while a second change to the same user runs in another thread. The user's lock
(``lookup.lock_users``) makes the second wait for the first, so the outcome is always that of
one order or the other, never a mix of both.
"""

from __future__ import annotations

import secrets as secrets_module
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.pool import NullPool

from mfactl.app import App
from mfactl.config import Email
from mfactl.db.models import MfaSecret, RememberToken
from mfactl.errors import Conflict, MfactlError, Unavailable, from_database
from mfactl.services import enrollment, links, remember, reset, verification
from tests.conftest import FrozenClock
from tests.unit.helpers import people, phone_code
from tests.unit.test_reset import mails as mails_of
from tests.unit.test_reset import token_in
from tests.unit.test_verification import enrolled

PAUSE = 0.5


def race(first: Callable[[], Any], second: Callable[[], Any], paused: threading.Event) -> list[Any]:
    """Run ``first`` in a thread until it signals ``paused`` (it is inside its change), then
    ``second`` here; the outcome of each, or the MfactlError it raised."""
    outcomes: list[Any] = [None, None]

    def run(index: int, work: Callable[[], Any]) -> None:
        try:
            outcomes[index] = work()
        except MfactlError as exc:
            outcomes[index] = exc

    thread = threading.Thread(target=run, args=(0, first))
    thread.start()
    assert paused.wait(10), "the first change never reached its pause"
    run(1, second)
    thread.join(30)
    assert not thread.is_alive()
    return outcomes


def pausing(target: Any, name: str, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Make ``target.name`` pause PAUSE seconds, once, in the thread that calls it first."""
    original = getattr(target, name)
    reached = threading.Event()

    def slow(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if not reached.is_set():
            reached.set()
            time.sleep(PAUSE)
        return result

    monkeypatch.setattr(target, name, slow)
    return reached


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
    paused = pausing(remember.secrets, "token_urlsafe", monkeypatch)
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
    paused = pausing(app.secrets, "open_secret", monkeypatch)
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
    # a wrong code's check pauses after opening the secret; meanwhile an admin resets alice
    paused = pausing(app.secrets, "open_secret", monkeypatch)
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


def test_a_link_replaced_while_it_is_being_opened_is_either_used_first_or_refused(
    mailing: App, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = mailing
    people(app, "alice")
    reset.send_enroll_email(app, "acme", "alice")
    old = token_in(mails_of(app)[0])
    opened = links.open_link(app, "acme", old)
    # the confirmation pauses right after reading the link; meanwhile a new link is sent
    paused = pausing(links, "_checked_token", monkeypatch)
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
    paused = pausing(secrets_module, "token_urlsafe", monkeypatch)
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
    paused = pausing(rotated.secrets, "open_secret", monkeypatch)
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
