"""CSV import: all or nothing, bad rows reported by line, optional TOTP secrets, on every engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from mfactl.app import App
from mfactl.db.models import User
from mfactl.errors import InvalidInput
from mfactl.services import audit, orgs, user_import, users
from tests.unit.helpers import count


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
        user_import.import_users(app, "acme", csv_file)
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
    result = user_import.import_users(app, "acme", csv_file)
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
        user_import.import_users(sqlite_app, "acme", csv_file)
    csv_file.write_text("")
    with pytest.raises(InvalidInput, match="empty"):
        user_import.import_users(sqlite_app, "acme", csv_file)
    csv_file.write_text("handle,email,Email,name\nalice,alice@example.com,a@example.com,Alice\n")
    with pytest.raises(InvalidInput) as caught:
        user_import.import_users(sqlite_app, "acme", csv_file)
    assert caught.value.message.startswith("line 1: the header row must name the columns ")
    assert caught.value.message.endswith("(handle and email required); duplicated: email")
    for separator, shown in ((";", "';'"), ("\t", "'\\t'")):
        csv_file.write_text(separator.join(("handle", "email", "name")) + "\nbob;bob@x.test;\n")
        with pytest.raises(InvalidInput) as caught:
            user_import.import_users(sqlite_app, "acme", csv_file)
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
    result = user_import.import_users(app, "acme", csv_file)
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
        user_import.import_users(app, "acme", csv_file)
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
        user_import.import_users(app, "acme", csv_file)
    assert raised.value.problems == [
        "line 2: admin (a value of 32 characters) must be true or false",
        "line 3: algorithm (a value of 32 characters) must be SHA1, SHA256 or SHA512",
    ]


def test_a_row_of_the_wrong_width_is_reported_in_its_place(sqlite_app: App, tmp_path: Path) -> None:
    orgs.add_org(sqlite_app, "acme")
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(
        "handle,email,name\n"
        "alice,alice@example.com\n"
        "bob,bob@@example.com,Bob\n"
        "carol,carol@example.com,Carol,extra\n"
        "dave,dave@example.com,Dave\n",
        encoding="utf-8",
    )
    with pytest.raises(InvalidInput) as raised:
        user_import.import_users(sqlite_app, "acme", csv_file)
    assert raised.value.message == f"{csv_file} has 3 bad rows; nothing was imported"
    assert raised.value.problems == [
        "line 2: expected 3 fields, found 2",
        "line 3: email 'bob@@example.com' is not a valid address",
        "line 4: expected 3 fields, found 4",
    ]
    assert count(sqlite_app, User) == 0


def test_only_the_first_twenty_problems_are_listed(sqlite_app: App, tmp_path: Path) -> None:
    orgs.add_org(sqlite_app, "acme")
    csv_file = tmp_path / "people.csv"
    rows = "".join(f"user{i},not-an-email-{i}\n" for i in range(25))
    csv_file.write_text("handle,email\n" + rows + "zed,zed@example.com\n", encoding="utf-8")
    with pytest.raises(InvalidInput) as raised:
        user_import.import_users(sqlite_app, "acme", csv_file)
    assert raised.value.message == f"{csv_file} has 25 bad rows; nothing was imported"
    problems = raised.value.problems
    assert len(problems) == 21
    assert problems[0] == "line 2: email 'not-an-email-0' is not a valid address"
    assert problems[19] == "line 21: email 'not-an-email-19' is not a valid address"
    assert problems[20] == "... and 5 more"
    csv_file.write_text("handle,email\nbob,bob@@example.com\n", encoding="utf-8")
    with pytest.raises(InvalidInput) as raised:
        user_import.import_users(sqlite_app, "acme", csv_file)
    assert raised.value.message == f"{csv_file} has 1 bad row; nothing was imported"
    assert count(sqlite_app, User) == 0


def test_a_file_that_cannot_be_read_is_refused(sqlite_app: App, tmp_path: Path) -> None:
    orgs.add_org(sqlite_app, "acme")
    missing = tmp_path / "missing.csv"
    with pytest.raises(InvalidInput) as raised:
        user_import.import_users(sqlite_app, "acme", missing)
    assert raised.value.message == f"file {missing} does not exist"
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("handle,email,name\nzoe,zoe@example.com,Zoë\n".encode("latin-1"))
    with pytest.raises(InvalidInput) as raised:
        user_import.import_users(sqlite_app, "acme", latin1)
    assert raised.value.message == f"file {latin1} is not UTF-8 text"
    with pytest.raises(InvalidInput) as raised:
        user_import.import_users(sqlite_app, "acme", tmp_path)
    assert raised.value.message.startswith(f"cannot read {tmp_path}: ")
    assert count(sqlite_app, User) == 0


def test_an_email_is_one_user_s_in_the_file_and_in_the_organization(
    sqlite_app: App, tmp_path: Path
) -> None:
    orgs.add_org(sqlite_app, "acme")
    users.add_user(sqlite_app, "acme", "carol", "carol@example.com")
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(
        "handle,email\n"
        "alice,alice@example.com\n"
        "carla,Carol@Example.com\n"
        "alicia,ALICE@example.com\n"
        "bob,bob@example.com\n",
        encoding="utf-8",
    )
    with pytest.raises(InvalidInput) as raised:
        user_import.import_users(sqlite_app, "acme", csv_file)
    assert raised.value.problems == [
        "line 3: email carol@example.com already belongs to a user of acme",
        "line 4: email alice@example.com is already on line 2",
    ]
    assert count(sqlite_app, User) == 1
