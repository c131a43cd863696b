"""Organizations, users, CSV import, status and audit, on every engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from mfactl.app import App
from mfactl.db.models import AuditEvent, User
from mfactl.errors import Conflict, InvalidInput, NotFound
from mfactl.services import audit, orgs, users


def count(app: App, model: type) -> int:
    with app.uow() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(model)) or 0)


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


def test_import_is_all_or_nothing_with_line_numbers(app: App, tmp_path: Path) -> None:
    orgs.add_org(app, "acme")
    users.add_user(app, "acme", "carol", "carol@example.com")
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(
        "handle,email,name,admin\n"
        "alice,alice@example.com,Alice,true\n"
        "bob,not-an-email,Bob,false\n"
        "carol,carol2@example.com,,\n"
        "alice,alice2@example.com,,no\n"
        "dave,dave@example.com,,perhaps\n"
        "erin,erin@example.com,Erin \u202eexe.pdf,no\n"
    )
    with pytest.raises(InvalidInput) as caught:
        users.import_users(app, "acme", csv_file)
    assert caught.value.problems == [
        "line 3: email 'not-an-email' is not a valid address",
        "line 4: user carol already exists in organization acme",
        "line 5: user alice is already on line 2",
        "line 6: admin 'perhaps' must be true or false",
        "line 7: name 'Erin \\u202eexe.pdf' contains a bidirectional control character",
    ]
    assert "nothing was imported" in caught.value.message
    assert count(app, User) == 1


def test_import_adds_everyone(app: App, tmp_path: Path) -> None:
    orgs.add_org(app, "acme")
    csv_file = tmp_path / "people.csv"
    rows = "".join(f"user{i},user{i}@example.com,User {i},{i % 100 == 0}\n" for i in range(3000))
    csv_file.write_text("handle,email,name,admin\n" + rows, encoding="utf-8")
    result = users.import_users(app, "acme", csv_file)
    assert result.imported == 3000
    assert count(app, User) == 3000
    assert users.user_status(app, "acme", "user100").admin is True
    [event] = list(audit.list_events(app, action="user.import"))
    assert event.details == {"file": "people.csv", "imported": 3000}


def test_import_header_is_checked(sqlite_app: App, tmp_path: Path) -> None:
    orgs.add_org(sqlite_app, "acme")
    csv_file = tmp_path / "bad.csv"
    csv_file.write_text("login,mail\nalice,alice@example.com\n")
    with pytest.raises(InvalidInput, match="line 1: the header row"):
        users.import_users(sqlite_app, "acme", csv_file)
    csv_file.write_text("")
    with pytest.raises(InvalidInput, match="empty"):
        users.import_users(sqlite_app, "acme", csv_file)
    csv_file.write_text("handle,email,Email,name\nalice,alice@example.com,a@example.com,Alice\n")
    with pytest.raises(InvalidInput) as caught:
        users.import_users(sqlite_app, "acme", csv_file)
    assert caught.value.message.startswith("line 1: the header row must name the columns ")
    assert caught.value.message.endswith("(handle and email required); duplicated: email")
    for separator, shown in ((";", "';'"), ("\t", "'\\t'")):
        csv_file.write_text(separator.join(("handle", "email", "name")) + "\nbob;bob@x.test;\n")
        with pytest.raises(InvalidInput) as caught:
            users.import_users(sqlite_app, "acme", csv_file)
        assert caught.value.message == (
            f"{csv_file} looks separated by {shown}: mfactl reads comma-separated files (RFC 4180)"
        )
    assert count(sqlite_app, User) == 0


def test_import_with_totp_secrets(app: App, tmp_path: Path) -> None:
    from mfactl import totp
    from mfactl.services import verification

    orgs.add_org(app, "acme")
    secret = totp.new_secret()
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(
        "handle,email,totp_secret,algorithm,digits,period\n"
        f"alice,alice@example.com,{secret.lower()},sha256,8,60\n"
        "bob,bob@example.com,,,,\n"
        f"carol,carol@example.com,{secret},,,\n",
        encoding="utf-8",
    )
    result = users.import_users(app, "acme", csv_file)
    assert result.imported == 3
    alice = users.user_status(app, "acme", "alice")
    assert (alice.mfa, alice.mfa_key_active) == ("active", True)
    assert (alice.algorithm, alice.digits, alice.period) == ("SHA256", 8, 60)
    assert users.user_status(app, "acme", "bob").mfa == "none"
    carol = users.user_status(app, "acme", "carol")
    assert (carol.algorithm, carol.digits, carol.period) == ("SHA1", 6, 30)
    code = totp.code_at(secret, app.now(), totp.TotpParams("SHA256", 8, 60))
    assert verification.verify(app, "acme", "alice", code).ok
    [event] = list(audit.list_events(app, action="user.import"))
    assert event.details == {"file": "people.csv", "imported": 3, "enrolled": 2}
    assert secret not in repr(event.details)


def test_import_refuses_a_bad_secret_with_its_line(app: App, tmp_path: Path) -> None:
    orgs.add_org(app, "acme")
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(
        "handle,email,totp_secret,digits\n"
        "alice,alice@example.com,JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP,\n"
        "bob,bob@example.com,JBSWY3DPEHPK3PXP,\n"
        "carol,carol@example.com,,8\n"
        "dave,dave@example.com,JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP,7\n",
        encoding="utf-8",
    )
    with pytest.raises(InvalidInput) as raised:
        users.import_users(app, "acme", csv_file)
    assert raised.value.problems == [
        "line 3: totp_secret is not base32 of at least 112 bits",
        "line 4: digits given without totp_secret",
        "line 5: digits '7' must be 6 or 8",
    ]
    assert "JBSWY3DPEHPK3PXP" not in repr(raised.value.problems)
    assert count(app, User) == 0


def test_import_never_repeats_a_secret_shifted_into_a_short_column(
    app: App, tmp_path: Path
) -> None:
    orgs.add_org(app, "acme")
    secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    csv_file = tmp_path / "shifted.csv"
    csv_file.write_text(
        "handle,email,admin,totp_secret,algorithm\n"
        f"alice,alice@example.com,{secret},,\n"
        f"bob,bob@example.com,no,{secret},{secret}\n",
        encoding="utf-8",
    )
    with pytest.raises(InvalidInput) as raised:
        users.import_users(app, "acme", csv_file)
    assert raised.value.problems == [
        "line 2: admin (a value of 32 characters) must be true or false",
        "line 3: algorithm (a value of 32 characters) must be SHA1, SHA256 or SHA512",
    ]
