"""The shapes of slugs, handles, emails and names: one rule each, one clear sentence when broken."""

from __future__ import annotations

import re

from mfactl.errors import InvalidInput

_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_HANDLE = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9_])?")
_EMAIL = re.compile(
    r"(?P<local>[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64})"
    r"@(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1
# The bidirectional controls (embeddings, overrides, isolates, marks): they reorder how a table,
# a log or an email shows the text around them ("Trojan Source", CVE-2021-42574).
_BIDI_CONTROL = re.compile(r"[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def has_control(value: str) -> bool:
    """Does the text hold a line break, a tab or another C0 or C1 control character (or DEL)?"""
    return _CONTROL.search(value) is not None


def has_bidi_control(value: str) -> bool:
    """Does the text hold a bidirectional control that would reorder what is shown around it?"""
    return _BIDI_CONTROL.search(value) is not None


def shown(value: str) -> str:
    """A value as it may appear in a one-line message: quoted, control characters escaped."""
    text = value if len(value) <= 80 else value[:77] + "..."
    return repr(text)


def brief(value: str, limit: int = 12) -> str:
    """A value of a short field (admin, algorithm, digits, period) in a message: a long one is
    not repeated, as it may be a secret that slipped into the wrong column of a CSV file."""
    return shown(value) if len(value) <= limit else f"(a value of {len(value)} characters)"


def org_slug(value: str) -> str:
    slug = value.strip().lower()
    if not _SLUG.fullmatch(slug):
        raise InvalidInput(
            f"organization {shown(value)} is not a valid slug "
            "(lowercase letters, digits and dashes, at most 63)"
        )
    return slug


def handle(value: str) -> str:
    if has_control(value):
        raise InvalidInput(f"user handle {shown(value)} contains a control character")
    cleaned = value.strip().lower()
    if not _HANDLE.fullmatch(cleaned):
        raise InvalidInput(
            f"user handle {shown(value)} is not valid (letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, at most 64)"
        )
    return cleaned


def email(value: str) -> str:
    if has_control(value):
        raise InvalidInput(f"email {shown(value)} contains a line break or control character")
    cleaned = value.strip()
    if len(cleaned) > 254:
        raise InvalidInput(f"email {shown(value)} is longer than 254 characters")
    match = _EMAIL.fullmatch(cleaned)
    if (
        not match
        or ".." in cleaned
        or match["local"].startswith(".")
        or match["local"].endswith(".")
    ):
        raise InvalidInput(f"email {shown(value)} is not a valid address")
    return cleaned.lower()


def display_name(value: str | None) -> str:
    if value is None:
        return ""
    if has_control(value):
        raise InvalidInput(f"name {shown(value)} contains a line break or control character")
    if has_bidi_control(value):
        raise InvalidInput(f"name {shown(value)} contains a bidirectional control character")
    cleaned = value.strip()
    if len(cleaned) > 200:
        raise InvalidInput(f"name {shown(value)} is longer than 200 characters")
    return cleaned


def org_name(value: str | None, slug: str) -> str:
    return display_name(value) or slug


ACTOR_MAX = 200


def actor(value: str, source: str = "--actor") -> str:
    """Who acts, as the audit log records it: one line (a line break would forge a second
    event in `audit list`), not empty, not cut short."""
    name = value.strip()
    if not name:
        raise InvalidInput(f"{source} is empty: name who is acting")
    if has_control(name):
        raise InvalidInput(f"{source} {shown(name)} contains a line break or control character")
    if has_bidi_control(name):
        raise InvalidInput(f"{source} {shown(name)} contains a bidirectional control character")
    if len(name) > ACTOR_MAX:
        raise InvalidInput(f"{source} is longer than {ACTOR_MAX} characters")
    return name
