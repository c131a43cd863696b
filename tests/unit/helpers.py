"""Helpers the service tests share: people, row counts, mail and the authenticator's codes."""

from __future__ import annotations

import email
import re
from dataclasses import replace
from datetime import datetime
from email import policy
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from mfactl import totp
from mfactl.app import App
from mfactl.config import SecretStoreSettings
from mfactl.services import enrollment, orgs, outbox, reset, users


def people(app: App, *handles: str, admin: tuple[str, ...] = ()) -> None:
    """Organization acme with the given users (admins among them as named)."""
    orgs.add_org(app, "acme", "Acme")
    for handle in handles:
        users.add_user(app, "acme", handle, f"{handle}@example.com", admin=handle in admin)


def set_login(app: App, *, mfa: dict[str, Any] | None = None, **remember_me: Any) -> None:
    """Change the app's userLogin.mfa and userLogin.rememberMe settings (by their field names)."""
    login = app.settings.user_login
    login = replace(
        login,
        mfa=replace(login.mfa, **(mfa or {})),
        remember_me=replace(login.remember_me, **remember_me),
    )
    app.settings = replace(app.settings, user_login=login)


def count(app: App, model: type) -> int:
    """How many rows the model's table holds."""
    with app.uow() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(model)) or 0)


def secret_of(uri: str) -> str:
    return parse_qs(urlparse(uri).query)["secret"][0]


def phone_code(uri: str, moment: datetime, offset_steps: int = 0) -> str:
    """What the user's authenticator shows for this URI at ``moment`` (± steps)."""
    return totp.code_for_uri(uri, moment, offset_steps)


def mails(app: App) -> list[email.message.EmailMessage]:
    folder = Path(app.settings.email.file_dir)
    found = []
    for path in sorted(folder.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(message, email.message.EmailMessage)
        found.append(message)
    return found


def token_in(message: email.message.EmailMessage) -> str:
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    [link] = re.findall(r"https://\S+", text)
    return parse_qs(urlparse(link).query)["token"][0]


def enrolled(app: App, handle: str) -> None:
    uri = enrollment.enable_user(app, "acme", handle).otpauth_uri
    assert uri is not None
    enrollment.confirm_user(app, "acme", handle, phone_code(uri, app.now()))


def claim(db: Connection, app: App, ids: list[int]) -> tuple[datetime, list[outbox.ClaimedRow]]:
    """What a sender does first: claim the messages under a lease of its own."""
    lease = outbox.new_lease(app.now())
    return lease, outbox.claim(db, app, ids, True, lease)


def queued(app: App, *handles: str) -> list[int]:
    """Reset the users with the mail server down, so their emails wait; their outbox ids."""
    working = app.settings.email
    app.settings = replace(app.settings, email=replace(working, file_dir="/proc/x"))
    for handle in handles:
        assert reset.reset_user(app, "acme", handle, "r").email.status == "queued"
    app.settings = replace(app.settings, email=working)
    app.__dict__.pop("mail_transport")
    return outbox.due_ids(app, force=True)


def use_keys(app: App, active: str, rolling: str = "") -> None:
    """The secret store as values.yaml has it after its keys were edited (a rotation's steps)."""
    store = SecretStoreSettings(active_key=active, rolling_key=rolling)
    app.settings = replace(app.settings, secret_store=store)
    app.__dict__.pop("secrets", None)
