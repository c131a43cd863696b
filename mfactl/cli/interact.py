"""Talking to the person at the terminal: confirmations of destructive commands, progress bars."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer

from mfactl.cli.common import err_console, info
from mfactl.errors import EmailQueued, UsageError
from mfactl.mail import INTERRUPTED

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
    if warning:
        err_console().print(warning, style="bold red")
    if not typer.confirm(question, default=False, err=True):
        info("aborted: nothing was changed")
        raise typer.Exit(1)


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """A Rich progress bar on stderr, driven by ``callback(done, total)``.

    Only on a terminal: redirected, its last frame would land in the log, or before the JSON
    error that ``--json`` promises is stderr's only content.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console(),
        transient=False,
        disable=not sys.stderr.isatty(),
    ) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def emails_queued(count: int, error: str | None, hint: str = RETRY_HINT) -> EmailQueued:
    """Exit 9: the change is done, but ``count`` emails wait in the outbox."""
    if error and error.endswith(INTERRUPTED):
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
