"""values.example.yaml stays loadable and documents every setting."""

from __future__ import annotations

from pathlib import Path

from mfactl.config import LEAVES, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "values.example.yaml"


def test_example_loads() -> None:
    settings = load_settings(EXAMPLE, environ={})
    assert settings.user_login.mfa.issuer == "Example Platform"


def test_example_names_every_setting() -> None:
    text = EXAMPLE.read_text()
    for leaf in LEAVES:
        assert f"{leaf.rsplit('.', 1)[-1]}:" in text, leaf
