"""`config check`: every settings problem, and whether the database and the SMTP server answer."""

from __future__ import annotations

from dataclasses import dataclass, field

from mfactl.config import Settings, find_values_file, load_settings
from mfactl.errors import ConfigError, DatabaseMissing, MfactlError
from mfactl.services.keys.reports import KeyCounts

NO_ACTIVE_KEY = (
    "secretStore.activeKey: is not set, so secrets cannot be sealed or opened; generate one with "
    "`mfactl keys generate` and put it in values.yaml"
)


@dataclass
class DatabaseCheck:
    url: str
    reachable: bool = False
    schema: str = "unknown"  # current | missing | behind | newer | unknown
    revision: str | None = None
    error: str | None = None
    exists: bool = True  # False: a SQLite file `mfactl init` has yet to make


@dataclass
class SmtpCheck:
    """Can a delivery run connect, say EHLO, start TLS and log in?"""

    server: str  # "host:port (security)"
    reachable: bool = False
    error: str | None = None


@dataclass
class KeysCheck:
    """What the database holds under each key, counted from the stored key ids (no decryption)."""

    active_key_id: str | None
    rolling_key_id: str | None
    secrets: KeyCounts | None = None  # None: the database could not be counted
    outbox: KeyCounts | None = None
    error: str | None = None

    @property
    def unopenable(self) -> bool:
        """Sealed values under a key id that neither configured key has."""
        return any(counts.unknown for counts in (self.secrets, self.outbox) if counts)


@dataclass
class ConfigReport:
    values_file: str | None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    database: DatabaseCheck | None = None
    smtp: SmtpCheck | None = None  # None with email.transport file
    mail_folder: str | None = None  # email.fileDir, with email.transport file
    keys: KeysCheck | None = None  # None: no database with a current schema to count in

    @property
    def exit_code(self) -> int:
        if self.problems:
            return 5
        if self.database is not None and not self.database.reachable:
            return 7
        if self.smtp is not None and not self.smtp.reachable:
            return 7
        if self.database is not None and self.database.schema != "current":
            return 5
        if self.keys is not None and self.keys.unopenable:
            return 6
        return 0


def check(values: str | None) -> ConfigReport:
    try:
        path = find_values_file(values)
    except ConfigError as exc:
        return ConfigReport(values_file=values, problems=[exc.message])
    report = ConfigReport(values_file=str(path) if path else None)
    try:
        settings = load_settings(values)
    except ConfigError as exc:
        report.problems = exc.problems or [exc.message]
        return report
    report.warnings = list(settings.warnings) + weak_throttle_warnings(settings)
    report.problems = _template_problems(settings)
    if not settings.secret_store.active_key:  # loading allows it: `keys generate` needs no key
        report.problems.append(NO_ACTIVE_KEY)
    report.database = _check_database(settings)
    if report.database.schema == "current":
        report.keys = _check_keys(settings)
        report.warnings += [report.keys.error] if report.keys.error else []
        report.warnings += _rolling_key_warnings(report.keys)
    if settings.email.transport == "file":  # nothing to reach; the folder is made on delivery
        report.mail_folder = settings.email.file_dir
    else:
        report.smtp = check_smtp(settings)
    return report


def _template_problems(settings: Settings) -> list[str]:
    """Each email template rendered with sample values, so a broken one (or one the sandbox
    stops) is found now rather than by the first reset, which it would refuse."""
    from mfactl.mail.render import check_templates

    return check_templates(settings.email.templates_dir)


# what the defaults give someone who has a user's password (README, "Security")
BOUNDED_FAILURES_PER_DAY = 10
BOUNDED_VALID_WINDOW = 2


def guessing_odds_per_year(failures_per_day: int, valid_window: int, digits: int) -> float:
    """The chance of a year of guessing at the budget: each guess hits 2w+1 of 10^digits codes."""
    per_guess = (2 * valid_window + 1) / 10**digits
    return 1 - (1 - per_guess) ** (365 * failures_per_day)


