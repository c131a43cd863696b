"""users list: the listed fields, every filter, and policy compliance, on each engine."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from mfactl.app import App
from mfactl.config import Mfa, UserLogin, key_id
from mfactl.db.models import MfaSecret, RememberToken, User
from mfactl.errors import NotFound
from mfactl.services import orgs, users
from mfactl.services.listing import FIELDS, list_users
from mfactl.services.selection import UserFilter

OLD_KEY_ID = "0123456789ab"  # a key that is no longer the active one
ENROLLED = datetime(2026, 10, 1, 8, 30, 15, 250000, tzinfo=UTC)
USED = datetime(2026, 10, 31, 23, 59, 59, 999999, tzinfo=UTC)


def seed(app: App) -> None:
    """acme: alice (admin, active, active key, 2 live remember tokens), bob (pending, old key),
    carol (no MFA); beta: dave (admin, no MFA), erin (active, old key, locked)."""
    orgs.add_org(app, "acme", "Acme Corp")
    orgs.add_org(app, "beta")
    users.add_user(app, "acme", "alice", "alice@acme.test", name="Alice Liddell", admin=True)
    users.add_user(app, "acme", "bob", "bob@acme.test", name="Bob Ross")
    users.add_user(app, "acme", "carol", "carol@acme.test")
    users.add_user(app, "beta", "dave", "dave@beta.test", name="Dave 100% Sure_", admin=True)
    users.add_user(app, "beta", "erin", "erin@beta.test", name="Erin")
    now = app.now()
    with app.uow() as uow:
        ids = {u.handle: u for u in uow.session.scalars(select(User))}

        def secret(handle: str, state: str, key: str, **extra: object) -> None:
            sealed = app.secrets.seal_secret(ids[handle].uid, "JBSWY3DPEHPK3PXP")
            uow.session.add(
                MfaSecret(
                    user_id=ids[handle].id,
                    state=state,
                    ciphertext=sealed.ciphertext,
                    key_id=key,
                    algorithm="SHA1",
                    digits=6,
                    period=30,
                    created_at=ENROLLED,
                    **extra,
                )
            )

        active = app.secrets.active_key_id
        secret("alice", "active", active, confirmed_at=ENROLLED, last_used_at=USED)
        secret("bob", "pending", OLD_KEY_ID)
        secret("erin", "active", OLD_KEY_ID, confirmed_at=ENROLLED, locked=True)
        for n, (expires, revoked) in enumerate(
            [
                (now + timedelta(days=3), None),
                (now + timedelta(seconds=1), None),
                (now - timedelta(seconds=1), None),  # expired
                (now + timedelta(days=3), now),  # revoked
            ]
        ):
            uow.session.add(
                RememberToken(
                    user_id=ids["alice"].id,
                    token_hash=f"{n:064d}",
                    created_at=now,
                    expires_at=expires,
                    revoked_at=revoked,
                )
            )
        uow.commit()


def handles(app: App, **filters: object) -> list[str]:
    return [f"{row['org']}/{row['user']}" for row in list_users(app, UserFilter(**filters))]


def with_policy(app: App, **mfa: object) -> App:
    settings = replace(app.settings, user_login=UserLogin(mfa=Mfa(**mfa)))  # type: ignore[arg-type]
    return App(settings=settings, clock=app.clock, actor=app.actor)


def test_every_field_of_every_user(app: App) -> None:
    seed(app)
    rows = list(list_users(app, UserFilter()))
    assert all(tuple(row) == FIELDS for row in rows)
    assert rows == [
        {
            "org": "acme",
            "user": "alice",
            "email": "alice@acme.test",
            "name": "Alice Liddell",
            "admin": True,
            "mfa": "active",
            "mfa_key_active": True,
            "enrolled_at": "2026-10-01T08:30:15Z",
            "last_used_at": "2026-10-31T23:59:59Z",
            "locked": False,
            "remember_tokens": 2,
            "compliant": True,
            "recovery_codes": None,
        },
        {
            "org": "acme",
            "user": "bob",
            "email": "bob@acme.test",
            "name": "Bob Ross",
            "admin": False,
            "mfa": "pending",
            "mfa_key_active": False,
            "enrolled_at": None,
            "last_used_at": None,
            "locked": False,
            "remember_tokens": 0,
            "compliant": True,
            "recovery_codes": None,
        },
        {
            "org": "acme",
            "user": "carol",
            "email": "carol@acme.test",
            "name": "",
            "admin": False,
            "mfa": "none",
            "mfa_key_active": None,
            "enrolled_at": None,
            "last_used_at": None,
            "locked": False,
            "remember_tokens": 0,
            "compliant": True,
            "recovery_codes": None,
        },
        {
            "org": "beta",
            "user": "dave",
            "email": "dave@beta.test",
            "name": "Dave 100% Sure_",
            "admin": True,
            "mfa": "none",
            "mfa_key_active": None,
            "enrolled_at": None,
            "last_used_at": None,
            "locked": False,
            "remember_tokens": 0,
            "compliant": True,
            "recovery_codes": None,
        },
        {
            "org": "beta",
            "user": "erin",
            "email": "erin@beta.test",
            "name": "Erin",
            "admin": False,
            "mfa": "active",
            "mfa_key_active": False,
            "enrolled_at": "2026-10-01T08:30:15Z",
            "last_used_at": None,
            "locked": True,
            "remember_tokens": 0,
            "compliant": True,
            "recovery_codes": None,
        },
    ]


def test_no_secret_is_listed(app: App) -> None:
    seed(app)
    with app.uow() as uow:
        ciphertexts = list(uow.session.scalars(select(MfaSecret.ciphertext)))
    listed = repr(list(list_users(app, UserFilter())))
    assert "JBSWY3DPEHPK3PXP" not in listed
    assert not any(ct in listed for ct in ciphertexts)


def test_the_list_is_streamed(app: App) -> None:
    seed(app)
    rows = list_users(app, UserFilter())
    assert next(rows)["user"] == "alice"  # a generator: rows come as they are read
    rows.close()  # leaving early closes the cursor and the unit of work


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"org": "beta"}, ["beta/dave", "beta/erin"]),
        ({"org": " ACME "}, ["acme/alice", "acme/bob", "acme/carol"]),
        ({"mfa": "active"}, ["acme/alice", "beta/erin"]),
        ({"mfa": "pending"}, ["acme/bob"]),
        ({"mfa": "none"}, ["acme/carol", "beta/dave"]),
        ({"admins": True}, ["acme/alice", "beta/dave"]),
        ({"stale_key": True}, ["acme/bob", "beta/erin"]),
        ({"locked": True}, ["beta/erin"]),
        ({"search": "LIDDELL"}, ["acme/alice"]),
        ({"search": "beta.test"}, ["beta/dave", "beta/erin"]),
        ({"search": "ro"}, ["acme/bob", "acme/carol"]),  # "Bob Ross", "carol"
        ({"search": "100%"}, ["beta/dave"]),  # LIKE wildcards are literal
        ({"search": "_"}, ["beta/dave"]),
        ({"org": "acme", "mfa": "none"}, ["acme/carol"]),
        ({"admins": True, "mfa": "none"}, ["beta/dave"]),
        ({"stale_key": True, "locked": True, "org": "beta"}, ["beta/erin"]),
        ({"org": "acme", "locked": True}, []),
    ],
)
def test_filters(app: App, filters: dict[str, object], expected: list[str]) -> None:
    seed(app)
    assert handles(app, **filters) == expected


def test_noncompliant_follows_the_policy(app: App) -> None:
    seed(app)
    assert handles(app, noncompliant=True) == []  # MFA is optional by default
    admins = with_policy(app, mandatory_for_sysadmins=True)
    assert handles(admins, noncompliant=True) == ["beta/dave"]
    # the field says what the filter selects: only the admin without MFA breaks this policy
    by_admins = {r["user"]: r["compliant"] for r in list_users(admins, UserFilter())}
    assert [user for user, ok in by_admins.items() if not ok] == ["dave"]
    everyone = with_policy(app, mandatory=True)
    assert handles(everyone, noncompliant=True) == ["acme/bob", "acme/carol", "beta/dave"]
    compliance = {r["user"]: r["compliant"] for r in list_users(everyone, UserFilter())}
    assert compliance == {"alice": True, "bob": False, "carol": False, "dave": False, "erin": True}
    disabled = with_policy(app, enabled=False, mandatory=True)
    assert handles(disabled, noncompliant=True) == []
    everyone.close()
    admins.close()
    disabled.close()


def test_without_an_active_key_every_secret_is_stale(app: App) -> None:
    seed(app)
    store = replace(app.settings.secret_store, active_key="")
    keyless = App(settings=replace(app.settings, secret_store=store), clock=app.clock)
    assert handles(keyless, stale_key=True) == ["acme/alice", "acme/bob", "beta/erin"]
    assert {r["mfa_key_active"] for r in list_users(keyless, UserFilter())} == {False, None}
    keyless.close()


def test_rotated_key_marks_the_old_secrets(app: App) -> None:
    seed(app)
    assert key_id(app.settings.secret_store.active_key) == app.secrets.active_key_id
    active = {r["user"]: r["mfa_key_active"] for r in list_users(app, UserFilter())}
    assert active == {"alice": True, "bob": False, "carol": None, "dave": None, "erin": False}


def test_an_unknown_organization_is_not_found(app: App) -> None:
    seed(app)
    with pytest.raises(NotFound, match="organization 'nope' does not exist"):
        list(list_users(app, UserFilter(org="nope")))


def test_an_empty_database_lists_nothing(app: App) -> None:
    assert list(list_users(app, UserFilter())) == []


def test_rows_come_from_a_server_side_cursor(app: App) -> None:
    from sqlalchemy import event

    seed(app)
    cursors: list[str] = []

    def capture(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "FROM users" in statement:
            cursors.append(type(cursor).__name__)

    event.listen(app.engine, "before_cursor_execute", capture)
    try:
        assert len(list(list_users(app, UserFilter()))) == 5
    finally:
        event.remove(app.engine, "before_cursor_execute", capture)
    # psycopg: a named (server-side) cursor; PyMySQL: an unbuffered one; sqlite3 steps lazily
    expected = {"sqlite": "Cursor", "postgresql": "ServerCursor", "mysql": "SSCursor"}
    assert cursors == [expected[app.engine.dialect.name]]
