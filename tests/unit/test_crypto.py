from __future__ import annotations

import pytest

from mfactl.config import key_id
from mfactl.crypto import SecretStore, generate_key
from mfactl.errors import ConfigError, SecretStoreError


def test_seal_and_open_with_the_active_key() -> None:
    key = generate_key()
    store = SecretStore(key)
    sealed = store.seal_secret("uid-1", "JBSWY3DPEHPK3PXP")
    assert sealed.key_id == key_id(key)
    assert "JBSWY3DPEHPK3PXP" not in sealed.ciphertext
    assert store.open_secret("uid-1", sealed.ciphertext, "acme/alice").plaintext == (
        "JBSWY3DPEHPK3PXP"
    )


def test_a_ciphertext_copied_to_another_user_is_refused() -> None:
    store = SecretStore(generate_key())
    sealed = store.seal_secret("uid-alice", "JBSWY3DPEHPK3PXP")
    with pytest.raises(SecretStoreError, match="acme/bob is bound to another user") as caught:
        store.open_secret("uid-bob", sealed.ciphertext, "acme/bob")
    assert caught.value.exit_code == 6
    assert "JBSWY3DPEHPK3PXP" not in str(caught.value)


def test_rolling_key_opens_and_reseal_moves_to_active() -> None:
    old, new = generate_key(), generate_key()
    sealed = SecretStore(old).seal_secret("u", "SECRETSECRETSECRET")
    store = SecretStore(new, old)
    opened = store.open_secret("u", sealed.ciphertext, "o/u")
    assert opened.key_id == key_id(old)
    resealed = store.reseal_secret("u", sealed.ciphertext, "o/u")
    assert resealed.key_id == key_id(new)
    assert SecretStore(new).open_secret("u", resealed.ciphertext, "o/u").plaintext == (
        "SECRETSECRETSECRET"
    )


def test_no_configured_key_opens_it() -> None:
    sealed = SecretStore(generate_key()).seal_secret("u", "S" * 32)
    with pytest.raises(SecretStoreError, match="acme/alice cannot be decrypted"):
        SecretStore(generate_key()).open_secret("u", sealed.ciphertext, "acme/alice")


def test_blobs_are_bound_to_their_label() -> None:
    store = SecretStore(generate_key())
    sealed = store.seal_blob("outbox:1", b"hello")
    assert store.open_blob("outbox:1", sealed.ciphertext, "message 1").plaintext == "hello"
    with pytest.raises(SecretStoreError):
        store.open_blob("outbox:2", sealed.ciphertext, "message 2")


def test_missing_active_key_points_to_keys_generate() -> None:
    with pytest.raises(ConfigError) as caught:
        SecretStore("")
    assert caught.value.exit_code == 5
    assert caught.value.hint is not None and "mfactl keys generate" in caught.value.hint


def test_derived_keys_agree_across_stores_and_differ_by_purpose_and_key() -> None:
    import base64
    import hashlib
    import hmac

    active, rolling = generate_key(), generate_key()
    one, two = SecretStore(active), SecretStore(active, rolling)
    # two replicas sharing values.yaml derive the same key: no state to share
    assert one.derived_key("web-session") == two.derived_key("web-session")
    signing_half = base64.urlsafe_b64decode(active)[:16]
    expected = hmac.new(signing_half, b"mfactl-derive:1:web-session", hashlib.sha256).digest()
    assert one.derived_key("web-session") == expected
    assert one.derived_key("web-session") != one.derived_key("web-csrf")
    assert SecretStore(rolling).derived_key("web-session") != one.derived_key("web-session")
    # the rolling key's hash comes second, so what was stored before a rotation still matches
    hashes = two.keyed_hashes("web-session", "abc")
    assert hashes[0] == one.keyed_hashes("web-session", "abc")[0]
    assert hashes[1] == SecretStore(rolling).keyed_hashes("web-session", "abc")[0]
    assert len(one.keyed_hashes("web-session", "abc")) == 1
