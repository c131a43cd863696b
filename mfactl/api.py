"""mfactl as a library, for a login server: enroll, verify, check the policy, remember devices.

    import mfactl.api

    mfa = mfactl.api.connect(values="/etc/mfactl/values.yaml")
    need = mfa.requirement(org, user, remember_token=cookie)   # allow | enroll | code
    result = mfa.verify(org, user, code)                        # result.ok, result.result

    # the page an emailed reset/enrollment link points to (email.links.resetUrl):
    opened = mfa.open_link(org, token)          # opened.otpauth_uri: show it as a QR code
    mfa.confirm_link(org, token, code)          # activates MFA and uses the link up
                                                # (.recovery_codes: show them to the user once)
    mfa.use_recovery_code(org, user, code)      # the phone is lost: a single-use code instead

It reads the same values.yaml as the ``mfactl`` command and works on the same database, with
the same rules (replay refusal, throttling, sealed secrets, audit events for every change).
Ordinary outcomes are results, not exceptions: a wrong, replayed or throttled code is a
``VerifyResult`` with its reason. Exceptions (all ``MfactlError``) mean the request cannot be
served: unknown org or user (``NotFound``), a state conflict such as enrolling twice
(``Conflict``, also when a concurrent change to the same user got in first), a secret no key
opens (``SecretStoreError``), the database is down or busy past its timeout (``Unavailable``).
One ``Mfa`` object is safe to share between threads.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import ParamSpec, TypeVar

from mfactl.app import App
from mfactl.bootstrap import bootstrap
from mfactl.errors import (
    Conflict,
    MfactlError,
    NotFound,
    SecretStoreError,
    Unavailable,
    from_database,
)
from mfactl.services import enrollment, links, policy, recovery, remember, verification
from mfactl.services.links import ConfirmedLink, OpenedLink
from mfactl.services.policy import LoginRequirement
from mfactl.services.remember import IssuedToken
from mfactl.services.verification import VerifyResult

__all__ = [
    "ConfirmedLink",
    "Conflict",
    "IssuedToken",
    "LoginRequirement",
    "Mfa",
    "MfactlError",
    "NotFound",
    "OpenedLink",
    "SecretStoreError",
    "Unavailable",
    "VerifyResult",
    "connect",
]


P = ParamSpec("P")
R = TypeVar("R")


def _served(method: Callable[P, R]) -> Callable[P, R]:
    """Database failures leave as the documented errors (Unavailable, Conflict), never as
    SQLAlchemy's own exceptions."""

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except MfactlError:
            raise
        except Exception as exc:
            translated = from_database(exc)
            if translated is None:
                raise
            raise translated from exc

    return call


@dataclass
class Mfa:
    """The login server's handle on mfactl; build it with ``connect``."""

    app: App

    @_served
    def requirement(
        self, org: str, user: str, *, remember_token: str | None = None
    ) -> LoginRequirement:
        """After the password check: allow, enroll (first) or code?"""
        return policy.login_requirement(self.app, org, user, remember_token=remember_token)

    @_served
    def enroll(self, org: str, user: str) -> str:
        """Start (or restart) enrollment; returns the otpauth URI to show as a QR code, once."""
        uri = enrollment.enable_user(self.app, org, user).otpauth_uri
        assert uri is not None
        return uri

    @_served
    def confirm(self, org: str, user: str, code: str) -> tuple[str, ...]:
        """Activate the pending enrollment with the first code; Conflict when it is wrong.

        Returns the user's first recovery codes, to show them once (``()`` when
        userLogin.mfa.recoveryCodes.count is 0); only their keyed hashes are stored."""
        confirmed = enrollment.confirm_user(self.app, org, user, code, recovery_codes=True)
        return confirmed.recovery_codes

    @_served
    def verify(self, org: str, user: str, code: str) -> VerifyResult:
        """Check a login code: ok, wrong, replayed, throttled, locked, not_enrolled, or
        malformed (not digits of the right length: neither compared nor counted)."""
        return verification.verify(self.app, org, user, code)

    @_served
    def use_recovery_code(self, org: str, user: str, code: str) -> VerifyResult:
        """Log in with a recovery code instead of a TOTP code: ok (used up; ``.recovery_codes_left``
        says how many remain), wrong (counted in the throttle like a wrong code), throttled,
        locked, not_enrolled, or malformed (not a code's shape: not counted)."""
        return recovery.use(self.app, org, user, code)

    @_served
    def remember(self, org: str, user: str) -> IssuedToken:
        """A remember-me token for this device (put ``.token`` in a cookie; it is not stored)."""
        return remember.issue(self.app, org, user)

    @_served
    def is_remembered(self, org: str, user: str, token: str) -> bool:
        return remember.check(self.app, org, user, token)

    @_served
    def forget(self, org: str, user: str, token_id: int | None = None) -> int:
        """Revoke one remember-me token by id, or all of the user's; returns how many."""
        return remember.revoke(self.app, org, user, token_id)

    @_served
    def open_link(self, org: str, token: str) -> OpenedLink:
        """Open an emailed link: a new pending secret and its otpauth URI (the link stays
        usable until confirmed). Unknown token: NotFound; used or expired: Conflict."""
        return links.open_link(self.app, org, token)

    @_served
    def confirm_link(self, org: str, token: str, code: str) -> ConfirmedLink:
        """Activate the pending secret with the first code and use the link up; the result
        carries the first recovery codes (``.recovery_codes``) to show the user once."""
        return links.confirm_link(self.app, org, token, code)

    def close(self) -> None:
        self.app.close()

    def __enter__(self) -> Mfa:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def connect(
    values: str | os.PathLike[str] | None = None,
    *,
    actor: str = "login-server",
    clock: Callable[[], datetime] | None = None,
) -> Mfa:
    """Load values.yaml (same search order as the CLI) and return an ``Mfa``.

    ``actor`` names the caller in audit events; ``clock`` is for tests. The engine, the secret
    store and the schema check are done here, once: a bad key or database fails at start-up,
    and the threads sharing the ``Mfa`` never race to build them.
    """
    app = bootstrap(values, actor=actor, clock=clock)
    app.secrets  # noqa: B018 - build the cached secret store now
    with app.uow():
        pass
    return Mfa(app)
