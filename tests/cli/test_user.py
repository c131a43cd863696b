from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import Mfactl


def test_the_basic_sequence(mfactl: Mfactl) -> None:
    assert mfactl("org", "add", "acme", "--name", "Acme").exit_code == 0
    added = mfactl.json(
        "user", "add", "--org", "acme", "--user", "alice", "--email", "alice@example.com", "--admin"
    )
    assert added["user"] == "alice" and added["admin"] is True
    status = mfactl.json("user", "status", "--org", "acme", "--user", "alice")
    assert status["mfa"] == "none" and status["created_at"].endswith("Z")
    events = mfactl.json("audit", "list")
    assert [(e["action"], e["actor"]) for e in events] == [
        ("org.add", "tester"),
        ("user.add", "tester"),
    ]
    human = mfactl("user", "status", "--org", "acme", "--user", "alice@example.com")
    assert human.exit_code == 0 and "mfa:" in human.stdout and human.stderr == ""


def test_duplicate_user_is_exit_4(mfactl: Mfactl) -> None:
    mfactl("org", "add", "acme")
    mfactl("user", "add", "--org", "acme", "--user", "alice", "--email", "alice@example.com")
    result = mfactl("user", "add", "--org", "acme", "--user", "alice", "--email", "a@example.com")
    assert result.exit_code == 4
    assert result.stderr == "error: a user with handle alice already exists in organization acme\n"


def test_crlf_in_email_is_refused(mfactl: Mfactl) -> None:
    mfactl("org", "add", "acme")
    result = mfactl(
        "user",
        "add",
        "--org",
        "acme",
        "--user",
        "eve",
        "--email",
        "eve@example.com\r\nBcc: all@example.com",
    )
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "line break" in result.stderr
    assert mfactl.json("org", "list")[0]["users"] == 0


def test_a_right_to_left_override_in_a_name_is_refused(mfactl: Mfactl) -> None:
    mfactl("org", "add", "acme")
    add = ("user", "add", "--org", "acme", "--user", "eve", "--email", "eve@example.com")
    result = mfactl(*add, "--name", "Eve \u202enimda")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: name 'Eve \\u202enimda' contains a bidirectional control character\n"
    )
    assert mfactl.json("org", "list")[0]["users"] == 0


def test_import_reports_bad_rows_and_imports_nothing(mfactl: Mfactl, tmp_path: Path) -> None:
    mfactl("org", "add", "acme")
    bad = tmp_path / "bad.csv"
    bad.write_text("handle,email\nalice,alice@example.com\nbob,bob@@example.com\n")
    result = mfactl("user", "import", str(bad), "--org", "acme", "--json")
    assert result.exit_code == 2
    error = json.loads(result.stderr)["error"]
    assert error["problems"] == ["line 3: email 'bob@@example.com' is not a valid address"]
    good = tmp_path / "good.csv"
    good.write_text("handle,email,name,admin\nalice,alice@example.com,Alice,yes\n")
    assert mfactl.json("user", "import", str(good), "--org", "acme") == {
        "org": "acme",
        "imported": 1,
        "lowercased": 0,
    }
    one = tmp_path / "one.csv"
    one.write_text("handle,email\nbob,bob@example.com\n")
    result = mfactl("user", "import", str(one), "--org", "acme")
    assert (result.exit_code, result.stderr) == (0, "imported 1 user into acme\n")


def test_import_of_a_semicolon_separated_file_says_so(mfactl: Mfactl, tmp_path: Path) -> None:
    mfactl("org", "add", "acme")
    people = tmp_path / "people.csv"
    people.write_text("handle;email;name\nalice;alice@example.com;Alice\n")
    result = mfactl("user", "import", str(people), "--org", "acme")
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {people} looks separated by ';': mfactl reads comma-separated files (RFC 4180)\n"
    )


def test_no_remember_me_tokens_says_so_on_stderr_and_prints_nothing(mfactl: Mfactl) -> None:
    mfactl("org", "add", "acme")
    mfactl("user", "add", "--org", "acme", "--user", "alice", "--email", "alice@example.com")
    tokens = mfactl("user", "remember", "list", "--org", "acme", "--user", "alice")
    assert (tokens.stdout, tokens.stderr) == ("", "acme/alice has no remember-me tokens\n")


