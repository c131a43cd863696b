"""The setup page's HTML: Jinja2 templates, sandboxed and autoescaped.

Templates are looked up first in ``server.templatesDir`` (when set), then in the packaged
``templates/web`` (the ``mfactl.templates`` package). Every page gets the issuer, and the
organization's name where the page knows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2 import Environment
from markupsafe import Markup

from mfactl.errors import ConfigError
from mfactl.templating import sandboxed_environment

PAGES = ("link.html", "step.html", "done.html", "error.html")


@dataclass(frozen=True)
class Renderer:
    environment: Environment
    issuer: str

    def render(self, name: str, nonce: str, **context: Any) -> str:
        template = self.environment.get_template(name)
        return template.render(issuer=self.issuer, csp_nonce=nonce, **context)


def make_renderer(templates_dir: str | None, issuer: str) -> Renderer:
    """The environment for the pages; each page is loaded once now, so a broken override
    stops the server at start, not a user's request."""
    # the same sandbox as the emails (templating.py): an override folder cannot reach Python
    environment = sandboxed_environment(
        "web", templates_dir, "server.templatesDir", autoescape=True
    )
    for page in PAGES:
        try:
            environment.get_template(page)
        except Exception as exc:
            raise ConfigError(f"the web page template {page} cannot be loaded: {exc}") from None
    return Renderer(environment, issuer)


def qr_svg(uri: str) -> Markup:
    """The otpauth URI as an inline SVG QR code (no external resource, no script)."""
    import segno

    svg = segno.make(uri, error="m").svg_inline(
        scale=6, border=4, dark="#000", light="#fff", title="QR code to scan"
    )
    return Markup(svg)  # segno's own markup: the URI inside it is encoded as modules


def grouped(secret: str) -> str:
    """ABCD EFGH …: easier to type into an app by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
