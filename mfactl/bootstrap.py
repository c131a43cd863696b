"""Build the engine, secret store, mail transport and clock once, from the loaded settings.

Nothing here runs at import time; the CLI (or a login server, through mfactl.api) calls
``bootstrap`` and passes the resulting ``App`` to the services.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from mfactl.config import Settings, load_settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from mfactl.crypto import SecretStore
    from mfactl.db.uow import UnitOfWork
    from mfactl.mail.transports import Transport

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def default_actor() -> str:
    from mfactl.services import validation

    actor = os.environ.get("MFACTL_ACTOR")
    if actor:  # set and not empty (an empty variable is an unset one)
        return validation.actor(actor, "MFACTL_ACTOR")
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


@dataclass
class App:
    """Everything a service needs, built lazily so a command pays only for what it uses."""

    settings: Settings
    clock: Clock = system_clock
    actor: str = field(default_factory=default_actor)
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
            self.settings.database.url, create_file=self.creates_database, **self._engine_kwargs
        )

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

        if not self._schema_checked:
            from mfactl.db.engine import check_schema

            check_schema(self.engine)
            self._schema_checked = True
        return UnitOfWork(self.session_factory)

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()


def bootstrap(
    values: str | os.PathLike[str] | None = None,
    *,
    settings: Settings | None = None,
    clock: Clock | None = None,
    actor: str | None = None,
) -> App:
    """Load the settings (unless given) and wire an App."""
    from mfactl.services import validation

    settings = settings if settings is not None else load_settings(values)
    return App(
        settings=settings,
        clock=clock or system_clock,
        actor=validation.actor(actor) if actor is not None else default_actor(),
    )
