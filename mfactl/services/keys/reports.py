"""What the key use cases return, and the one place each becomes its documented JSON shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


@dataclass(frozen=True)
class KeyCounts:
    """Sealed values by the key their row names: the active, the rolling, or any other one."""

    active: int
    rolling: int
    unknown: int

    def to_json(self) -> dict[str, int]:
        return {"active": self.active, "rolling": self.rolling, "unknown": self.unknown}


@dataclass(frozen=True)
class KeyStatus:
    active_key_id: str
    rolling_key_id: str | None
    secrets: KeyCounts
    outbox: KeyCounts

    def to_json(self) -> dict[str, object]:
        """The shape of `keys status --json`."""
        return {
            "active_key_id": self.active_key_id,
            "rolling_key_id": self.rolling_key_id,
            "secrets": self.secrets.to_json(),
            "outbox": self.outbox.to_json(),
        }


class KeyHoldings(NamedTuple):
    """Secrets and outbox bodies by the key their row names."""

    secrets: KeyCounts
    outbox: KeyCounts


@dataclass(frozen=True)
class Failure:
    """A sealed value that no key opens or that is bound to someone else; left untouched."""

    org: str | None  # None: an outbox message of no user
    user: str | None
    reason: str
    # an outbox body rather than an MFA secret (for the hint; not part of the JSON)
    outbox: bool = field(default=False, compare=False)

    def to_json(self) -> dict[str, str | None]:
        return {"org": self.org, "user": self.user, "reason": self.reason}


@dataclass
class MigrateReport:
    dry_run: bool
    migrated: int = 0  # secrets re-encrypted (or, in a dry run, that would be)
    already_active: int = 0  # secrets already under the active key
    outbox_migrated: int = 0
    outbox_already_active: int = 0
    changed_meanwhile: int = 0  # rows a reset or enrollment changed between read and write
    failed: list[Failure] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        """The shape of `keys migrate --json`."""
        return {
            "dry_run": self.dry_run,
            "migrated": self.migrated,
            "already_active": self.already_active,
            "failed": [f.to_json() for f in self.failed],
            "outbox": {
                "migrated": self.outbox_migrated,
                "already_active": self.outbox_already_active,
            },
            "changed_meanwhile": self.changed_meanwhile,
        }


@dataclass
class VerifyReport:
    secrets: int = 0  # secrets checked
    outbox: int = 0  # outbox bodies checked
    failed: list[Failure] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        """The shape of `keys verify --json`."""
        return {
            "ok": not self.failed,
            "secrets": self.secrets,
            "outbox": self.outbox,
            "failed": [f.to_json() for f in self.failed],
        }
