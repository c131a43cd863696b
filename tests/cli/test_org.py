"""`org add` and `org list`."""

from __future__ import annotations

import json

import pytest

from tests.cli.conftest import Mfactl
from tests.conftest import FrozenClock


def test_org_add_says_what_it_added_and_org_list_shows_it(
    mfactl: Mfactl, clock: FrozenClock
) -> None:
    added = mfactl("org", "add", "acme", "--name", "Acme Corp")
    assert (added.exit_code, added.stdout, added.stderr) == (
        0,
        "",
        "added organization acme (Acme Corp)\n",
    )
    clock.advance(3600)
    unnamed = mfactl("org", "add", "beta")  # the name defaults to the slug
    assert (unnamed.exit_code, unnamed.stderr) == (0, "added organization beta (beta)\n")
    mfactl("user", "add", "--org", "acme", "--user", "bob", "--email", "bob@example.com")
    listing = mfactl("org", "list")
    assert (listing.exit_code, listing.stderr) == (0, "")
    assert listing.stdout == (
        "ORG   NAME       USERS  CREATED             \n"
        "acme  Acme Corp  1      2026-11-01T09:00:00Z\n"
        "beta  beta       0      2026-11-01T10:00:00Z\n"
    )


def test_org_add_and_list_json(mfactl: Mfactl) -> None:
    result = mfactl("org", "add", "acme", "--name", "Acme Corp", "--json")
    assert (result.exit_code, result.stderr) == (0, "")
    assert json.loads(result.stdout) == {
        "org": "acme",
        "name": "Acme Corp",
        "created_at": "2026-11-01T09:00:00Z",
    }
    mfactl("org", "add", "beta")
    mfactl("user", "add", "--org", "beta", "--user", "bob", "--email", "bob@example.com")
    assert mfactl.json("org", "list") == [
        {"org": "acme", "name": "Acme Corp", "users": 0, "created_at": "2026-11-01T09:00:00Z"},
        {"org": "beta", "name": "beta", "users": 1, "created_at": "2026-11-01T09:00:00Z"},
    ]


def test_a_slug_is_trimmed_and_lowercased(mfactl: Mfactl) -> None:
    result = mfactl("org", "add", "  Gamma  ", "--name", "  Gamma Inc  ")
    assert (result.exit_code, result.stderr) == (
        0,
        "added organization gamma (Gamma Inc)\n"
        "note: 'Gamma' is kept as 'gamma' (slugs are lowercase)\n",
    )
    assert [(o["org"], o["name"]) for o in mfactl.json("org", "list")] == [("gamma", "Gamma Inc")]


def test_a_duplicate_org_is_exit_4_and_changes_nothing(mfactl: Mfactl) -> None:
    mfactl("org", "add", "acme", "--name", "Acme Corp")
    again = mfactl("org", "add", "Acme", "--name", "Another Acme")
    assert (again.exit_code, again.stdout, again.stderr) == (
        4,
        "",
        "error: organization acme already exists\n",
    )
    as_json = mfactl("org", "add", "acme", "--json")
    assert (as_json.exit_code, as_json.stdout) == (4, "")
    assert json.loads(as_json.stderr) == {
        "error": {"code": "conflict", "message": "organization acme already exists"}
    }
    assert [o["name"] for o in mfactl.json("org", "list")] == ["Acme Corp"]
    assert [e["action"] for e in mfactl.json("audit", "list")] == ["org.add"]


@pytest.mark.parametrize("slug", ["bad slug", "bad_slug", "acme-", "café", "x" * 64, ""])
def test_an_invalid_slug_is_exit_2_and_adds_nothing(mfactl: Mfactl, slug: str) -> None:
    message = (
        f"organization {slug!r} is not a valid slug (lowercase letters, digits and dashes, "
        "at most 63)"
    )
    result = mfactl("org", "add", slug)
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", f"error: {message}\n")
    as_json = mfactl("org", "add", slug, "--json")
    assert (as_json.exit_code, as_json.stdout) == (2, "")
    assert json.loads(as_json.stderr) == {"error": {"code": "invalid_input", "message": message}}
    assert mfactl.json("org", "list") == []
    assert mfactl.json("audit", "list") == []


def test_the_longest_slug_is_63_characters(mfactl: Mfactl) -> None:
    assert mfactl("org", "add", "x" * 63).exit_code == 0
    assert [o["org"] for o in mfactl.json("org", "list")] == ["x" * 63]


def test_a_right_to_left_override_in_an_org_name_is_refused(mfactl: Mfactl) -> None:
    bad = mfactl("org", "add", "beta", "--name", "Beta \u2067Corp", "--json")
    assert bad.exit_code == 2
    assert json.loads(bad.stderr)["error"] == {
        "code": "invalid_input",
        "message": "name 'Beta \\u2067Corp' contains a bidirectional control character",
    }
    assert mfactl.json("org", "list") == []


def test_an_empty_org_list_says_so_on_stderr_and_prints_nothing(mfactl: Mfactl) -> None:
    result = mfactl("org", "list")
    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        "",
        "no organizations yet: `mfactl org add SLUG` adds one\n",
    )
    assert mfactl.json("org", "list") == []
