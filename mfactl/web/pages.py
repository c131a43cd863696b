"""The setup page's HTML: Jinja2 templates, sandboxed and autoescaped.

Templates are looked up first in ``server.templatesDir`` (when set), then in the packaged
``templates/web`` (the ``mfactl.templates`` package). Every page gets the issuer, and the
organization's name where the page knows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, TemplateNotFound
from jinja2.exceptions import SecurityError
from markupsafe import Markup

from mfactl.errors import ConfigError
from mfactl.templating import sandboxed_environment

_WHO = {
    "org": "acme",
    "org_name": "Acme",
    "user": "alice",
    "user_name": "Alice Example",
    "purpose": "reset",
}
# What each page is given, with values of the real shapes (site.py): every page is rendered with
# these at start, so a broken override (or one the sandbox stops) is found before the server
# serves anyone, not after a confirmation it would show has been committed.
SAMPLE_CONTEXT: dict[str, dict[str, Any]] = {
    "link.html": {**_WHO, "title": "Set up MFA", "csrf": "sample"},
    "step.html": {
        **_WHO,
        "title": "Scan the QR code",
        "action": "/mfa/setup/step",
        "csrf": "sample",
        "qr_svg": Markup("<svg></svg>"),
        "secret": "ABCD EFGH IJKL MNOP",
        "account": "Example Platform: alice",
        "digits": 6,
        "minutes_left": 15,
        "problem": "That code is not right.",
    },
    "done.html": {
        **_WHO,
        "title": "MFA is active",
        "recovery_codes": ("abcd-efgh-jkmn", "pqrs-tuvw-xyz2"),
        "download_href": "data:text/plain;charset=utf-8,sample",
    },
    "error.html": {
        "title": "Not found",
        "message": "This link is not valid.",
        "advice": "Ask your administrator for a new link.",
        "org_name": "Acme",
    },
}
PAGES = tuple(SAMPLE_CONTEXT)


@dataclass(frozen=True)
class Renderer:
    environment: Environment
    issuer: str

    def render(self, name: str, nonce: str, **context: Any) -> str:
        template = self.environment.get_template(name)
        return template.render(issuer=self.issuer, csp_nonce=nonce, **context)


def make_renderer(templates_dir: str | None, issuer: str) -> Renderer:
    """The environment for the pages; each page is rendered once now with sample values, so a
    broken override stops the server at start (exit 5), not a user's request."""
    # the same sandbox as the emails (templating.py): an override folder cannot reach Python
    environment = sandboxed_environment(
        "web", templates_dir, "server.templatesDir", autoescape=True
    )
    renderer = Renderer(environment, issuer)
    for page, context in SAMPLE_CONTEXT.items():
        _check_page(renderer, templates_dir, page, context)
    return renderer


def _check_page(
    renderer: Renderer, templates_dir: str | None, page: str, context: dict[str, Any]
) -> None:
    override = Path(templates_dir, page) if templates_dir else None
    where = str(override) if override is not None and override.exists() else page
    try:
        renderer.environment.get_template(page)
    except TemplateNotFound as exc:
        raise ConfigError(f"the web page template {exc.name} is missing") from None
    except Exception as exc:  # a syntax error, not UTF-8: whatever the file holds, say which
        raise ConfigError(f"the web page template {where} cannot be loaded: {exc}") from None
    try:
        renderer.render(page, "sample-nonce", **context)
    except SecurityError as exc:
        raise ConfigError(
            f"the web page template {where} is refused by the sandbox: {exc}"
        ) from None
    except Exception as exc:  # the template is the administrator's code: any failure is theirs
        reason = str(exc) or type(exc).__name__
        raise ConfigError(f"the web page template {where} cannot be rendered: {reason}") from None


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
