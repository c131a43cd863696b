"""`audit list`: its filters, its JSON, and its table on narrow and wide terminals."""

from __future__ import annotations

import json

import pytest

from tests.cli.conftest import Mfactl
from tests.conftest import FrozenClock


@pytest.fixture
def history(mfactl: Mfactl, clock: FrozenClock) -> Mfactl:
    """Four events an hour apart, 09:00 to 12:00 UTC; the clock stays at 12:00."""
    for step, command in enumerate(
        (
            ("org", "add", "acme", "--name", "Acme Corp"),
            ("user", "add", "--org", "acme", "--user", "alice", "--email", "alice@example.com"),
            ("org", "add", "beta"),
            ("user", "add", "--org", "beta", "--user", "bob", "--email", "bob@example.com"),
        )
    ):
        if step:
            clock.advance(3600)
        assert mfactl(*command).exit_code == 0
    return mfactl


def test_audit_list_json_is_every_event_oldest_first(history: Mfactl) -> None:
    result = history("audit", "list", "--json")
    assert (result.exit_code, result.stderr) == (0, "")
    assert json.loads(result.stdout) == [
        {
            "id": 1,
            "at": "2026-11-01T09:00:00Z",
            "actor": "tester",
            "action": "org.add",
            "org": "acme",
            "user": None,
            "outcome": "ok",
            "details": {"name": "Acme Corp"},
        },
        {
            "id": 2,
            "at": "2026-11-01T10:00:00Z",
            "actor": "tester",
            "action": "user.add",
            "org": "acme",
            "user": "alice",
            "outcome": "ok",
            "details": {"email": "alice@example.com", "admin": False},
        },
        {
            "id": 3,
            "at": "2026-11-01T11:00:00Z",
            "actor": "tester",
            "action": "org.add",
            "org": "beta",
            "user": None,
            "outcome": "ok",
            "details": {"name": "beta"},
        },
        {
            "id": 4,
            "at": "2026-11-01T12:00:00Z",
            "actor": "tester",
            "action": "user.add",
            "org": "beta",
            "user": "bob",
            "outcome": "ok",
            "details": {"email": "bob@example.com", "admin": False},
        },
    ]


@pytest.mark.parametrize(
    ("filters", "ids"),
    [
        (("--org", "acme"), [1, 2]),
        (("--org", "beta"), [3, 4]),
        (("--user", "alice"), [2]),
        (("--user", " Alice "), [2]),  # a handle, as typed
        (("--action", "org.add"), [1, 3]),
        (("--action", "user.*"), [2, 4]),
        (("--action", "user"), []),  # without the star, the whole action
        (("--since", "90m"), [3, 4]),
        (("--since", "2h"), [2, 3, 4]),  # from 10:00 on: the bound is included
        (("--since", "1d"), [1, 2, 3, 4]),
        (("--since", "2026-11-01T10:00:00Z"), [2, 3, 4]),
        (("--since", "2026-11-01T10:00"), [2, 3, 4]),  # no zone: UTC
        (("--since", "2026-11-01T12:00:00+01:00"), [3, 4]),  # 11:00 UTC
        (("--since", "2026-11-02"), []),
        (("--org", "beta", "--action", "user.*"), [4]),
        (("--org", "acme", "--since", "90m"), []),
        (("--limit", "2"), [3, 4]),  # the newest two, still oldest first
        (("--org", "acme", "--limit", "1"), [2]),
    ],
)
def test_audit_list_filters(history: Mfactl, filters: tuple[str, ...], ids: list[int]) -> None:
    assert [e["id"] for e in history.json("audit", "list", *filters)] == ids


def test_audit_table_on_a_wide_terminal_has_a_details_column(history: Mfactl) -> None:
    result = history("audit", "list", "--org", "acme", env={"COLUMNS": "160"})
    assert (result.exit_code, result.stderr) == (0, "")
    # Rich pads each cell to its column's width: the words and their columns are what count
    assert [line.rstrip() for line in result.stdout.splitlines()] == [
        "AT                    ACTOR   ACTION    WHO         OUTCOME  DETAILS",
        "2026-11-01T09:00:00Z  tester  org.add   acme        ok       name=Acme Corp",
        "2026-11-01T10:00:00Z  tester  user.add  acme/alice  ok       "
        "email=alice@example.com admin=False",
    ]


def test_audit_table_on_a_narrow_terminal_puts_details_under_each_event(history: Mfactl) -> None:
    result = history("audit", "list", "--org", "acme", env={"COLUMNS": "60"})
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        "AT                    ACTOR   ACTION    WHO         OUTCOME\n"
        "2026-11-01T09:00:00Z  tester  org.add   acme        ok\n"
        "    name=Acme Corp\n"
        "2026-11-01T10:00:00Z  tester  user.add  acme/alice  ok\n"
        "    email=alice@example.com admin=False\n"
    )


def test_audit_filters(mfactl: Mfactl) -> None:
    mfactl("org", "add", "acme")
    mfactl("org", "add", "beta")
    mfactl("user", "add", "--org", "beta", "--user", "bob", "--email", "bob@example.com")
    assert len(mfactl.json("audit", "list", "--org", "beta")) == 2
    assert len(mfactl.json("audit", "list", "--action", "user.*")) == 1
    assert len(mfactl.json("audit", "list", "--user", "bob")) == 1
    assert len(mfactl.json("audit", "list", "--since", "1h")) == 3
    assert len(mfactl.json("audit", "list", "--since", "2030-01-01")) == 0
    assert mfactl("audit", "list", "--since", "yesterday").exit_code == 2
    newest = mfactl.json("audit", "list", "--limit", "2")
    assert [(e["action"], e["org"]) for e in newest] == [("org.add", "beta"), ("user.add", "beta")]


