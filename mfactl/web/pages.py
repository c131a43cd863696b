"""The setup page's HTML: Jinja2 templates, sandboxed and autoescaped.

Templates are looked up first in ``server.templatesDir`` (when set), then in the packaged
``templates/web`` (the ``mfactl.templates`` package). Every page gets the issuer, and the
organization's name where the page knows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
)
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from mfactl.errors import ConfigError

PAGES = ("link.html", "step.html", "done.html", "error.html")


class _PackagedLoader(BaseLoader):
    """The templates shipped in mfactl.templates/web (works from a wheel or a checkout)."""

    def get_source(self, environment: Environment, template: str) -> tuple[str, None, Any]:
        resource = files("mfactl.templates") / "web" / template
        if not resource.is_file():
            raise TemplateNotFound(template)
        return resource.read_text(encoding="utf-8"), None, lambda: True


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
    loaders: list[BaseLoader] = [_PackagedLoader()]
    if templates_dir:
        if not Path(templates_dir).is_dir():
            raise ConfigError(f"server.templatesDir: {templates_dir} is not a folder")
        loaders.insert(0, FileSystemLoader(templates_dir))
    environment = ImmutableSandboxedEnvironment(
        loader=ChoiceLoader(loaders), autoescape=True, undefined=StrictUndefined
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
