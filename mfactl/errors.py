"""Every error mfactl reports on purpose, each with the exit code DESIGN.md gives it (and the
HTTP status `mfactl serve` answers it with)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from pathlib import Path


DAMAGED_HINT = "correct the row from a backup"


class MfactlError(Exception):
    """An error the CLI turns into one sentence and an exit code."""

    exit_code: ClassVar[int] = 1
    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 500

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
    http_status = 400


class NotFound(MfactlError):
    """An organization, user or token does not exist."""

    exit_code = 3
    code = "not_found"
    http_status = 404


class Conflict(MfactlError):
    """The request clashes with the current state (already exists, not enrolled, wrong code)."""

    exit_code = 4
    code = "conflict"
    http_status = 409


class Gone(Conflict):
    """A link that was used up, has expired or was replaced by a newer one."""

    code = "gone"
    http_status = 410


class WrongCode(Conflict):
    """A wrong code, already counted in the user's throttle: commit that, then let it go."""


class InvalidInput(UsageError):
    """A value given on the command line or in an input file is not acceptable."""

    code = "invalid_input"


class QrNotWritten(InvalidInput):
    """The QR file could not be written (full disk, a folder that refuses files)."""

    def __init__(self, target: Path, exc: OSError) -> None:
        super().__init__(f"cannot write the QR code to {target}: {exc.strerror or exc}")


class ConfigError(MfactlError):
    """values.yaml, the environment or the database schema is not usable."""

    exit_code = 5
    code = "config"
    http_status = 500


class DatabaseMissing(ConfigError):
    """A SQLite database file that is not there (yet): `mfactl init` makes it."""


class DamagedRow(ConfigError):
    """A value written into the database past mfactl's checks, that it cannot read."""

    code = "damaged_row"

    def __init__(self, message: str, *, named: bool = False) -> None:
        super().__init__(message, hint=DAMAGED_HINT if named else None)
        self.named = named  # whose row it is is said in the message


class SecretStoreError(MfactlError):
    """A secret no configured key opens, or one bound to another user."""

    exit_code = 6
    code = "secret_store"
    http_status = 500


class DamagedSecret(SecretStoreError):
    """An MFA secret row holding a value mfactl cannot use (written past its checks)."""

    def __init__(self, message: str) -> None:
        super().__init__(
            message, hint=f"{DAMAGED_HINT}, or reset the user's MFA (`mfactl user reset`)"
        )


class Unavailable(MfactlError):
    """The database or the SMTP server does not answer."""

    exit_code = 7
    code = "unavailable"
    http_status = 503


class PolicyViolations(MfactlError):
    """Users were found who break the MFA policy."""

    exit_code = 8
    code = "policy_violations"


class EmailQueued(MfactlError):
    """The change was made, but an email could not be sent and waits in the outbox."""

    exit_code = 9
    code = "email_queued"


class Declined(MfactlError):
    """The person at the terminal answered no to a confirmation: nothing was changed."""

    exit_code = 10
    code = "declined"


def from_database(exc: BaseException) -> MfactlError | None:
    """A database failure as the error it means for the caller; None for anything else.

    The database gone or busy past its timeout is Unavailable (7); a change the database gave
    up because a concurrent one got in its way (a deadlock, a lock wait timeout, a duplicate
    key) is a Conflict (4): that transaction was rolled back, and running it again is the
    remedy (for the api's calls, each one transaction, nothing was changed).
    SQLAlchemy is only looked at when something has imported it already.
    """
    if "sqlalchemy.exc" not in sys.modules:
        return None
    import sqlite3

    from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout
    from sqlalchemy.orm.exc import StaleDataError

    if isinstance(exc, PoolTimeout):
        return Unavailable("the database is unavailable: no connection was free in time")
    if not isinstance(exc, (DBAPIError, StaleDataError)):
        return None
    reason = _first_line(exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc)
    # (the step that failed was rolled back; a command that commits in steps, such as a reset
    # and then its email, may have done the earlier ones: `mfactl audit list` shows them)
    again = "its transaction was rolled back; check with `mfactl audit list`, then run it again"
    if isinstance(exc, (IntegrityError, StaleDataError)):
        return Conflict(f"a concurrent change to the same data got in first; {again}")
    if isinstance(exc, DBAPIError) and type(exc.orig) is sqlite3.DatabaseError:
        # SQLite's own base class, raised for a file it cannot make sense of: a truncated copy,
        # a file of something else; its subclasses are the locks, constraints and the like
        return ConfigError(
            f"the database is not an mfactl database or is damaged ({reason}): restore it "
            "from a backup, or point database.url at the right file"
        )
    lowered = reason.lower()
    stopped = ("deadlock", "lock wait timeout", "lock timeout", "could not serialize")
    if any(s in lowered for s in stopped):
        return Conflict(f"the database stopped this for a concurrent change ({reason}); {again}")
    if isinstance(exc, OperationalError) or exc.connection_invalidated:
        return Unavailable(f"the database is unavailable: {reason}")
    return None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]