def test_audit_table_keeps_details_whole_on_any_width(mfactl: Mfactl) -> None:
    mfactl("org", "add", "acme", "--name", "Acme Corporation")
    mfactl("user", "add", "--org", "acme", "--user", "alice", "--email", "alice@example.com")
    narrow = mfactl("audit", "list", env={"COLUMNS": "80"}).stdout.splitlines()
    assert narrow[0].split() == ["AT", "ACTOR", "ACTION", "WHO", "OUTCOME"]
    assert narrow[3].split()[1:] == ["tester", "user.add", "acme/alice", "ok"]
    assert narrow[4] == "    email=alice@example.com admin=False"
    assert max(len(line) for line in narrow) <= 80
    wide = mfactl("audit", "list", env={"COLUMNS": "160"}).stdout.splitlines()
    assert wide[0].split() == ["AT", "ACTOR", "ACTION", "WHO", "OUTCOME", "DETAILS"]
    assert wide[2].split()[1:] == [
        "tester",
        "user.add",
        "acme/alice",
        "ok",
        "email=alice@example.com",
        "admin=False",
    ]


@pytest.mark.parametrize(
    ("since", "message"),
    [
        (
            "yesterday",
            "--since 'yesterday' is neither an ISO 8601 time (2026-11-01, 2026-11-01T08:00Z) "
            "nor a span like 90m, 24h or 7d",
        ),
        (
            "7 d",
            "--since '7 d' is neither an ISO 8601 time (2026-11-01, 2026-11-01T08:00Z) "
            "nor a span like 90m, 24h or 7d",
        ),
        ("99999999d", "--since '99999999d' reaches back before the year 1"),
    ],
)
def test_a_bad_since_is_one_sentence_and_exit_2(history: Mfactl, since: str, message: str) -> None:
    result = history("audit", "list", "--since", since)
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", f"error: {message}\n")
    as_json = history("audit", "list", "--since", since, "--json")
    assert (as_json.exit_code, as_json.stdout) == (2, "")
    assert json.loads(as_json.stderr) == {"error": {"code": "invalid_input", "message": message}}


def test_a_limit_beyond_its_range_is_a_usage_error(mfactl: Mfactl) -> None:
    assert mfactl("audit", "list", "--limit", "99999999999999999999").exit_code == 2


def test_no_events_says_so_on_stderr_and_prints_nothing(mfactl: Mfactl) -> None:
    for args, sentence in [
        (("audit", "list"), "no audit events yet"),
        (("audit", "list", "--org", "acme"), "no audit events match these filters"),
    ]:
        result = mfactl(*args)
        assert (result.exit_code, result.stdout, result.stderr) == (0, "", sentence + "\n")
        assert mfactl.json(*args) == []
    mfactl("org", "add", "acme")
    for filters in (
        ("--org", "beta"),
        ("--user", "bob"),
        ("--action", "user.*"),
        ("--since", "2026-11-02"),
    ):
        result = mfactl("audit", "list", *filters)
        assert (result.exit_code, result.stdout, result.stderr) == (
            0,
            "",
            "no audit events match these filters\n",
        ), filters


def test_user_takes_a_handle_or_an_email_like_every_other_user_option(history: Mfactl) -> None:
    assert history("user", "add", "--org", "beta", "--user", "al", "--email", "alice@example.com")
    by_handle = history.json("audit", "list", "--user", "alice")
    by_email = history.json("audit", "list", "--user", " Alice@Example.com ")
    assert [(e["org"], e["user"]) for e in by_email] == [("acme", "alice"), ("beta", "al")]
    assert by_email[0] == by_handle[0]
    in_beta = history.json("audit", "list", "--user", "alice@example.com", "--org", " BETA ")
    assert [(e["org"], e["user"]) for e in in_beta] == [("beta", "al")]
    nobody = history("audit", "list", "--user", "nobody@example.com")
    assert (nobody.exit_code, nobody.stderr) == (
        3,
        "error: no user has the email 'nobody@example.com'\n",
    )


def test_org_is_matched_whatever_its_case_or_spaces(history: Mfactl) -> None:
    assert history.json("audit", "list", "--org", " ACME ") == history.json(
        "audit", "list", "--org", "acme"
    )


def test_an_event_with_damaged_details_is_marked_and_the_rest_listed(
    mfactl: Mfactl, sqlite_url: str
) -> None:
    from tests.cli.test_user_mfa import damage

    mfactl("org", "add", "acme")
    mfactl("org", "add", "beta")
    damage(sqlite_url, "UPDATE audit_events SET details = '{not json' WHERE id = 1")
    error = (
        "error: 1 audit event could not be read whole (id 1): its details are not valid JSON\n"
        "hint: correct the row from a backup\n"
    )
    table = mfactl("audit", "list")
    assert (table.exit_code, table.stderr) == (5, error)
    assert "[damaged: its details are not valid JSON]" in table.stdout
    assert "name=beta" in table.stdout
    listed = mfactl("audit", "list", "--json")
    assert listed.exit_code == 5
    first, second = json.loads(listed.stdout)
    assert (first["details"], first["damaged"]) == ({}, "its details are not valid JSON")
    assert second["details"] == {"name": "beta"} and "damaged" not in second


def test_an_empty_since_is_refused_not_read_as_ever(history: Mfactl) -> None:
    result = history("audit", "list", "--since", " ")
    assert (result.exit_code, result.stdout, result.stderr) == (
        2,
        "",
        "error: --since is empty: give a time or a span like 24h\n",
    )
