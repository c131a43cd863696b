"""user recovery-codes generate / status / revoke, and users list's recovery_codes."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from mfactl.app import App
from mfactl.services import recovery
from tests.cli.conftest import Mfactl
from tests.conftest import FrozenClock, make_app
from tests.unit.helpers import enrolled, people

CODE = re.compile(r"^[2-9a-z]{4}-[2-9a-z]{4}-[2-9a-z]{4}$")
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture
def shared(sqlite_url: str, clock: FrozenClock, active_key: str) -> Iterator[App]:
    """The CLI's database, seen by the services: acme with alice (MFA active) and bob (none)."""
    app = make_app(sqlite_url, clock, active_key)
    people(app, "alice", "bob")
    enrolled(app, "alice")
    yield app
    app.close()


def test_generate_json_status_and_revoke(mfactl: Mfactl, shared: App) -> None:
    made = mfactl.json("user", "recovery-codes", "generate", "--org", "acme", "--user", "alice")
    assert list(made) == ["org", "user", "codes", "created_at"]
    assert (made["org"], made["user"]) == ("acme", "alice")
    assert len(made["codes"]) == 10 and all(CODE.match(c) for c in made["codes"])
    assert ISO_Z.match(made["created_at"])
    assert recovery.use(shared, "acme", "alice", made["codes"][0]).ok

    status = mfactl.json("user", "recovery-codes", "status", "--org", "acme", "--user", "alice")
    assert status == {
        "org": "acme",
        "user": "alice",
        "remaining": 9,
        "created_at": made["created_at"],
    }
    [alice, bob] = mfactl.json("users", "list")
    assert (alice["recovery_codes"], bob["recovery_codes"]) == (9, None)

    outputs = []
    for args in (
        ("user", "recovery-codes", "status", "--org", "acme", "--user", "alice"),
        ("users", "list"),
        ("users", "list", "--csv"),
        ("audit", "list"),
        ("audit", "list", "--json"),
        ("user", "status", "--org", "acme", "--user", "alice"),
    ):
        result = mfactl(*args)
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    everything = "".join(outputs)
    assert "recovery_code_used" in everything
    leaked = [c for c in made["codes"] for form in (c, c.replace("-", "")) if form in everything]
    assert leaked == []

    revoked = mfactl.json("user", "recovery-codes", "revoke", "--org", "acme", "--user", "alice")
    assert revoked == {"org": "acme", "user": "alice", "revoked": 9}
    assert recovery.use(shared, "acme", "alice", made["codes"][1]).result == "wrong"


def test_generate_prints_the_codes_on_stdout_and_the_note_on_stderr(
    mfactl: Mfactl, shared: App
) -> None:
    result = mfactl("user", "recovery-codes", "generate", "--org", "acme", "--user", "alice")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 10 and all(CODE.match(line) for line in lines)
    assert "shown only now" in result.stderr


def test_generate_refuses_without_active_mfa_with_exit_4(mfactl: Mfactl, shared: App) -> None:
    result = mfactl("user", "recovery-codes", "generate", "--org", "acme", "--user", "bob")
    assert result.exit_code == 4
    assert result.stderr.startswith("error: MFA is not active for acme/bob")
    missing = mfactl("user", "recovery-codes", "status", "--org", "acme", "--user", "nobody")
    assert missing.exit_code == 3


def test_replacing_a_set_asks_on_a_terminal_and_needs_yes_without_one(
    mfactl: Mfactl, shared: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ("user", "recovery-codes", "generate", "--org", "acme", "--user", "alice")
    first = mfactl.json(*args)
    refused = mfactl(*args)
    assert refused.exit_code == 2
    assert "needs confirmation: add --yes" in refused.stderr
    monkeypatch.setattr("mfactl.cli.interact.interactive", lambda: True)
    declined = mfactl(*args, input="n\n")
    assert declined.exit_code == 10
    assert "Replace the recovery codes of acme/alice (10 unused)?" in declined.stderr
    assert recovery.use(shared, "acme", "alice", first["codes"][0]).ok  # the set still works
    replaced = mfactl.json(*args, "--yes")
    assert set(replaced["codes"]).isdisjoint(first["codes"])
    assert recovery.use(shared, "acme", "alice", first["codes"][1]).result == "wrong"


def test_recovery_codes_low_filter(mfactl: Mfactl, shared: App) -> None:
    low = mfactl.json("users", "list", "--recovery-codes-low")
    assert [r["user"] for r in low] == ["alice"]  # active MFA, no codes
    mfactl.json("user", "recovery-codes", "generate", "--org", "acme", "--user", "alice")
    assert mfactl.json("users", "list", "--recovery-codes-low") == []
    table = mfactl("users", "list")
    assert "10 recovery codes" in table.stdout
