"""Creating and upgrading the schema."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import OperationalError

from mfactl.app import App
from mfactl.db.engine import redact, unavailable, upgrade_schema


@dataclass(frozen=True)
class InitResult:
    database: str
    before: str | None
    after: str

    def to_json(self) -> dict[str, object]:
        """`init --json`."""
        return {
            "database": self.database,
            "before": self.before,
            "revision": self.after,
            "changed": self.before != self.after,
        }


def init_schema(app: App) -> InitResult:
    try:
        before, after = upgrade_schema(app.engine)
    except OperationalError as exc:
        raise unavailable(app.engine, exc) from None
    return InitResult(redact(app.settings.database.url), before, after)
