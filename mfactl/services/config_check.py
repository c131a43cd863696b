"""`config check`: every settings problem, and whether the database answers."""

from __future__ import annotations

from dataclasses import dataclass, field

from mfactl.config import Settings, find_values_file, load_settings
from mfactl.errors import ConfigError, MfactlError


@dataclass
class DatabaseCheck:
    url: str
    reachable: bool = False
    schema: str = "unknown"  # current | missing | behind | unknown
    revision: str | None = None
    error: str | None = None


@dataclass
class ConfigReport:
    values_file: str | None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    database: DatabaseCheck | None = None

    @property
    def exit_code(self) -> int:
        if self.problems:
            return 5
        if self.database is not None and not self.database.reachable:
            return 7
        if self.database is not None and self.database.schema != "current":
            return 5
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
    report.warnings = list(settings.warnings)
    report.database = _check_database(settings)
    if report.database.schema == "current" and settings.secret_store.rolling_key:
        report.warnings += _rolling_key_warnings(settings)
    return report


def _rolling_key_warnings(settings: Settings) -> list[str]:
    """Secrets still under the rolling key: removing that key now would lock their users out."""
    from mfactl.config import key_id
    from mfactl.db.engine import make_engine
    from mfactl.services.keys import rolling_key_in_use

    engine = make_engine(settings.database.url)
    try:
        secrets, outbox = rolling_key_in_use(engine, key_id(settings.secret_store.rolling_key))
    except Exception as exc:  # the database answered a moment ago; say so rather than fail
        return [f"could not count the secrets under secretStore.rollingKey: {type(exc).__name__}"]
    finally:
        engine.dispose()
    if not secrets and not outbox:
        return []
    return [
        f"{secrets} MFA secret{'s' if secrets != 1 else ''} and {outbox} outbox "
        f"bod{'ies' if outbox != 1 else 'y'} are still sealed with secretStore.rollingKey; "
        "run `mfactl keys migrate` before removing that key"
    ]


def _check_database(settings: Settings) -> DatabaseCheck:
    from mfactl.db.engine import SCHEMA_REVISION, current_revision, make_engine, redact

    result = DatabaseCheck(url=redact(settings.database.url))
    try:
        engine = make_engine(settings.database.url)
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
        else:
            result.schema = "behind"
    except MfactlError as exc:
        result.error = exc.message
    finally:
        engine.dispose()
    return result
