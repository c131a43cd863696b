"""What the key use cases return."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


@dataclass(frozen=True)
class KeyCounts:
    """Sealed values by the key their row names: the active, the rolling, or any other one."""

    active: int
    rolling: int
    unknown: int


@dataclass(frozen=True)
class KeyStatus:
    active_key_id: str
    rolling_key_id: str | None
    secrets: KeyCounts
    outbox: KeyCounts


class RollingKeyUse(NamedTuple):
    """What the rolling key still seals: removing it now would lose these."""

    secrets: int
    outbox: int


@dataclass(frozen=True)
class Failure:
    """A sealed value that no key opens or that is bound to someone else; left untouched."""

    org: str | None  # None: an outbox message of no user
    user: str | None
    reason: str


@dataclass
class MigrateReport:
    dry_run: bool
    migrated: int = 0  # secrets re-encrypted (or, in a dry run, that would be)
    already_active: int = 0  # secrets already under the active key
    outbox_migrated: int = 0
    outbox_already_active: int = 0
    changed_meanwhile: int = 0  # rows a reset or enrollment changed between read and write
    failed: list[Failure] = field(default_factory=list)


@dataclass
class VerifyReport:
    secrets: int = 0  # secrets checked
    outbox: int = 0  # outbox bodies checked
    failed: list[Failure] = field(default_factory=list)
