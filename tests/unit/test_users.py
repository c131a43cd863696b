"""Organizations, users, status and audit, on every engine."""

from __future__ import annotations

import pytest

from mfactl.app import App
from mfactl.db.models import AuditEvent, User
from mfactl.errors import Conflict, InvalidInput, NotFound
from mfactl.services import audit, orgs, users
from tests.unit.helpers import count


def test_org_and_user_lifecycle(app: App) -> None:
    orgs.add_org(app, "acme", "Acme Corp")
    added = users.add_user(app, "acme", "Alice", "Alice@Example.com", name="Alice", admin=True)
    assert (added.user, added.email, added.admin) == ("alice", "alice@example.com", True)
    status = users.user_status(app, "acme", "alice@example.com")
    assert status.mfa == "none" and status.mfa_key_active is None and status.locked is False
    assert [o.users for o in orgs.list_orgs(app)] == [1]
    actions = [e.action for e in audit.list_events(app)]
    assert actions == ["org.add", "user.add"]
    [event] = list(audit.list_events(app, user="alice"))
    assert event.actor == "tester" and event.org == "acme"


def test_duplicates_are_refused_and_write_nothing(app: App) -> None:
    orgs.add_org(app, "acme")
    users.add_user(app, "acme", "alice", "alice@example.com")
    with pytest.raises(Conflict) as caught:
        orgs.add_org(app, "acme")
    assert caught.value.exit_code == 4
    with pytest.raises(Conflict, match="handle alice"):
        users.add_user(app, "acme", "alice", "other@example.com")
    with pytest.raises(Conflict, match=r"email alice@example\.com"):
        users.add_user(app, "acme", "alice2", "ALICE@example.com")
    assert count(app, User) == 1
    assert count(app, AuditEvent) == 2


@pytest.mark.parametrize(
    "email",
    [
        "alice@example.com\r\nBcc: x@evil.example",
        "alice",
        "a@b",
        "a b@example.com",
        "a..b@example.com",
        "x" * 250 + "@example.com",
    ],
)
def test_bad_emails_are_refused(sqlite_app: App, email: str) -> None:
    orgs.add_org(sqlite_app, "acme")
    with pytest.raises(InvalidInput) as caught:
        users.add_user(sqlite_app, "acme", "alice", email)
    assert caught.value.exit_code == 2
    assert "\n" not in caught.value.message and "\r" not in caught.value.message


BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


@pytest.mark.parametrize("bidi", list(BIDI_CONTROLS), ids=lambda c: f"U+{ord(c):04X}")
def test_bidirectional_controls_are_refused(sqlite_app: App, bidi: str) -> None:
    orgs.add_org(sqlite_app, "acme")
    with pytest.raises(InvalidInput) as caught:
        users.add_user(
            sqlite_app, "acme", "alice", "alice@example.com", name=f"Alice {bidi}fdp.exe"
        )
    assert caught.value.exit_code == 2
    assert caught.value.message == (
        f"name {f'Alice {bidi}fdp.exe'!r} contains a bidirectional control character"
    )
    assert bidi not in caught.value.message  # shown escaped: the message itself is not reordered
    with pytest.raises(InvalidInput, match="bidirectional control character"):
        orgs.add_org(sqlite_app, "beta", f"Beta {bidi}Corp")
    with pytest.raises(InvalidInput, match="is not valid"):
        users.add_user(sqlite_app, "acme", f"alice{bidi}", "alice@example.com")
    with pytest.raises(InvalidInput, match="is not a valid address"):
        users.add_user(sqlite_app, "acme", "alice", f"alice{bidi}@example.com")
    assert count(sqlite_app, User) == 0
    assert [o.slug for o in orgs.list_orgs(sqlite_app)] == ["acme"]


def test_unknown_org_and_user(app: App) -> None:
    with pytest.raises(NotFound, match="organization 'nope' does not exist"):
        users.add_user(app, "nope", "alice", "alice@example.com")
    orgs.add_org(app, "acme")
    with pytest.raises(NotFound, match="user 'ghost' does not exist in organization acme"):
        users.user_status(app, "acme", "ghost")
