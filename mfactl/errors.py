"""Every error mfactl reports on purpose, each with the exit code DESIGN.md gives it."""

from __future__ import annotations

from typing import ClassVar


class MfactlError(Exception):
    """An error the CLI turns into one sentence and an exit code."""

    exit_code: ClassVar[int] = 1
    code: ClassVar[str] = "error"

    def __init__(
        self, message: str, *, hint: str | None = None, problems: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.problems = problems or []


class UsageError(MfactlError):
    """The command line itself is wrong."""

    exit_code = 2
    code = "usage"


class NotFound(MfactlError):
    """An organization, user or token does not exist."""

    exit_code = 3
    code = "not_found"


class Conflict(MfactlError):
    """The request clashes with the current state (already exists, not enrolled, wrong code)."""

    exit_code = 4
    code = "conflict"


class InvalidInput(UsageError):
    """A value given on the command line or in an input file is not acceptable."""

    code = "invalid_input"


class ConfigError(MfactlError):
    """values.yaml, the environment or the database schema is not usable."""

    exit_code = 5
    code = "config"


class SecretStoreError(MfactlError):
    """A secret no configured key opens, or one bound to another user."""

    exit_code = 6
    code = "secret_store"


class Unavailable(MfactlError):
    """The database or the SMTP server does not answer."""

    exit_code = 7
    code = "unavailable"


class PolicyViolations(MfactlError):
    """Users were found who break the MFA policy."""

    exit_code = 8
    code = "policy_violations"


class EmailQueued(MfactlError):
    """The change was made, but an email could not be sent and waits in the outbox."""

    exit_code = 9
    code = "email_queued"
