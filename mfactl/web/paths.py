"""Where the setup page answers: the paths of ``email.links.resetUrl`` and ``enrollUrl``.

A link template such as ``https://app.example.com/mfa/setup?org={org}&token={token}`` gives a
path to answer at, the query parameters (or path segments) that carry the organization and the
token, and the public origin that the ``Origin`` check and ``Secure`` cookies go by.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

_PLACEHOLDER = re.compile(r"\{(org|user|token)\}")
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class LinkPattern:
    """One link template, as the server matches requests against it."""

    path: re.Pattern[str]
    query: Mapping[str, str]  # query parameter -> the placeholder it carries
    shown: str  # the path as the access log shows it: no token, no organization

    def match(self, path: str, params: Mapping[str, str]) -> dict[str, str] | None:
        """The placeholders' values in a request (org, token, maybe user), or None."""
        found = self.path.fullmatch(path)
        if found is None:
            return None
        values = dict(found.groupdict())  # the server hands the path percent-decoded
        for parameter, name in self.query.items():
            if parameter not in params:
                return None
            values[name] = params[parameter]
        if "token" not in values:
            return None
        values.setdefault("org", "")
        return values


def pattern(template: str) -> LinkPattern:
    parts = urlsplit(template)
    regex, shown, last = "", "", 0
    for found in _PLACEHOLDER.finditer(parts.path):
        regex += re.escape(parts.path[last : found.start()]) + f"(?P<{found[1]}>[^/]+)"
        shown += parts.path[last : found.start()] + f"[{found[1]}]"
        last = found.end()
    regex += re.escape(parts.path[last:])
    shown += parts.path[last:]
    query = {
        key: carried[1]
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if (carried := _PLACEHOLDER.fullmatch(value))
    }
    return LinkPattern(re.compile(regex or "/"), query, shown or "/")


def patterns(templates: Iterable[str]) -> list[LinkPattern]:
    """One pattern per distinct template path (reset and enroll links often share one)."""
    seen: dict[str, LinkPattern] = {}
    for template in templates:
        made = pattern(template)
        seen.setdefault(made.path.pattern + repr(sorted(made.query.items())), made)
    return list(seen.values())


def origin(url: str) -> str:
    """scheme://host[:port] as a browser sends it in ``Origin`` (no default port)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    port = parts.port
    return f"{scheme}://{host}" + (
        f":{port}" if port and port != _DEFAULT_PORTS.get(scheme) else ""
    )


def step_path(template: str) -> str:
    """Where the step after the link lives: ``<the link's path before any placeholder>/step``.

    Under the link's own path, so a proxy that forwards the link forwards the step too.
    """
    path = urlsplit(template).path
    static = path[: found.start()] if (found := _PLACEHOLDER.search(path)) else path
    return static.rstrip("/") + "/step"
