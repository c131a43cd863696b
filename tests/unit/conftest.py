"""Fixtures of the service tests."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from mfactl.app import App
from mfactl.config import Email


@pytest.fixture
def mail_app(app: App, tmp_path: Path) -> App:
    app.settings = replace(
        app.settings, email=replace(Email(), transport="file", file_dir=str(tmp_path / "mail"))
    )
    return app
