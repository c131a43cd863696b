"""The composition root: load the settings and build the App the services work with.

Only the edges call it: the CLI (``cli/``), the library facade (``api.py``) and the web
layer. Nothing runs at import time.
"""

from __future__ import annotations

import getpass
import os

from mfactl.app import App, Clock, system_clock
from mfactl.config import Settings, load_settings
from mfactl.services import validation

__all__ = ["App", "Clock", "bootstrap", "default_actor", "system_clock"]


def default_actor() -> str:
    """$MFACTL_ACTOR when set (and not empty), else the login name of whoever runs mfactl."""
    actor = os.environ.get("MFACTL_ACTOR")
    if actor:  # set and not empty (an empty variable is an unset one)
        return validation.actor(actor, "MFACTL_ACTOR")
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def bootstrap(
    values: str | os.PathLike[str] | None = None,
    *,
    settings: Settings | None = None,
    clock: Clock | None = None,
    actor: str | None = None,
) -> App:
    """Load the settings (unless given) and wire an App."""
    settings = settings if settings is not None else load_settings(values)
    return App(
        settings=settings,
        clock=clock or system_clock,
        actor=validation.actor(actor) if actor is not None else default_actor(),
    )
