"""The secret-store keys: what each key holds, verifying every sealed value, and the online,
resumable key migration.

- ``inventory``: ``status`` (`keys status`) and ``rolling_key_in_use`` (`config check`);
- ``verification``: ``verify`` (`keys verify`);
- ``migration``: ``migrate`` (`keys migrate`);
- ``reports``: what they return, each with its ``to_json``;
- ``_reencrypt`` and ``_tables``: the engine under verify and migrate (batches, compare-and-swap
  writes, the process pool).
"""

from mfactl.services.keys._reencrypt import DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE
from mfactl.services.keys.inventory import rolling_key_in_use, status
from mfactl.services.keys.migration import migrate
from mfactl.services.keys.reports import (
    Failure,
    KeyCounts,
    KeyStatus,
    MigrateReport,
    RollingKeyUse,
    VerifyReport,
)
from mfactl.services.keys.verification import verify

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "MAX_BATCH_SIZE",
    "Failure",
    "KeyCounts",
    "KeyStatus",
    "MigrateReport",
    "RollingKeyUse",
    "VerifyReport",
    "migrate",
    "rolling_key_in_use",
    "status",
    "verify",
]
