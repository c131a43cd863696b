"""policy check: the users who break the MFA policy, exit 8 when there are any."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Mfactl, write_values


def test_policy_check(tmp_path: Path, sqlite_url: str, active_key: str) -> None:
    relaxed = Mfactl(write_values(tmp_path / "relaxed.yaml", sqlite_url, active_key))
    relaxed("org", "add", "acme")
    relaxed(
        "user", "add", "--org", "acme", "--user", "alice", "--email", "a@example.com", "--admin"
    )
    relaxed("user", "add", "--org", "acme", "--user", "bob", "--email", "b@example.com")
    clean = relaxed("policy", "check", "--json")
    assert (clean.exit_code, clean.stdout, clean.stderr) == (
        0,
        "[]\n",
        "no user breaks the MFA policy\n",
    )
    strict = Mfactl(
        write_values(
            tmp_path / "strict.yaml",
            sqlite_url,
            active_key,
            "userLogin:\n  mfa: {mandatoryForSysAdmins: true}\n",
        )
    )
    strict("user", "enable", "--org", "acme", "--user", "bob", "--no-confirm", "--qr", "none")
    found = strict("policy", "check", "--json")
    assert found.exit_code == 8
    assert json.loads(found.stdout) == [
        {
            "org": "acme",
            "user": "alice",
            "email": "a@example.com",
            "admin": True,
            "mfa": "none",
            "reason": "MFA is mandatory for sysadmins",
        }
    ]
    assert found.stderr == "1 user breaks the MFA policy\n"
    human = strict("policy", "check")
    assert human.exit_code == 8
    assert human.stdout.splitlines()[1].split()[:5] == [
        "acme",
        "alice",
        "a@example.com",
        "yes",
        "none",
    ]
    assert strict("policy", "check", "--org", "nope").exit_code == 3
