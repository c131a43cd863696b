"""The application object a service works with: settings, database, secret store, mail, clock.

It sits at the bottom of the house: nothing here is imported above the standard library at
import time, and each resource is built on first use, so a command pays only for what it uses.
``mfactl.bootstrap`` (the composition root) builds one from the loaded settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from mfactl.config import Settings
    from mfactl.crypto import SecretStore
    from mfactl.db.uow import UnitOfWork
    from mfactl.mail.transports import Transport

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class App:
    """Everything a service needs, built lazily so a command pays only for what it uses."""

    settings: Settings
    clock: Clock = system_clock
    actor: str = "unknown"  # who acts, as the audit log records it
    # may the engine create a SQLite file that is not there yet (only `mfactl init` and the
    # library; the other commands report a missing database instead of making an empty one)
    creates_database: bool = True
    _schema_checked: bool = False
    _engine_kwargs: dict[str, Any] = field(default_factory=dict)

    def now(self) -> datetime:
        return self.clock()

    @cached_property
    def engine(self) -> Engine:
        from mfactl.db.engine import make_engine

        return make_engine(
            self.settings.database.url,
            create_file=self.creates_database,
            pool=self.settings.database.pool,
            **self._engine_kwargs,
        )

    def check_schema(self) -> None:
        """Refuse a database whose schema is not current, once per App."""
        if not self._schema_checked:
            from mfactl.db.engine import check_schema

            check_schema(self.engine)
            self._schema_checked = True

    @cached_property
    def session_factory(self) -> sessionmaker[Session]:
        from sqlalchemy.orm import sessionmaker

        return sessionmaker(self.engine, expire_on_commit=False)

    @cached_property
    def secrets(self) -> SecretStore:
        from mfactl.crypto import SecretStore

        return SecretStore.from_settings(self.settings.secret_store)

    @cached_property
    def mail_transport(self) -> Transport:
        """SMTP or files, from email.transport; connections are opened per delivery run."""
        from mfactl.mail.transports import make_transport

        return make_transport(self.settings.email)

    def uow(self) -> UnitOfWork:
        """A unit of work on a database whose schema is known to be current."""
        from mfactl.db.uow import UnitOfWork

        self.check_schema()
        return UnitOfWork(self.session_factory)

    def acting_as(self, actor: str) -> App:
        """This App under another audit actor (an HTTP API key's name), sharing its engine,
        pools and secret store: they are built here first (no connection is made), so no copy
        builds its own. Settings changed on one afterwards are not seen by the other."""
        import contextlib
        import copy

        from mfactl.errors import MfactlError

        for shared in ("engine", "session_factory"):
            getattr(self, shared)
        with contextlib.suppress(MfactlError):  # no usable key: each copy says so when used
            self.secrets  # noqa: B018 - shared too
        twin = copy.copy(self)
        twin.actor = actor
        return twin

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()
