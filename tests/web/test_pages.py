"""The setup page's templates: an administrator's override renders in the sandbox too."""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError

from mfactl.errors import ConfigError
from mfactl.web.pages import make_renderer


def test_an_override_cannot_reach_python(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "link.html").write_text(
        f"{{{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}}}",
        encoding="utf-8",
    )
    renderer = make_renderer(str(tmp_path), "Example Platform")
    with pytest.raises(SecurityError):
        renderer.render("link.html", "nonce")
    assert not marker.exists()


def test_an_override_folder_that_is_missing_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"server\.templatesDir: .* is not a folder"):
        make_renderer(str(tmp_path / "nowhere"), "Example Platform")
