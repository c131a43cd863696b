"""Emailed links: opened, confirmed once, expired, quoted into the configured URL.

On SQLite, PostgreSQL and MariaDB; emails are written as files.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from mfactl.app import App
from mfactl.config import Links
from mfactl.errors import Conflict, NotFound
from mfactl.services import links, reset, users
from tests.conftest import FrozenClock
from tests.unit.helpers import mails, people, phone_code, token_in


def test_link_open_confirm_once_expiry_and_other_org(mail_app: App, clock: FrozenClock) -> None:
    app = mail_app
    people(app, "alice", "bob")
    reset.reset_user(app, "acme", "alice", "lost phone")
    reset.reset_user(app, "acme", "bob", "lost phone")
    alice, bob = (token_in(m) for m in mails(app))

    with pytest.raises(NotFound, match="not valid for organization beta"):
        links.open_link(app, "beta", alice)
    with pytest.raises(NotFound):
        links.open_link(app, "acme", alice[:-1] + ("A" if alice[-1] != "A" else "B"))
    with pytest.raises(Conflict, match="not been opened yet"):
        links.confirm_link(app, "acme", alice, "123456")
    opened = links.open_link(app, "acme", alice)
    with pytest.raises(Conflict, match="already been opened") as reopened:
        links.open_link(app, "acme", alice)  # a second opening (a leaked mail) is refused
    assert reopened.value.exit_code == 4
    with pytest.raises(Conflict, match="the code is wrong"):
        links.confirm_link(app, "acme", alice, "000000")
    clock.advance(1)  # the wrong code's back-off
    links.confirm_link(app, "acme", alice, phone_code(opened.otpauth_uri, app.now()))
    with pytest.raises(Conflict, match="already been used"):
        links.confirm_link(app, "acme", alice, phone_code(opened.otpauth_uri, app.now()))

    clock.advance(72 * 3600)
    with pytest.raises(Conflict, match="has expired") as expired:
        links.open_link(app, "acme", bob)
    assert expired.value.exit_code == 4
    assert users.user_status(app, "acme", "bob").mfa == "none"


def test_links_use_the_configured_url_quoted(mail_app: App) -> None:
    app = mail_app
    app.settings = replace(
        app.settings,
        email=replace(
            app.settings.email,
            links=Links(
                reset_url="https://x.example/r/{org}/{user}?t={token}",
                enroll_url="https://x.example/e?t={token}",
                ttl_hours=1,
            ),
        ),
    )
    people(app, "a.b-c")
    reset.reset_user(app, "acme", "a.b-c", "r")
    text = mails(app)[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert re.search(r"https://x\.example/r/acme/a\.b-c\?t=[A-Za-z0-9_-]{43}\r?\n", text)
    assert "expires on 2026-11-01 10:00 UTC (1 hours from now)" in text


def test_the_library_facade_serves_links(mail_app: App) -> None:
    from mfactl.api import Mfa

    app = mail_app
    people(app, "carol")
    reset.send_enroll_email(app, "acme", "carol")
    token = token_in(mails(app)[0])
    mfa = Mfa(app)
    opened = mfa.open_link("acme", token)
    assert (opened.user, opened.purpose) == ("carol", "enroll")
    assert (
        mfa.confirm_link("acme", token, phone_code(opened.otpauth_uri, app.now())).user == "carol"
    )
    with pytest.raises(Conflict, match="already been used"):
        mfa.open_link("acme", token)
    with pytest.raises(Conflict, match="MFA is already active for acme/carol"):
        reset.send_enroll_email(app, "acme", "carol")
