"""Talking to the person at the terminal: confirmations of destructive commands, progress bars."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING

import typer

from mfactl.cli.common import err_console, for_terminal
from mfactl.errors import Declined, EmailQueued, UsageError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

RETRY_HINT = "run `mfactl mail retry` once the mail server answers"


def interactive() -> bool:
    """Is someone at a terminal to answer a question?"""
    return sys.stdin.isatty()


def confirm(question: str, *, yes: bool, what: str, warning: str | None = None) -> None:
    """Go on with --yes; else ask on a terminal; else refuse with exit 2."""
    if yes:
        return
    if not interactive():
        raise UsageError(f"{what} needs confirmation: add --yes (no terminal to ask on)")
    # both name users as the database holds them
    if warning:
        err_console().print(for_terminal(warning), style="bold red")
    if not typer.confirm(for_terminal(question), default=False, err=True):
        raise Declined("aborted: nothing was changed")


class ProgressBar:
    """A Rich progress bar on stderr (rate and ETA), fed by the service's start/advance.

    Off a terminal (scripts, cron, CI) it does nothing, and Rich is not even imported."""

    def __init__(self, description: str) -> None:
        self.description = description
        self.bar: Progress | None = None
        self.task: TaskID | None = None

    def __enter__(self) -> ProgressBar:
        if not sys.stderr.isatty():
            return self
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=err_console(),
            transient=False,
        )
        self.bar.__enter__()
        return self

    def start(self, total: int) -> None:
        if self.bar is None:
            return
        self.task = self.bar.add_task(self.description, total=total, rate="")

    def advance(self, done: int) -> None:
        if self.bar is None or self.task is None:
            return
        self.bar.advance(self.task, done)
        speed = self.bar.tasks[0].speed
        self.bar.update(self.task, rate=f"{speed:,.0f}/s" if speed else "")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.bar is not None:
            self.bar.__exit__(exc_type, exc, tb)


def emails_queued(
    count: int, error: str | None, *, interrupted: bool, hint: str = RETRY_HINT
) -> EmailQueued:
    """Exit 9: the change is done, but ``count`` emails wait in the outbox (``interrupted``:
    Ctrl-C stopped the sending, so the mail server is not to blame)."""
    if interrupted:
        hint = (
            "run `mfactl mail retry` to send them (one caught in flight waits for its lease "
            "to run out: `mfactl mail list --status sending`)"
        )
    return EmailQueued(
        f"{count} email{'s' if count != 1 else ''} could not be sent and "
        f"wait{'s' if count == 1 else ''} in the outbox: "
        f"{error}",
        hint=hint,
    )
