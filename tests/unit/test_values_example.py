"""values.example.yaml stays loadable and documents every setting."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import yaml

from mfactl.config import LEAVES, Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "values.example.yaml"


def test_example_loads() -> None:
    settings = load_settings(EXAMPLE, environ={})
    assert settings.user_login.mfa.issuer == "Example Platform"


def test_example_names_every_setting() -> None:
    text = EXAMPLE.read_text()
    for leaf in LEAVES:
        assert f"{leaf.rsplit('.', 1)[-1]}:" in text, leaf


def given(data: Mapping[str, object], prefix: str = "") -> set[str]:
    """The paths of the settings a values mapping gives."""
    paths = set()
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        paths |= given(value, path) if isinstance(value, Mapping) else {path}
    return paths


def test_example_gives_every_setting_but_the_key_files_which_it_shows_commented() -> None:
    text = EXAMPLE.read_text()
    key_files = {"secretStore.activeKeyFile", "secretStore.rollingKeyFile"}
    assert given(yaml.safe_load(text)) == set(LEAVES) - key_files
    for leaf in key_files:
        assert f"# {leaf.rsplit('.', 1)[-1]}: " in text, leaf


def test_example_shows_the_defaults() -> None:
    # its header says "with none, the defaults below apply"; fileDir, given, becomes its folder's
    settings = load_settings(EXAMPLE, environ={})
    email = replace(Settings().email, file_dir=str(EXAMPLE.parent / "mfactl-mail"))
    assert settings == Settings(email=email, source=EXAMPLE)
