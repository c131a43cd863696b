"""The setup page's routes: each one parses the request, calls one service, renders a page.

``GET <link>``: the link's page, changing nothing. ``POST <link>`` (its button): the link is
opened for this browser and the browser sent to ``<link path>/step``, an address without the
token. ``GET <step>``: the QR code and the code field (or the success page once done).
``POST <step>``: the code; the right one answers with the success page and the first recovery
codes (once), or redirects to the step when recovery codes are off. ``GET /healthz``: 200 when
the database answers, else 503.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from mfactl.app import App
from mfactl.config import ApiKey
from mfactl.errors import MfactlError, from_database
from mfactl.services import schema, setup_flow
from mfactl.services.setup_flow import CodeOutcome, DonePage, StepPage, Who
from mfactl.web import api as http_api
from mfactl.web import openapi, paths
from mfactl.web.pages import Renderer, grouped, make_renderer, qr_svg
from mfactl.web.security import (
    ERRORS,
    FORM_COOKIE,
    SESSION_COOKIE,
    Guard,
    cookie,
    same_origin,
    set_cookie,
)

MAX_FORM_BYTES = 4096
ASK = "Ask your administrator for a new link."
_TITLES = {
    400: "This request is not valid",
    403: "This form has expired",
    404: "This link is not valid",
    409: "This link cannot be used here",
    410: "This link no longer works",
    413: "This request is too large",
    500: "Something went wrong",
    503: "The service is unavailable",
}
_PAGE_TITLES = {
    "link.html": "Set up MFA",
    "step.html": "Scan the QR code",
    "done.html": "MFA is active",
}
_PROBLEM_STATUS = {"wrong": 422, "malformed": 422, "throttled": 429, "locked": 423}


@dataclass(frozen=True)
class Site:
    """What the routes share: the App, the pages, where links and steps live."""

    app: App
    pages: Renderer
    links: list[paths.LinkPattern]
    step: str
    origins: frozenset[str]

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        context.setdefault("title", _PAGE_TITLES.get(name, ""))
        html = self.pages.render(name, request.state.csp_nonce, **context)
        return HTMLResponse(html, status)

    def problem(self, request: Request, status: int, message: str, org_name: str = "") -> Response:
        text = message[:1].upper() + message[1:]
        advice = "" if "ask your administrator" in message.lower() else ASK
        if status >= 500:
            advice = "Try again in a few minutes; if it keeps happening, tell your administrator."
        context = {"org_name": org_name, "advice": advice}
        return self.page(
            request,
            "error.html",
            status,
            title=_TITLES.get(status, "Error"),
            message=text,
            **context,
        )

    def failed(self, request: Request, exc: MfactlError, org_name: str = "") -> Response:
        if exc.http_status >= 500:  # the reason is for the log, not for the user
            ERRORS.error("%s: %s", type(exc).__name__, exc.message)
            message = "the server cannot do this right now"
            return self.problem(request, exc.http_status, message, org_name)
        return self.problem(request, exc.http_status, exc.message, org_name)

    def shown_path(self, path: str) -> str:
        for link in self.links:
            if link.path.fullmatch(path):
                return link.shown
        return path


async def _call(
    site: Site, request: Request, function: Callable[..., Any], *args: Any, org: str = ""
) -> Any:
    """Run a service in the thread pool; its MfactlError (or a database one) is the page, which
    names ``org`` (the slug the link carries) like every other page."""
    try:
        return await run_in_threadpool(function, site.app, *args)
    except MfactlError as exc:
        return site.failed(request, exc, await _org_name(site, org))
    except Exception as exc:
        mapped = from_database(exc)
        if mapped is None:
            raise
        return site.failed(request, mapped, await _org_name(site, org))


async def _org_name(site: Site, org: str) -> str:
    """The organization's name for a slug from a link; the slug itself when the database does
    not answer (the page saying so must not fail too)."""
    if not org:
        return ""
    try:
        return str(await run_in_threadpool(setup_flow.org_label, site.app, org))
    except Exception as exc:
        if from_database(exc) is None:
            raise
        return org


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _form(request: Request) -> dict[str, str] | None:
    length = request.headers.get("content-length")
    if length is None or not length.isdigit() or int(length) > MAX_FORM_BYTES:
        return None
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


def _refused(site: Site, request: Request, org_name: str = "") -> Response:
    return site.problem(
        request,
        403,
        "this form was not sent from this page in this browser, so nothing was changed; "
        "go back, reload the page and try again",
        org_name,
    )


def _who_context(who: Who) -> dict[str, Any]:
    return {
        "org": who.org,
        "org_name": who.org_name,
        "user": who.user,
        "user_name": who.user_name,
        "purpose": who.purpose,
    }


async def link_page(request: Request) -> Response:
    site: Site = request.app.state.site
    found = next(
        (m for p in site.links if (m := p.match(request.url.path, request.query_params))), None
    )
    if found is None:
        return site.problem(request, 404, "there is no page at this address")
    org, token = found["org"], found["token"]
    session = cookie(request, SESSION_COOKIE)
    if request.method == "POST":
        return await _open(site, request, org, token, session)
    view = await _call(site, request, setup_flow.look_at_link, org, token, session, org=org)
    if isinstance(view, Response):
        return view
    if view.held_here:  # opened in this browser already: its step
        return RedirectResponse(site.step, 303)
    form_secret = cookie(request, FORM_COOKIE)
    binding = session or form_secret or setup_flow.new_browser_secret()
    csrf = setup_flow.csrf_token(site.app, binding)
    response = site.page(request, "link.html", csrf=csrf, **_who_context(view.who))
    if binding is not session and binding is not form_secret:
        set_cookie(response, request, FORM_COOKIE, binding)
    return response


async def _open(
    site: Site, request: Request, org: str, token: str, session: str | None
) -> Response:
    form = await _form(request)
    if form is None:
        too_large = "the form sent is too large or has no length"
        return site.problem(request, 413, too_large, await _org_name(site, org))
    bindings = [c for c in (session, cookie(request, FORM_COOKIE)) if c]
    sent = form.get("csrf", "")
    if not same_origin(request, site.origins) or not any(
        setup_flow.csrf_ok(site.app, binding, sent) for binding in bindings
    ):
        return _refused(site, request, await _org_name(site, org))
    secret = session or setup_flow.new_browser_secret()
    opened = await _call(
        site, request, setup_flow.open_for_browser, org, token, secret, _client(request), org=org
    )
    if isinstance(opened, Response):
        return opened
    response = RedirectResponse(site.step, 303)
    if session is None:
        set_cookie(response, request, SESSION_COOKIE, secret)
    return response


def recovery_text(view: DonePage) -> str:
    """The recovery codes as the downloaded text file holds them."""
    who = view.who
    lines = [
        f"Recovery codes for {who.user} at {who.org_name} ({who.issuer})",
        "Each code works once, instead of a code from your authenticator app.",
        "",
        *view.recovery_codes,
    ]
    return "\n".join(lines) + "\n"


def _done(site: Site, request: Request, view: DonePage) -> Response:
    """The success page; with the first recovery codes only on the answer to the right code
    (shown once: a reload shows the page without them), offered to print or download."""
    extra: dict[str, Any] = {"recovery_codes": (), "download_href": ""}
    if view.recovery_codes:
        extra = {
            "recovery_codes": view.recovery_codes,
            "download_href": "data:text/plain;charset=utf-8," + quote(recovery_text(view)),
        }
    return site.page(request, "done.html", **_who_context(view.who), **extra)


def _step(
    site: Site,
    request: Request,
    view: StepPage | DonePage,
    session: str,
    status: int = 200,
    problem: str = "",
) -> Response:
    if isinstance(view, DonePage):
        return _done(site, request, view)
    left = (view.held_until - site.app.now()).total_seconds()
    return site.page(
        request,
        "step.html",
        status,
        action=site.step,
        csrf=setup_flow.csrf_token(site.app, session),
        qr_svg=qr_svg(view.otpauth_uri),
        secret=grouped(view.secret),
        account=view.account,
        digits=view.digits,
        minutes_left=max(1, math.ceil(left / 60)),
        problem=problem,
        **_who_context(view.who),
    )


async def step_page(request: Request) -> Response:
    site: Site = request.app.state.site
    session = cookie(request, SESSION_COOKIE)
    if request.method == "POST":
        return await _confirm(site, request, session)
    view = await _call(site, request, setup_flow.step_for_browser, session)
    if isinstance(view, Response):
        return view
    assert session is not None  # a browser without a session has no step
    return _step(site, request, view, session)


def _seconds(count: int | None) -> str:
    return "1 second" if count == 1 else f"{count} seconds"


def _problem_text(outcome: CodeOutcome, digits: int, period_hint: str) -> str:
    if outcome.result == "malformed":
        return f"Enter the {digits}-digit code your app shows (digits only)."
    if outcome.result == "throttled":
        return (
            f"Too many wrong codes: wait {_seconds(outcome.retry_after_seconds)}, then enter the "
            "code your app shows at that moment."
        )
    if outcome.result == "locked":
        return (
            "Too many wrong codes: MFA setup is locked for this account. Ask your administrator "
            "to unlock it."
        )
    text = f"That code is not right. Check that the app shows the account {period_hint}."
    if outcome.drift_steps:
        text += (
            " It would have been right at another time: check that your phone sets its clock"
            " automatically."
        )
    if outcome.retry_after_seconds:
        text += f" Wait {_seconds(outcome.retry_after_seconds)} before the next try."
    return text


async def _confirm(site: Site, request: Request, session: str | None) -> Response:
    form = await _form(request)
    if form is None:
        return site.problem(request, 413, "the form sent is too large or has no length")
    if (
        session is None
        or not same_origin(request, site.origins)
        or not setup_flow.csrf_ok(site.app, session, form.get("csrf", ""))
    ):
        return _refused(site, request)
    code = form.get("code", "")
    done = await _call(
        site, request, setup_flow.confirm_for_browser, session, code, _client(request)
    )
    if isinstance(done, Response):
        return done
    outcome, view = done
    if isinstance(view, DonePage) and view.recovery_codes:
        # the codes exist in this answer only (their hashes are stored): no redirect to lose them
        return _done(site, request, view)
    if outcome.result == "ok" or isinstance(view, DonePage):
        return RedirectResponse(site.step, 303)  # the step shows the success page
    hint = f"{view.who.issuer}: {view.account}"
    response = _step(
        site,
        request,
        view,
        session,
        status=_PROBLEM_STATUS[outcome.result],
        problem=_problem_text(outcome, view.digits, hint),
    )
    if outcome.retry_after_seconds:
        response.headers["Retry-After"] = str(outcome.retry_after_seconds)
    return response


async def healthz(request: Request) -> Response:
    site: Site = request.app.state.site
    answers = await run_in_threadpool(schema.database_answers, site.app)
    return PlainTextResponse("ok" if answers else "database unavailable", 200 if answers else 503)


def _plain_error(nonce: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Error</title></head>'
        "<body><h1>Something went wrong</h1><p>Try again in a few minutes; if it keeps happening, "
        "tell your administrator.</p></body></html>"
    )


def build(
    app: App, templates_dir: str | None = None, api_keys: tuple[ApiKey, ...] = ()
) -> Starlette:
    """The ASGI application for ``app``'s settings: the link paths, the step, /healthz, and the
    HTTP API under /api/v1 (with ``api_keys``, server.apiKeys; none: the API is off)."""
    links_settings = app.settings.email.links
    templates = (links_settings.reset_url, links_settings.enroll_url)
    site = Site(
        app=app,
        pages=make_renderer(templates_dir, app.settings.user_login.mfa.issuer),
        links=paths.patterns(templates),
        step=paths.step_path(links_settings.reset_url),
        origins=frozenset(paths.origin(t) for t in templates),
    )
    api_routes, api = http_api.routes(app, api_keys)
    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        *api_routes,  # before the links' catch-all: /api/v1 is never a link's page
        Route(site.step, step_page, methods=["GET", "POST"]),
        Route("/{path:path}", link_page, methods=["GET", "POST"]),
    ]
    web = Starlette(routes=routes)
    web.state.site = site
    web.state.api = api
    web.state.openapi = openapi.document()
    web.add_middleware(Guard, shown_path=site.shown_path, error_page=_plain_error)
    return web
