"""Fernet keys as text, checked and fingerprinted without importing cryptography (the settings
load on every command, and most never decrypt anything)."""

from __future__ import annotations

import base64
import binascii
import hashlib

_URL_SAFE = str.maketrans("-_", "+/")


def key_problem(key: str) -> str | None:
    """Why ``key`` is not a Fernet key, or None when it is one."""
    try:
        # validated strictly: the lenient decoder drops what is not base64, so "KEY1 KEY2" (two
        # keys pasted into one setting) would pass as KEY1
        raw = base64.b64decode(key.strip().translate(_URL_SAFE).encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return "is not a valid Fernet key (expected 32 url-safe base64-encoded bytes)"
    if len(raw) != 32:
        return "is not a valid Fernet key (expected 32 url-safe base64-encoded bytes)"
    return None


def key_id(key: str) -> str:
    """A short, stable fingerprint of a Fernet key: stored beside each ciphertext, so "under the
    active key" is known without decrypting."""
    raw = base64.urlsafe_b64decode(key.strip().encode("ascii"))
    return hashlib.sha256(b"mfactl-key-id:" + raw).hexdigest()[:12]
