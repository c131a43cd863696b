"""The secret-store keys: a new key, what each key holds, verifying every sealed value, and the
online, resumable key migration.

- here: ``new_key`` (`keys generate`);
- ``inventory``: ``status`` (`keys status`) and ``held_by_key`` (`config check`);
- ``verification``: ``verify`` (`keys verify`);
- ``migration``: ``migrate`` (`keys migrate`);
- ``reports``: what they return, each with its ``to_json``;
- ``_reencrypt`` and ``_tables``: the engine under verify and migrate (batches, compare-and-swap
  writes, the process pool).

The use cases load SQLAlchemy, so they are imported on first use: `keys generate` stays as quick
as the crypto it runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from mfactl.crypto import generate_key

if TYPE_CHECKING:
    from mfactl.services.keys._reencrypt import DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE
    from mfactl.services.keys.inventory import held_by_key, status
    from mfactl.services.keys.migration import migrate
    from mfactl.services.keys.reports import (
        Failure,
        KeyCounts,
        KeyHoldings,
        KeyStatus,
        MigrateReport,
        VerifyReport,
    )
    from mfactl.services.keys.verification import verify

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "MAX_BATCH_SIZE",
    "Failure",
    "KeyCounts",
    "KeyHoldings",
    "KeyStatus",
    "MigrateReport",
    "VerifyReport",
    "held_by_key",
    "migrate",
    "new_key",
    "status",
    "verify",
]

_HOMES = {
    "DEFAULT_BATCH_SIZE": "_reencrypt",
    "MAX_BATCH_SIZE": "_reencrypt",
    "status": "inventory",
    "held_by_key": "inventory",
    "migrate": "migration",
    "verify": "verification",
    "Failure": "reports",
    "KeyCounts": "reports",
    "KeyHoldings": "reports",
    "KeyStatus": "reports",
    "MigrateReport": "reports",
    "VerifyReport": "reports",
}


def new_key() -> str:
    """A new Fernet key, as text: what `keys generate` prints."""
    return generate_key()


def __getattr__(name: str) -> object:
    """The use cases and their reports, imported from their module the first time one is asked
    for."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # found once
    return value
