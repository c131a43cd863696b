"""The secret store: Fernet keys (active + rolling), key ids, and binding each secret to its user.

A sealed TOTP secret is ``Fernet(b"mfactl-totp:1:" + uid + b":" + secret)``: decrypting checks the
uid, so a ciphertext copied onto another user's row is refused, never accepted. New ciphertext is
always made with the active key; the rolling key only decrypts. Keys derived for a purpose (keyed
token hashes, signatures) come from each Fernet key's signing half in the same way: made under the
active key, checked under the active and then the rolling key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken

from mfactl.config import SecretStoreSettings, key_id
from mfactl.errors import ConfigError, SecretStoreError

_SECRET_PREFIX = b"mfactl-totp:1:"
_BLOB_PREFIX = b"mfactl-blob:1:"
_DERIVE_PREFIX = b"mfactl-derive:1:"


def generate_key() -> str:
    """A new Fernet key, as text."""
    return Fernet.generate_key().decode("ascii")


@dataclass(frozen=True)
class Sealed:
    ciphertext: str
    key_id: str


@dataclass(frozen=True)
class Opened:
    plaintext: str
    key_id: str  # the key that opened it: the active or the rolling one


class SecretStore:
    """Seal and open secrets with MultiFernet semantics, knowing which key did what."""

    def __init__(self, active_key: str, rolling_key: str = "") -> None:
        if not active_key:
            raise ConfigError(
                "secretStore.activeKey is not set, so secrets cannot be sealed or opened",
                hint="generate one with `mfactl keys generate` and put it in values.yaml",
            )
        self.active_key_id = key_id(active_key)
        self.rolling_key_id = key_id(rolling_key) if rolling_key else None
        self._active = Fernet(active_key.encode("ascii"))
        self._keys: list[tuple[str, Fernet]] = [(self.active_key_id, self._active)]
        if rolling_key:
            assert self.rolling_key_id is not None
            self._keys.append((self.rolling_key_id, Fernet(rolling_key.encode("ascii"))))
        self._orders = {
            pair[0]: [pair, *(p for p in self._keys if p is not pair)] for pair in self._keys
        }
        # the signing halves (a Fernet key is signing key + encryption key, 16 bytes each)
        self._signing = [_signing_half(active_key)] + (
            [_signing_half(rolling_key)] if rolling_key else []
        )

    def _try_order(self, first: str | None) -> list[tuple[str, Fernet]]:
        """The keys to try, the one the row names first (no wasted HMAC check in a migration)."""
        return self._orders.get(first, self._keys) if first is not None else self._keys

    @classmethod
    def from_settings(cls, settings: SecretStoreSettings) -> SecretStore:
        return cls(settings.active_key, settings.rolling_key)

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(kid for kid, _ in self._keys)

    # --- TOTP secrets, bound to a user's uid ---------------------------------------------------

    def seal_secret(self, uid: str, secret: str) -> Sealed:
        plaintext = _SECRET_PREFIX + uid.encode("ascii") + b":" + secret.encode("ascii")
        return Sealed(self._active.encrypt(plaintext).decode("ascii"), self.active_key_id)

    def open_secret(
        self, uid: str, ciphertext: str, who: str, *, key_id: str | None = None
    ) -> Opened:
        """Decrypt a user's TOTP secret; ``who`` names the user in errors (org/handle).

        ``key_id`` (the row's stored key id) is only a hint: that key is tried first.
        """
        uid_bytes = _stored_ascii(uid)
        if uid_bytes is None:
            raise SecretStoreError(
                f"the uid stored for {who} is damaged (not ASCII text), so its MFA secret "
                "cannot be checked"
            )
        raw, kid = self._decrypt(ciphertext, f"the MFA secret of {who}", key_id)
        if not raw.startswith(_SECRET_PREFIX):
            raise SecretStoreError(f"the MFA secret stored for {who} is not an mfactl secret")
        bound_uid, _, secret = raw[len(_SECRET_PREFIX) :].partition(b":")
        if not hmac.compare_digest(bound_uid, uid_bytes):
            raise SecretStoreError(
                f"the MFA secret stored for {who} is bound to another user; it was refused"
            )
        return Opened(secret.decode("ascii"), kid)

    def reseal_secret(
        self, uid: str, ciphertext: str, who: str, *, key_id: str | None = None
    ) -> Sealed:
        """Open (checking the binding) and seal again under the active key."""
        opened = self.open_secret(uid, ciphertext, who, key_id=key_id)
        return self.seal_secret(uid, opened.plaintext)

    # --- other sealed data (outbox bodies), bound to a label ----------------------------------

    def seal_blob(self, label: str, data: bytes) -> Sealed:
        plaintext = _BLOB_PREFIX + _b64(label) + b":" + data
        return Sealed(self._active.encrypt(plaintext).decode("ascii"), self.active_key_id)

    def open_blob(
        self, label: str, ciphertext: str, what: str, *, key_id: str | None = None
    ) -> Opened:
        raw, kid = self._decrypt(ciphertext, what, key_id)
        prefix = _BLOB_PREFIX + _b64(label) + b":"
        if not raw.startswith(prefix):
            raise SecretStoreError(f"{what} is bound to something else; it was refused")
        return Opened(raw[len(prefix) :].decode("utf-8"), kid)

    def reseal_blob(
        self, label: str, ciphertext: str, what: str, *, key_id: str | None = None
    ) -> Sealed:
        """Open (checking the label) and seal again under the active key."""
        opened = self.open_blob(label, ciphertext, what, key_id=key_id)
        return self.seal_blob(label, opened.plaintext.encode("utf-8"))

    # --- keys derived for a purpose (signing, keyed hashes) ------------------------------------

    def derived_key(self, purpose: str) -> bytes:
        """HMAC-SHA256 of the purpose under the active key's signing half.

        Every process that shares values.yaml derives the same key, so replicas agree on
        signatures and keyed hashes without sharing any other state.
        """
        return self.derived_keys(purpose)[0]

    def derived_keys(self, purpose: str) -> tuple[bytes, ...]:
        """The purpose's key under the active key, then under the rolling one (if any)."""
        label = _DERIVE_PREFIX + purpose.encode("utf-8")
        return tuple(hmac.new(half, label, hashlib.sha256).digest() for half in self._signing)

    def keyed_hashes(self, purpose: str, data: str) -> tuple[str, ...]:
        """HMAC-SHA256 hex of ``data`` under each of the purpose's keys, the active one first.

        What is stored uses the first; a lookup matches any, so a key rotation does not
        orphan what was hashed under the previous active key.
        """
        raw = data.encode("utf-8")
        return tuple(
            hmac.new(key, raw, hashlib.sha256).hexdigest() for key in self.derived_keys(purpose)
        )

    # --- many at once, for `keys migrate` and `keys verify` -----------------------------------

    def reseal_many(
        self, rows: Iterable[tuple[str, str, str | None]], *, blobs: bool
    ) -> list[str | None]:
        """Open each (binding, ciphertext, key id hint) and seal it again under the active key.

        ``binding`` is the uid for TOTP secrets, the label for blobs. Each answer is the new
        ciphertext, or None for a row that does not open or is bound to something else:
        ``open_secret``/``open_blob`` then say why. The lean loop of the methods above, for a
        million rows.
        """
        seal = self._active.encrypt
        return [
            None if raw is None else seal(raw).decode("ascii")
            for raw in self._open_each(rows, blobs)
        ]

    def open_many(self, rows: Iterable[tuple[str, str, str | None]], *, blobs: bool) -> list[bool]:
        """Whether each (binding, ciphertext, key id hint) opens and is bound to its binding."""
        return [raw is not None for raw in self._open_each(rows, blobs)]

    def _open_each(
        self, rows: Iterable[tuple[str, str, str | None]], blobs: bool
    ) -> Iterator[bytes | None]:
        """Each row's sealed plaintext (prefix and binding included), or None."""
        for binding, ciphertext, hint in rows:
            uid = b"" if blobs else _stored_ascii(binding)
            if uid is None or not isinstance(ciphertext, str):
                yield None  # damaged in the database: open_secret/open_blob say how
                continue
            prefix = _BLOB_PREFIX + _b64(binding) + b":" if blobs else _SECRET_PREFIX + uid + b":"
            raw = None
            token = ciphertext.encode("ascii", "replace")
            for _, fernet in self._try_order(hint):
                try:
                    raw = fernet.decrypt(token)
                    break
                except InvalidToken:
                    continue
            yield raw if raw is not None and raw.startswith(prefix) else None

    def _decrypt(self, ciphertext: str, what: str, first: str | None = None) -> tuple[bytes, str]:
        if not isinstance(ciphertext, str):  # a BLOB written into the row past mfactl
            raise SecretStoreError(f"{what} is damaged: the database holds no text for it")
        token = ciphertext.encode("ascii", "replace")
        for kid, fernet in self._try_order(first):
            try:
                return fernet.decrypt(token), kid
            except InvalidToken:
                continue
        raise SecretStoreError(f"{what} cannot be decrypted with any configured key")


def _stored_ascii(value: object) -> bytes | None:
    """A stored uid as bytes; None for one damaged in the database (a BLOB, non-ASCII text),
    which no sealed secret can be bound to."""
    return value.encode("ascii") if isinstance(value, str) and value.isascii() else None


def outbox_label(message_id: int) -> str:
    """The label an outbox body is sealed with (``seal_blob``): binds it to its outbox row."""
    return f"outbox:{message_id}"


def _signing_half(key: str) -> bytes:
    return base64.urlsafe_b64decode(key.strip().encode("ascii"))[:16]


def _b64(label: str) -> bytes:
    return base64.urlsafe_b64encode(label.encode("utf-8"))
