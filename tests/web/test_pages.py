"""The setup page's templates: an administrator's override renders in the sandbox too."""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError

from mfactl.errors import ConfigError
from mfactl.templating import sandboxed_environment
from mfactl.web.pages import SAMPLE_CONTEXT, Renderer, make_renderer


def test_an_override_cannot_reach_python(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "link.html").write_text(
        f"{{{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}}}",
        encoding="utf-8",
    )
    # past the check at start too (a file changed while serving): each request is sandboxed
    environment = sandboxed_environment(
        "web", str(tmp_path), "server.templatesDir", autoescape=True
    )
    with pytest.raises(SecurityError):
        Renderer(environment, "Example Platform").render("link.html", "nonce")
    assert not marker.exists()


def test_an_override_folder_that_is_missing_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"server\.templatesDir: .* is not a folder"):
        make_renderer(str(tmp_path / "nowhere"), "Example Platform")


@pytest.mark.parametrize("page", ["link.html", "step.html", "done.html", "error.html"])
def test_a_page_the_sandbox_refuses_stops_the_server_at_start(tmp_path: Path, page: str) -> None:
    """Found before anything is committed: the done page renders after MFA is activated."""
    marker = tmp_path / "ran"
    (tmp_path / page).write_text(
        f"{{{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}}}",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as refused:
        make_renderer(str(tmp_path), "Example Platform")
    assert refused.value.message.startswith(
        f"the web page template {tmp_path / page} is refused by the sandbox: "
    )
    assert not marker.exists()


def test_a_page_that_does_not_render_stops_the_server_at_start(tmp_path: Path) -> None:
    (tmp_path / "done.html").write_text("{{ 1 // 0 }} {{ nowhere.name }}", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"done\.html cannot be rendered: "):
        make_renderer(str(tmp_path), "Example Platform")


def test_the_packaged_pages_and_a_good_override_render_at_start(tmp_path: Path) -> None:
    make_renderer(None, "Example Platform")
    (tmp_path / "done.html").write_text(
        '{% extends "base.html" %}{% block main %}<h1>Done, {{ user }}</h1>{% endblock %}',
        encoding="utf-8",
    )
    renderer = make_renderer(str(tmp_path), "Example Platform")
    done = renderer.render("done.html", "nonce", **SAMPLE_CONTEXT["done.html"])
    assert "<h1>Done, alice</h1>" in done
