"""Keys of the HTTP API: made once, stored only as a hash, matched in constant time.

A key is 32 random bytes (256 bits, URL-safe base64 with an ``mfk_`` prefix that makes it
recognisable in a leak scan). It has full entropy, so one SHA-256 is as good a stored form as a
slow password hash, and it is cheap enough to check on every request of the login path.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from mfactl.config import ApiKey
from mfactl.errors import InvalidInput
from mfactl.services import validation

PREFIX = "mfk_"
_ALL = "*"


@dataclass(frozen=True)
class NewKey:
    key: str  # shown once; nothing keeps it
    entry: ApiKey  # what goes under server.apiKeys

    def to_json(self) -> dict[str, object]:
        """`api-key create --json`: {"name", "key", "entry": {"name", "orgs", "hash"}}."""
        return {"name": self.entry.name, "key": self.key, "entry": entry_json(self.entry)}


def entry_json(entry: ApiKey) -> dict[str, object]:
    return {"name": entry.name, "orgs": list(entry.orgs), "hash": entry.hash}


def key_hash(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def create(name: str, orgs: list[str]) -> NewKey:
    """A new key for ``name`` (the audit actor), limited to ``orgs`` (none given: all)."""
    actor = validation.actor(name, "--name")
    if _ALL in orgs:
        raise InvalidInput('--org "*" is not a slug: leave --org out for every organization')
    slugs = sorted({validation.org_slug(org) for org in orgs}) if orgs else [_ALL]
    key = PREFIX + secrets.token_urlsafe(32)
    return NewKey(key, ApiKey(actor, tuple(slugs), key_hash(key)))


def match(keys: tuple[ApiKey, ...], presented: str) -> ApiKey | None:
    """The configured key whose hash is the presented key's; each compared in constant time,
    and every one of them, so the time taken says nothing about which matched."""
    digest = key_hash(presented)
    found = None
    for entry in keys:
        if hmac.compare_digest(entry.hash, digest):
            found = entry
    return found
