"""TOTP maths against the RFC 6238 appendix B test vectors."""

from __future__ import annotations

import base64

import pytest

from mfactl import totp

SEEDS = {
    "SHA1": b"12345678901234567890",
    "SHA256": b"12345678901234567890123456789012",
    "SHA512": b"1234567890123456789012345678901234567890123456789012345678901234",
}
VECTORS = [  # (unix time, SHA1, SHA256, SHA512), 8 digits, 30 s
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]


@pytest.mark.parametrize("moment,sha1,sha256,sha512", VECTORS)
def test_rfc6238_vectors(moment: int, sha1: str, sha256: str, sha512: str) -> None:
    for algorithm, expected in (("SHA1", sha1), ("SHA256", sha256), ("SHA512", sha512)):
        secret = base64.b32encode(SEEDS[algorithm]).decode()
        params = totp.TotpParams(algorithm=algorithm, digits=8, period=30)
        assert totp.code_at(secret, moment, params) == expected
        assert totp.code_at(secret, moment, totp.TotpParams(algorithm, 6, 30)) == expected[2:]
        assert totp.match(secret, expected, moment, params, 0).step == moment // 30


def test_window_and_drift() -> None:
    secret = totp.new_secret()
    params = totp.TotpParams()
    now = 1_700_000_000
    early = totp.code_at(secret, now - 30, params)
    assert totp.match(secret, early, now, params, 1).step == now // 30 - 1
    late = totp.code_at(secret, now - 5 * 30, params)
    result = totp.match(secret, late, now, params, 1, look_for_drift=True)
    assert result.step is None and result.drift_steps == -5
    assert totp.match(secret, "000000x", now, params, 1, look_for_drift=True).step is None


def test_only_the_whole_code_matches() -> None:
    secret = totp.new_secret()
    params = totp.TotpParams()
    now = 1_700_000_000
    code = totp.code_at(secret, now, params)
    assert totp.match(secret, f" {code[:3]} {code[3:]} ", now, params, 1).step == now // 30
    for partial in ("", code[:1], code[:5], code + "0"):
        assert totp.match(secret, partial, now, params, 1, look_for_drift=True) == totp.Match(
            None, None
        ), partial


def test_the_drift_search_goes_40_steps_either_way_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = base64.b32encode(SEEDS["SHA1"]).decode()
    params = totp.TotpParams(digits=8)
    now = 1_700_000_010
    assert totp.DRIFT_SEARCH_STEPS == 40
    for steps in (-40, 40):
        late = totp.code_at(secret, now + steps * 30, params)
        assert totp.match(secret, late, now, params, 1, look_for_drift=True) == totp.Match(
            None, steps
        )
        assert totp.match(secret, late, now, params, 1) == totp.Match(None, None)
    too_far = totp.code_at(secret, now - 41 * 30, params)
    assert totp.match(secret, too_far, now, params, 1, look_for_drift=True) == totp.Match(
        None, None
    )
    computed = []
    code_at_step = totp.code_at_step

    def counted(secret: str, step: int, params: totp.TotpParams) -> str:
        computed.append(step)
        return code_at_step(secret, step, params)

    monkeypatch.setattr(totp, "code_at_step", counted)
    totp.match(secret, "00000000", now, params, 0)
    assert len(computed) == 1  # each wrong code costs the window's HMACs, no more
    totp.match(secret, "00000000", now, params, 0, look_for_drift=True)
    assert len(computed) == 1 + 1 + 80


def test_uri_shape() -> None:
    uri = totp.provisioning_uri(
        "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", totp.TotpParams(), "Example Platform", "alice"
    )
    assert uri.startswith(
        "otpauth://totp/Example%20Platform:alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    )
    assert "issuer=Example%20Platform" in uri


def test_secret_validation() -> None:
    assert totp.is_valid_secret(totp.new_secret())
    assert totp.is_valid_secret("jbsw y3dp ehpk 3pxp jbsw y3dp")
    assert not totp.is_valid_secret("JBSWY3DPEHPK3PXP")  # 80 bits: too short
    assert not totp.is_valid_secret("0189" * 5)  # not base32
    assert totp.is_valid_secret("A" * 23)  # 115 bits: 14 bytes, the floor
    assert not totp.is_valid_secret("A" * 21)  # 105 bits: 13 bytes
    assert not totp.is_valid_secret("A" * 25)  # 125 bits, but no whole number of bytes


def test_secret_validation_agrees_with_pyotp_at_every_length() -> None:
    import pyotp

    for length in range(1, 65):
        secret = totp.new_secret()[:length] + "A" * max(0, length - 32)

        def pyotp_takes(secret: str = secret) -> bool:
            try:
                pyotp.TOTP(secret).now()
            except ValueError:  # binascii.Error is one: a length base32 cannot decode
                return False
            return True

        assert totp.is_valid_secret(secret) == pyotp_takes(), length


def test_drift_hint_counts_in_words() -> None:
    assert totp.drift_hint(None, 30) == ""
    assert totp.drift_hint(-1, 30) == (
        " (it was valid 1 step earlier: the device clock is about 30 s behind)"
    )
    assert totp.drift_hint(3, 30) == (
        " (it was valid 3 steps later: the device clock is about 90 s ahead)"
    )
