from __future__ import annotations

import pytest

from mfactl.cli import common
from tests.cli.conftest import Mfactl


def test_tables_keep_addresses_whole_and_wrap_free_text(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    monkeypatch.setattr(common, "_consoles", {})
    common.print_table(
        ["recipient", "subject"],
        [("someone.with.a.long.name@example.com", "Your MFA has been reset for acme, " * 3)],
        wrap=("subject",),
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["RECIPIENT", "SUBJECT"]
    assert "someone.with.a.long.name@example.com" in lines[1]
    assert len(lines) > 2  # the subject wrapped instead
    assert all(len(line) <= 60 for line in lines)


HOSTILE = "550 \x1b]0;owned\x07\x1b[2J\u202egnp.exe\x9b"


def test_shown_escapes_what_a_terminal_would_act_on() -> None:
    assert common.for_terminal(HOSTILE) == "550 \\x1b]0;owned\\x07\\x1b[2J\\u202egnp.exe\\x9b"
    assert common.for_terminal("Zoë Ünal <zoe@example.com>") == "Zoë Ünal <zoe@example.com>"


def test_text_from_the_database_reaches_the_terminal_escaped_and_json_exact(
    mfactl: Mfactl, sqlite_url: str
) -> None:
    """A write to the database (or an SMTP server's reply, kept as last_error) cannot rewrite
    the administrator's terminal: tables and messages escape it, JSON keeps it exact."""
    from sqlalchemy import create_engine, update

    from mfactl.db.models import AuditEvent, OutboxMessage, User

    assert mfactl("org", "add", "acme").exit_code == 0
    added = mfactl("user", "add", "--org", "acme", "--user", "bob", "--email", "bob@example.com")
    assert added.exit_code == 0
    assert mfactl("user", "reset", "--org", "acme", "--user", "bob", "--reason", "r", "--yes")
    engine = create_engine(sqlite_url)
    with engine.begin() as db:
        db.execute(update(User).values(display_name=HOSTILE))
        db.execute(update(OutboxMessage).values(last_error=HOSTILE))
        db.execute(update(AuditEvent).values(actor=HOSTILE, details={"reason": HOSTILE}))
    engine.dispose()
    for args in (
        ("users", "list"),
        ("mail", "list"),
        ("audit", "list"),
        ("user", "status", "--org", "acme", "--user", "bob"),
    ):
        result = mfactl(*args, env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        for stream in (result.stdout, result.stderr):
            assert "\x1b" not in stream and "\x07" not in stream and "\u202e" not in stream
            assert "\x9b" not in stream
        assert "\\x1b]0;owned\\x07" in result.stdout, args
    assert mfactl.json("users", "list")[0]["name"] == HOSTILE
    assert mfactl.json("mail", "list")[0]["last_error"] == HOSTILE
    assert {e["actor"] for e in mfactl.json("audit", "list")} == {HOSTILE}


def test_a_confirmation_prompt_escapes_what_the_database_holds(
    mfactl: Mfactl, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The question and the SYSADMIN warning before a reset name users from the database."""
    from sqlalchemy import create_engine, update

    from mfactl.db.models import User

    assert mfactl("org", "add", "acme").exit_code == 0
    for handle in ("bob", "root"):
        email = f"{handle}@example.com"
        admin = ("--admin",) if handle == "root" else ()
        added = mfactl("user", "add", "--org", "acme", "--user", handle, "--email", email, *admin)
        assert added.exit_code == 0, added.output
    engine = create_engine(sqlite_url)
    with engine.begin() as db:
        db.execute(update(User).where(User.handle == "bob").values(email=HOSTILE))
        db.execute(update(User).where(User.handle == "root").values(handle="root" + HOSTILE))
    engine.dispose()
    monkeypatch.setattr("mfactl.cli.interact.interactive", lambda: True)
    for args in (
        ("user", "reset", "--org", "acme", "--user", "bob", "--reason", "r"),
        ("users", "reset", "--org", "acme", "--reason", "r"),
    ):
        declined = mfactl(*args, input="n\n")
        assert declined.exit_code == 10, declined.output
        for char in ("\x1b", "\x07", "\u202e", "\x9b"):
            assert char not in declined.stderr, args
        assert "\\x1b]0;owned\\x07" in declined.stderr, args


@pytest.mark.parametrize("c1", ["\x85", "\x9b"])
def test_c1_controls_are_refused_on_input(mfactl: Mfactl, c1: str) -> None:
    assert mfactl("org", "add", "acme").exit_code == 0
    result = mfactl(
        "user",
        "add",
        "--org",
        "acme",
        "--user",
        "eve",
        "--email",
        "e@example.com",
        "--name",
        f"Eve{c1}",
    )
    assert result.exit_code == 2
    assert "contains a line break or control character" in result.stderr
