"""mfactl mail: the outbox of emails (reset and enrollment links), listed and retried."""

from __future__ import annotations

import typer

from mfactl.cli.common import (
    JSON_OPTION,
    console,
    counted,
    for_terminal,
    get_app,
    info,
    print_json,
    print_table,
)

WIDE = 110  # columns from which `mail list` shows the subject too

app = typer.Typer(
    help="The outbox: list queued and sent emails, retry the ones that failed.",
    no_args_is_help=True,
)


@app.command("list")
def list_(
    ctx: typer.Context,
    status: str | None = typer.Option(
        None,
        "--status",
        help=(
            "Only messages in this state: queued (waiting to be sent: pending, never tried, "
            "or failed, tried and retried later), sending, sent or cancelled."
        ),
    ),
    json_: bool = JSON_OPTION,
) -> None:
    """Show the outbox, oldest first, without the bodies (they hold live links).

    $ mfactl mail list --status queued
    """
    from mfactl.errors import InvalidInput
    from mfactl.services import outbox

    if status is not None and status not in outbox.FILTERS:
        raise InvalidInput(f"--status must be one of {', '.join(outbox.FILTERS)}, not {status!r}")
    rows = outbox.list_messages(get_app(ctx), status)
    if json_:
        print_json([r.to_json() for r in rows])
        return
    # the subject only where it has room; each last error in full under the table, where it
    # does not squeeze the columns into slivers on an 80-column terminal
    wide = console().width >= WIDE
    columns = ["id", "user", "recipient", "subject", "status", "attempts", "next attempt"]
    print_table(
        columns if wide else [c for c in columns if c != "subject"],
        (
            [
                r.id,
                f"{r.org}/{r.user}" if r.user else None,
                r.recipient,
                *([r.subject] if wide else []),
                r.shown_status,
                r.attempts,
                r.next_attempt_at,
            ]
            for r in rows
        ),
        wrap=("subject",),
        empty=f"no {status} emails in the outbox" if status else "the outbox is empty",
    )
    errors = [(r.id, r.last_error) for r in rows if r.last_error]
    if errors:
        out = console()
        out.print()
        out.print("last error, by message id:")
        for message_id, error in errors:
            out.print(f"  {message_id}: {for_terminal(error)}")


@app.command("retry")
def retry(
    ctx: typer.Context,
    due_only: bool = typer.Option(
        False,
        "--due-only",
        help="Only those whose next attempt is due: the back-off, for unattended runs (a timer).",
    ),
    # sending everything now is the default since 0.2; still accepted from older scripts
    all_: bool = typer.Option(False, "--all", hidden=True),
    json_: bool = JSON_OPTION,
) -> None:
    """Send every waiting email now (--due-only: only those due); exit 9 while any still waits.

    $ mfactl mail retry
    $ mfactl mail retry --due-only --json   # from a timer
    """
    from mfactl.cli.interact import ProgressBar, emails_queued
    from mfactl.errors import EmailQueued, UsageError
    from mfactl.services import delivery

    if due_only and all_:
        raise UsageError("--due-only and --all cannot be used together")
    with ProgressBar("sending queued emails") as progress:
        report = delivery.deliver(get_app(ctx), force=not due_only, progress=progress)
    if json_:
        print_json(report)
    else:
        sent = len(report.sent)
        info(
            f"sent {sent} email{'s' if sent != 1 else ''}; {report.waiting} "
            f"wait{'s' if report.waiting == 1 else ''} in the outbox"
        )
        if report.cancelled:
            info(
                f"{len(report.cancelled)} not sent because their link had expired or been "
                "replaced (see `mfactl mail list --status cancelled`)"
            )
    if report.queued:  # tried now and failed, or not tried after the server stopped answering
        raise emails_queued(
            report.queued,
            report.first_error,
            interrupted=report.interrupted,
            hint="`mfactl mail list --status queued` shows each",
        )
    if report.left_queued:  # only with --due-only: the others are not due yet
        raise EmailQueued(
            f"{counted(report.left_queued, 'email')} in the outbox {_are(report.left_queued)} "
            "not due yet",
            hint="`mfactl mail retry` (without --due-only) sends them now",
        )
    if report.held:
        until = report.held_until.strftime("%H:%M UTC") if report.held_until else "soon"
        raise EmailQueued(
            f"{counted(report.held, 'email')} {_are(report.held)} held by another sender, or by "
            f"one that was stopped; they go out with it, or from {until}, when its hold runs out",
            hint="`mfactl mail list --status sending` shows them",
        )


def _are(count: int) -> str:
    return "is" if count == 1 else "are"
