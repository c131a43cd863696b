"""Emailed links: opened, confirmed once, expired, quoted into the configured URL.

On SQLite, PostgreSQL and MariaDB; emails are written as files.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import insert, select

from mfactl.app import App
from mfactl.config import Links
from mfactl.crypto import generate_key
from mfactl.db.models import ActionToken, User
from mfactl.errors import Conflict, NotFound
from mfactl.services import links, remember, reset, users
from tests.conftest import FrozenClock
from tests.unit.helpers import enrolled, mails, people, phone_code, token_in, use_keys


def test_link_open_confirm_once_expiry_and_other_org(mail_app: App, clock: FrozenClock) -> None:
    app = mail_app
    people(app, "alice", "bob")
    reset.reset_user(app, "acme", "alice", "lost phone")
    reset.reset_user(app, "acme", "bob", "lost phone")
    alice, bob = (token_in(m) for m in mails(app))

    with pytest.raises(NotFound, match="not valid for organization beta"):
        links.open_link(app, "beta", alice)
    with pytest.raises(NotFound, match=r"^this link is not valid for organization acme$"):
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


def _hand_written_link(app: App, handle: str, token_hash: str) -> None:
    """A link row written straight into the database, as someone with write access could."""
    with app.uow() as uow:
        user_id = uow.session.scalar(select(User.id).where(User.handle == handle))
        uow.session.execute(
            insert(ActionToken),
            [
                {
                    "user_id": user_id,
                    "purpose": "reset",
                    "token_hash": token_hash,
                    "created_at": app.now(),
                    "expires_at": app.now() + timedelta(hours=1),
                }
            ],
        )
        uow.commit()


def test_a_link_row_written_by_hand_opens_nothing(mail_app: App) -> None:
    app = mail_app
    people(app, "root", "mallory", admin=("root",))
    # the plain SHA-256 of a chosen token: what an earlier mfactl stored, so its links end too
    chosen = secrets.token_urlsafe(32)
    _hand_written_link(app, "root", hashlib.sha256(chosen.encode()).hexdigest())
    # mallory's own remember-me token, hashed for root: one purpose's hash is not another's
    enrolled(app, "mallory")
    own = remember.issue(app, "acme", "mallory").token
    with app.uow() as uow:
        root = uow.session.scalar(select(User.uid).where(User.handle == "root"))
    assert root is not None
    _hand_written_link(app, "root", remember.token_hash(app, root, own))

    for token in (chosen, own):
        with pytest.raises(NotFound, match="this link is not valid for organization acme"):
            links.open_link(app, "acme", token)
        with pytest.raises(NotFound):
            links.confirm_link(app, "acme", token, "123456")
    assert users.user_status(app, "acme", "root").mfa == "none"


def test_a_link_outlives_a_key_rotation_until_its_key_is_removed(mail_app: App) -> None:
    app = mail_app
    old, new = app.settings.secret_store.active_key, generate_key()
    people(app, "alice", "bob", "carol")
    reset.reset_user(app, "acme", "alice", "lost phone")
    reset.reset_user(app, "acme", "bob", "lost phone")
    alice, bob = (token_in(m) for m in mails(app))

    use_keys(app, new, rolling=old)  # the rotation: the old key is now the rolling one
    opened = links.open_link(app, "acme", alice)
    links.confirm_link(app, "acme", alice, phone_code(opened.otpauth_uri, app.now()))
    assert users.user_status(app, "acme", "alice").mfa == "active"
    reset.reset_user(app, "acme", "carol", "lost phone")  # made under the new key
    carol = token_in(mails(app)[-1])

    use_keys(app, new)  # the rolling key removed: what only it can check stops working
    with pytest.raises(NotFound):
        links.open_link(app, "acme", bob)
    assert links.open_link(app, "acme", carol).user == "carol"


def test_a_new_link_ends_the_older_links_of_its_purpose_only(mail_app: App) -> None:
    app = mail_app
    people(app, "alice")
    reset.reset_user(app, "acme", "alice", "lost phone")
    reset.send_enroll_email(app, "acme", "alice")  # an invitation as well, say by `users enable`
    reset_link, enroll_link = (token_in(m) for m in mails(app))
    assert links.open_link(app, "acme", reset_link).purpose == "reset"  # still works
    reset.send_enroll_email(app, "acme", "alice")
    with pytest.raises(Conflict, match=r"^this link has expired or was replaced by a newer one;"):
        links.open_link(app, "acme", enroll_link)
