"""What every response carries and every POST must show: headers, cookies, Origin, CSRF.

The outermost middleware also keeps the access log (query strings and tokens redacted) and
turns an unexpected error into a plain 500 page, logged by its type and place only: an error's
message may quote data, and no token or secret may reach a log.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
import traceback
from collections.abc import Callable
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SESSION_COOKIE = "mfactl_session"  # the browser's session: holds an opened link
FORM_COOKIE = "mfactl_form"  # binds the link page's button to this browser before a session
_COOKIE_VALUE = re.compile(r"[A-Za-z0-9_-]{43}")
CSP = (
    "default-src 'none'; style-src 'nonce-{nonce}'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
ACCESS = logging.getLogger("mfactl.access")
ERRORS = logging.getLogger("mfactl.web")


def cookie(request: Request, name: str) -> str | None:
    """A cookie of ours, when it has the shape we give it (else it is no session of ours)."""
    value = request.cookies.get(name)
    return value if value is not None and _COOKIE_VALUE.fullmatch(value) else None


def set_cookie(response: Response, request: Request, name: str, value: str) -> None:
    """HttpOnly, SameSite=Strict, and Secure when the page is served over https (directly, or
    through a proxy whose X-Forwarded-Proto counts)."""
    response.set_cookie(
        name,
        value,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def same_origin(request: Request, origins: frozenset[str]) -> bool:
    """A POST from one of our own pages.

    ``Origin`` must be one of ours. Browsers send ``Origin: null`` when the page's referrer
    policy is no-referrer (ours is): then the browser's own ``Sec-Fetch-Site`` must say
    same-origin. A request with neither is refused.
    """
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        return origin.lower() in origins
    return request.headers.get("sec-fetch-site") == "same-origin"


class Guard:
    """Security headers on every response, the access log, and a plain 500 for the unexpected."""

    def __init__(self, app: ASGIApp, shown_path: Callable[[str], str], error_page: Any) -> None:
        self.app = app
        self.shown_path = shown_path
        self.error_page = error_page  # (nonce) -> (html); a page that cannot fail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["csp_nonce"] = nonce
        started = time.perf_counter()
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = CSP.format(nonce=nonce)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
                headers["Cache-Control"] = "no-store"
                headers["X-Frame-Options"] = "DENY"
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            where = traceback.extract_tb(exc.__traceback__)[-1]
            ERRORS.error(
                "unexpected %s in %s %s (%s:%s in %s)",
                type(exc).__name__,
                scope.get("method"),
                self.shown_path(scope.get("path", "")),
                where.filename.rsplit("/", 1)[-1],
                where.lineno,
                where.name,
            )
            if status == 0:  # nothing sent yet: the plain page
                await Response(self.error_page(nonce), 500, media_type="text/html")(
                    scope, receive, send_with_headers
                )
        finally:
            client = scope.get("client")
            query = "?[redacted]" if scope.get("query_string") else ""
            ACCESS.info(
                '%s "%s %s%s HTTP/%s" %s %.1fms',
                client[0] if client else "-",
                scope.get("method"),
                self.shown_path(scope.get("path", "")),
                query,
                scope.get("http_version", "1.1"),
                status,
                (time.perf_counter() - started) * 1000,
            )