def test_capitals_are_lowercased_and_the_output_says_so(mfactl: Mfactl) -> None:
    org = mfactl("org", "add", "Acme")
    assert (org.exit_code, org.stderr) == (
        0,
        "added organization acme (acme)\nnote: 'Acme' is kept as 'acme' (slugs are lowercase)\n",
    )
    added = mfactl("user", "add", "--org", "acme", "--user", "Hank", "--email", "Hank@Example.com")
    assert (added.exit_code, added.stderr) == (
        0,
        "added user hank <hank@example.com> to acme\n"
        "note: 'Hank' is kept as 'hank' (handles are lowercase)\n"
        "note: 'Hank@Example.com' is kept as 'hank@example.com' (emails are lowercase)\n",
    )
    plain = mfactl("user", "add", "--org", "acme", "--user", "ivy", "--email", "ivy@example.com")
    assert plain.stderr == "added user ivy <ivy@example.com> to acme\n"


def test_import_says_which_capitals_it_lowercased(mfactl: Mfactl, tmp_path: Path) -> None:
    mfactl("org", "add", "acme")
    people = tmp_path / "people.csv"
    people.write_text(
        "handle,email\nJoe,joe@example.com\nann,Ann@Example.com\nkim,kim@example.com\n"
    )
    result = mfactl("user", "import", str(people), "--org", "acme")
    assert (result.exit_code, result.stderr) == (
        0,
        "imported 3 users into acme\n"
        "note: line 2: 'Joe' is kept as 'joe' (handles are lowercase)\n"
        "note: line 3: 'Ann@Example.com' is kept as 'ann@example.com' (emails are lowercase)\n",
    )
    more = tmp_path / "more.csv"
    more.write_text("handle,email\n" + "".join(f"U{n},u{n}@example.com\n" for n in range(5)))
    assert mfactl("user", "import", str(more), "--org", "acme").stderr == (
        "imported 5 users into acme\n"
        "note: line 2: 'U0' is kept as 'u0' (handles are lowercase)\n"
        "note: line 3: 'U1' is kept as 'u1' (handles are lowercase)\n"
        "note: line 4: 'U2' is kept as 'u2' (handles are lowercase)\n"
        "note: and 2 more handles or emails with capitals, kept lowercase\n"
    )
    again = tmp_path / "again.csv"
    again.write_text("handle,email\nLee,lee@example.com\n")
    assert mfactl.json("user", "import", str(again), "--org", "acme") == {
        "org": "acme",
        "imported": 1,
        "lowercased": 1,
    }


def test_an_endless_csv_is_refused_at_the_size_cap(mfactl: Mfactl) -> None:
    mfactl("org", "add", "acme")
    result = mfactl("user", "import", "/dev/zero", "--org", "acme")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: cannot read /dev/zero: it is larger than 64 MiB, the most mfactl reads\n"
    )
    assert mfactl.json("org", "list")[0]["users"] == 0


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        (
            "UPDATE users SET created_at = 'last week' WHERE handle = 'alice'",
            (
                5,
                "error: the row of the user acme/alice is damaged: 'last week' is not a time\n"
                "hint: correct the row from a backup\n",
            ),
        ),
        (
            "UPDATE mfa_secrets SET last_failed_at = 'noon', failed_attempts = 1",
            (
                6,
                "error: the MFA secret of the user acme/alice is damaged: 'noon' is not a time\n"
                "hint: correct the row from a backup, or reset the user's MFA "
                "(`mfactl user reset`)\n",
            ),
        ),
    ],
)
def test_status_names_a_damaged_row(
    mfactl: Mfactl, sqlite_url: str, statement: str, expected: tuple[int, str]
) -> None:
    from tests.cli.test_user_mfa import damage

    mfactl("org", "add", "acme")
    for handle in ("alice", "bob"):
        mfactl("user", "add", "--org", "acme", "--user", handle, "--email", f"{handle}@ex.com")
    mfactl("user", "enable", "--org", "acme", "--user", "alice", "--no-confirm", "--qr", "none")
    damage(sqlite_url, statement)
    result = mfactl("user", "status", "--org", "acme", "--user", "alice")
    assert (result.exit_code, result.stderr) == expected
    assert mfactl("user", "status", "--org", "acme", "--user", "bob").exit_code == 0
