"""Small helpers the service tests share: people, and the authenticator app's side of TOTP."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import parse_qs, urlparse

from mfactl import totp
from mfactl.app import App
from mfactl.services import orgs, users


def people(app: App, *handles: str, admin: tuple[str, ...] = ()) -> None:
    """Organization acme with the given users (admins among them as named)."""
    orgs.add_org(app, "acme", "Acme")
    for handle in handles:
        users.add_user(app, "acme", handle, f"{handle}@example.com", admin=handle in admin)


def secret_of(uri: str) -> str:
    return parse_qs(urlparse(uri).query)["secret"][0]


def phone_code(uri: str, moment: datetime, offset_steps: int = 0) -> str:
    """What the user's authenticator shows for this URI at ``moment`` (± steps)."""
    return totp.code_for_uri(uri, moment, offset_steps)
