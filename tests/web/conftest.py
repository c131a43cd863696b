"""The setup page through Starlette's TestClient: an App with a frozen clock, links to it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from starlette.testclient import TestClient

from mfactl.app import App
from mfactl.config import Email, Links, Server, Throttle
from mfactl.services import links, lookup
from mfactl.web.server import asgi
from tests.unit.helpers import people

ORIGIN = "http://testserver"
RESET_URL = ORIGIN + "/mfa/setup?org={org}&token={token}"
ENROLL_URL = ORIGIN + "/mfa/enroll?org={org}&token={token}"
STEP = "/mfa/setup/step"


def with_links(app: App, reset_url: str = RESET_URL, enroll_url: str = ENROLL_URL) -> App:
    """The App with its links pointing at the test server (and a throttle that locks)."""
    settings = app.settings
    mfa = replace(
        settings.user_login.mfa,
        throttle=Throttle(base_delay_seconds=1, max_delay_seconds=60, lock_after_failures=5),
    )
    email = Email(links=Links(reset_url=reset_url, enroll_url=enroll_url))
    app.settings = replace(settings, email=email, user_login=replace(settings.user_login, mfa=mfa))
    return app


def new_link(app: App, handle: str = "bob", purpose: str = "reset") -> str:
    """A fresh link for acme/<handle>, as the email would carry it."""
    with app.uow() as uow:
        org, user = lookup.get_org_user(uow.session, "acme", handle)
        [issued] = links.issue_links(
            uow.session, app, [links.LinkTarget(user.id, org.slug, user.handle)], purpose
        )
        uow.commit()
    return issued.url


def browser(app: App, **options: Any) -> TestClient:
    """A client with its own cookies: one browser. POSTs carry our Origin unless told."""
    client = TestClient(
        asgi(app, Server(**options)),
        base_url=ORIGIN,
        follow_redirects=False,
        raise_server_exceptions=False,
    )
    return client


@pytest.fixture
def web_app(sqlite_app: App) -> App:
    application = with_links(sqlite_app)
    people(application, "alice", "bob")
    return application


@pytest.fixture
def client(web_app: App) -> Iterator[TestClient]:
    with browser(web_app) as one:
        yield one