def weak_throttle_warnings(settings: Settings) -> list[str]:
    """Settings that weaken the bound on guessing codes. A lock of 0 ("never") is refused at load
    (lockAfterFailures is 1 to 100), so it needs no warning."""
    mfa = settings.user_login.mfa
    throttle = mfa.throttle
    warnings = []
    if throttle.base_delay_seconds == 0:
        warnings.append(
            "userLogin.mfa.throttle.baseDelaySeconds: 0 lets wrong codes come as fast as they "
            "are sent, with no back-off between them; 1 or more slows a guessing script down"
        )
    per_day = throttle.max_failures_per_day
    if per_day > BOUNDED_FAILURES_PER_DAY:
        odds = guessing_odds_per_year(per_day, mfa.valid_window, mfa.digits)
        bounded = guessing_odds_per_year(BOUNDED_FAILURES_PER_DAY, mfa.valid_window, mfa.digits)
        warnings.append(
            f"userLogin.mfa.throttle.maxFailuresPerDay: {per_day} gives someone who has a user's "
            f"password {per_day} guesses a day, about {odds:.1%} a year of finding a code "
            f"({BOUNDED_FAILURES_PER_DAY}: about {bounded:.1%})"
        )
    if mfa.valid_window > BOUNDED_VALID_WINDOW:
        warnings.append(
            f"userLogin.mfa.validWindow: {mfa.valid_window} accepts {2 * mfa.valid_window + 1} "
            "codes for every guess; 1 (3 codes, 30 s of clock drift either way) is usually enough"
        )
    return warnings


def check_smtp(settings: Settings) -> SmtpCheck:
    """Open (then close) a connection as a delivery run does: EHLO, STARTTLS, AUTH.

    The error is the transport's reason, which names the login but never the password.
    """
    from mfactl.mail.transports import SendError, make_transport

    email = settings.email
    smtp = email.smtp
    result = SmtpCheck(server=f"{smtp.host}:{smtp.port} ({smtp.security})")
    try:
        make_transport(email).connect().close()
    except SendError as exc:
        result.error = exc.reason
        return result
    result.reachable = True
    return result


def _check_keys(settings: Settings) -> KeysCheck:
    from mfactl.db.engine import make_engine
    from mfactl.services.keys import held_by_key

    store = settings.secret_store
    result = KeysCheck(store.active_key_id, store.rolling_key_id)
    engine = make_engine(settings.database.url, create_file=False)
    try:
        result.secrets, result.outbox = held_by_key(
            engine, result.active_key_id, result.rolling_key_id
        )
    except Exception as exc:  # the database answered a moment ago; say so rather than fail
        result.error = f"could not count the sealed values by key: {type(exc).__name__}"
    finally:
        engine.dispose()
    return result


def _rolling_key_warnings(keys: KeysCheck) -> list[str]:
    """Secrets still under the rolling key: removing that key now would lock their users out."""
    if keys.rolling_key_id is None or keys.secrets is None or keys.outbox is None:
        return []
    secrets, outbox = keys.secrets.rolling, keys.outbox.rolling
    if not secrets and not outbox:
        return []
    return [
        f"{secrets} MFA secret{'s' if secrets != 1 else ''} and {outbox} outbox "
        f"bod{'ies' if outbox != 1 else 'y'} are still sealed with secretStore.rollingKey; "
        "run `mfactl keys migrate` before removing that key"
    ]


def _check_database(settings: Settings) -> DatabaseCheck:
    from mfactl.db.engine import (
        SCHEMA_REVISION,
        current_revision,
        is_known_revision,
        make_engine,
        redact,
    )

    result = DatabaseCheck(url=redact(settings.database.url))
    try:
        engine = make_engine(settings.database.url, create_file=False)
    except DatabaseMissing:
        result.exists, result.reachable, result.schema = False, True, "missing"
        return result
    except MfactlError as exc:
        result.error = exc.message
        return result
    try:
        result.revision = current_revision(engine)
        result.reachable = True
        if result.revision is None:
            result.schema = "missing"
        elif result.revision == SCHEMA_REVISION:
            result.schema = "current"
        elif is_known_revision(result.revision):
            result.schema = "behind"
        else:
            result.schema = "newer"
    except MfactlError as exc:
        result.error = exc.message
    finally:
        engine.dispose()
    return result
