"""TOTP maths on pyotp: secrets, otpauth URIs, time steps, window matching and clock drift."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyotp

DIGESTS: dict[str, Any] = {
    "SHA1": hashlib.sha1,
    "SHA256": hashlib.sha256,
    "SHA512": hashlib.sha512,
}

# How far outside the window `explain` looks for the code, to tell the user their clock is off.
DRIFT_SEARCH_STEPS = 40


@dataclass(frozen=True)
class TotpParams:
    algorithm: str = "SHA1"
    digits: int = 6
    period: int = 30


def stored_params(algorithm: object, digits: object, period: object) -> TotpParams:
    """The parameters stored with a secret, checked: a row written past mfactl's checks may
    hold a period of 0 (the step maths divides by it) or an algorithm pyotp does not have.
    ValueError says which is wrong."""
    if algorithm not in DIGESTS:
        raise ValueError(f"algorithm {str(algorithm)[:20]!r} is not SHA1, SHA256 or SHA512")
    if digits not in (6, 8) or isinstance(digits, bool):
        raise ValueError(f"digits {str(digits)[:20]!r} is not 6 or 8")
    if not isinstance(period, int) or isinstance(period, bool) or period < 1:
        raise ValueError(f"period {str(period)[:20]!r} is not a positive number of seconds")
    return TotpParams(str(algorithm), int(digits), period)


def new_secret() -> str:
    """160 random bits in base32, as RFC 4226 recommends."""
    return pyotp.random_base32(32)


_BASE32 = re.compile(r"[A-Z2-7]+")


def is_valid_secret(secret: str) -> bool:
    """True when ``secret`` is base32 of at least 112 bits (NIST SP 800-63B; pyotp's floor).

    The same rule as pyotp's ``byte_secret``, without decoding: imports check 100,000 of these.
    """
    cleaned = normalize_secret(secret)
    if not _BASE32.fullmatch(cleaned) or len(cleaned) % 8 in (1, 3, 6):
        return False
    return len(cleaned) * 5 // 8 >= 14


def normalize_secret(secret: str) -> str:
    return secret.replace(" ", "").replace("-", "").upper().rstrip("=")


def _totp(secret: str, params: TotpParams, issuer: str | None = None) -> pyotp.TOTP:
    return pyotp.TOTP(
        secret,
        digits=params.digits,
        digest=DIGESTS[params.algorithm],
        interval=params.period,
        issuer=issuer,
    )


def provisioning_uri(secret: str, params: TotpParams, issuer: str, account: str) -> str:
    """otpauth://totp/<issuer>:<account>?secret=…&issuer=…[&algorithm&digits&period]"""
    return _totp(secret, params).provisioning_uri(name=account, issuer_name=issuer)


def code_for_uri(uri: str, moment: datetime | float, steps_later: int = 0) -> str:
    """What an authenticator app that scanned ``uri`` shows at ``moment`` (for demos, tests)."""
    from urllib.parse import parse_qs, urlparse

    query = parse_qs(urlparse(uri).query)
    params = TotpParams(
        query.get("algorithm", ["SHA1"])[0],
        int(query.get("digits", ["6"])[0]),
        int(query.get("period", ["30"])[0]),
    )
    return code_at_step(query["secret"][0], step_at(moment, params.period) + steps_later, params)


def step_at(moment: datetime | float, period: int) -> int:
    ts = moment.timestamp() if isinstance(moment, datetime) else moment
    return int(ts // period)


def code_at_step(secret: str, step: int, params: TotpParams) -> str:
    return _totp(secret, params).generate_otp(step)


def code_at(secret: str, moment: datetime | float, params: TotpParams) -> str:
    return code_at_step(secret, step_at(moment, params.period), params)


def _same(code: str, expected: str) -> bool:
    return hmac.compare_digest(code.encode("ascii", "replace"), expected.encode("ascii"))


@dataclass(frozen=True)
class Match:
    step: int | None  # the accepted step, None when the code matches no step in the window
    drift_steps: int | None  # for a code outside the window: how many steps the clock is off


def looks_like_a_code(code: str, digits: int) -> bool:
    """Could this ever match? A slip of the keyboard (letters, empty, too short or long) cannot."""
    code = code.strip().replace(" ", "")  # as match reads it
    return len(code) == digits and code.isascii() and code.isdigit()


def match(
    secret: str,
    code: str,
    moment: datetime | float,
    params: TotpParams,
    window: int,
    *,
    look_for_drift: bool = False,
) -> Match:
    """Find the step whose code equals ``code`` within ±window of now (constant-time compares).

    Every step of the window is compared, so the time taken does not depend on which matched.
    """
    code = code.strip().replace(" ", "")
    now = step_at(moment, params.period)
    found: int | None = None
    for offset in range(-window, window + 1):
        if _same(code, code_at_step(secret, now + offset, params)) and found is None:
            found = now + offset
    if found is not None or not look_for_drift:
        return Match(found, None if found is None else found - now)
    for distance in range(window + 1, DRIFT_SEARCH_STEPS + 1):
        for offset in (-distance, distance):
            if _same(code, code_at_step(secret, now + offset, params)):
                return Match(None, offset)
    return Match(None, None)


def drift_hint(drift_steps: int | None, period: int) -> str:
    """How a code valid at another step is explained, in the secret's own period: ``""`` or
    `` (it was valid 5 steps earlier: the device clock is about 150 s behind)``."""
    if not drift_steps:
        return ""
    steps = abs(drift_steps)
    direction = "behind" if drift_steps < 0 else "ahead"
    return (
        f" (it was valid {steps} step{'s' if steps != 1 else ''} "
        f"{'earlier' if drift_steps < 0 else 'later'}: "
        f"the device clock is about {steps * period} s {direction})"
    )
