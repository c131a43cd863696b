"""How a long operation (keys migrate/verify, sending the outbox) reports how far it is."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Told the total once it is known, then each piece of work as it is done; the CLI draws
    a bar from it."""

    def start(self, total: int) -> None: ...

    def advance(self, done: int) -> None: ...


class NoProgress:
    """For callers that draw nothing."""

    def start(self, total: int) -> None:
        pass

    def advance(self, done: int) -> None:
        pass


NO_PROGRESS = NoProgress()
