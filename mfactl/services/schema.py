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


def database_answers(app: App) -> bool:
    """Whether the database answers a query now (the server's health check)."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with app.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError):
        return False
    return True


def require_usable(app: App) -> None:
    """Refuse to start a server on a database whose schema is missing or not current, or
    without a secret store (exit 5, one sentence), rather than fail each request."""
    with app.uow():
        pass
    app.secrets  # noqa: B018 -- built now: a missing or broken key stops the start
