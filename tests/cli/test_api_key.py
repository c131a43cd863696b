"""mfactl api-key create: the key once, and an entry values.yaml accepts that matches it."""

from __future__ import annotations

from pathlib import Path

import yaml

from mfactl.config import load_settings
from mfactl.services import api_keys
from tests.cli.conftest import Mfactl


def test_create_prints_the_key_once_and_the_entry_that_holds_its_hash(
    mfactl: Mfactl, tmp_path: Path
) -> None:
    made = mfactl.json("api-key", "create", "--name", "login-server", "--org", "Acme")
    key, entry = made["key"], made["entry"]
    assert made["name"] == entry["name"] == "login-server"
    assert entry["orgs"] == ["acme"]
    assert key.startswith("mfk_") and len(key) == 47  # 32 random bytes
    assert key not in str(entry)
    values = tmp_path / "api.yaml"
    values.write_text(yaml.safe_dump({"server": {"apiKeys": [entry]}}))
    [loaded] = load_settings(values, environ={}).server.api_keys
    assert api_keys.match((loaded,), key) == loaded
    assert api_keys.match((loaded,), key + "x") is None

    every = mfactl("api-key", "create", "--name", "ops")
    assert every.exit_code == 0, every.output
    lines = every.stdout.splitlines()
    assert lines[0].startswith("mfk_")
    pasted = yaml.safe_load("server:\n  apiKeys:\n" + "\n".join(lines[1:]) + "\n")
    [entry] = pasted["server"]["apiKeys"]
    assert entry["orgs"] == ["*"] and entry["hash"] == api_keys.key_hash(lines[0])
    assert "shown once" in every.stderr


def test_create_refuses_a_bad_name_or_organization(mfactl: Mfactl) -> None:
    assert mfactl("api-key", "create", "--name", "a\nb").exit_code == 2
    assert mfactl("api-key", "create", "--name", "a", "--org", "*").exit_code == 2
    assert mfactl("api-key", "create", "--name", "a", "--org", "no good").exit_code == 2
