"""mfactl audit: read the audit log."""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime, timedelta

import typer

from mfactl.cli.common import (
    JSON_OPTION,
    console,
    counted,
    for_terminal,
    get_app,
    info,
    iso,
    org_value,
    print_json,
    print_table,
)
from mfactl.errors import DamagedRow, InvalidInput

app = typer.Typer(help="The audit log of every change.", no_args_is_help=True)

DETAILS_MIN_WIDTH = 30  # below this, details go on a line of their own

_RELATIVE = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str, now: datetime) -> datetime:
    """An ISO 8601 time (UTC unless it says otherwise), or a span back from now: 90m, 24h, 7d."""
    text = value.strip()
    relative = _RELATIVE.fullmatch(text)
    if relative:
        try:
            return now - timedelta(**{_UNITS[relative[2]]: int(relative[1])})
        except OverflowError:
            raise InvalidInput(f"--since {text!r} reaches back before the year 1") from None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"--since {text!r} is neither an ISO 8601 time (2026-11-01, 2026-11-01T08:00Z) "
            "nor a span like 90m, 24h or 7d"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command("list")
def list_(
    ctx: typer.Context,
    org: str | None = typer.Option(
        None, "--org", help="Only this organization.", callback=org_value
    ),
    user: str | None = typer.Option(None, "--user", help="Only this user (handle or email)."),
    action: str | None = typer.Option(
        None, "--action", help="Only this action (e.g. user.reset; 'user.*' for a prefix)."
    ),
    since: str | None = typer.Option(None, "--since", help="ISO time, or a span: 90m, 24h, 7d."),
    limit: int | None = typer.Option(
        None, "--limit", min=1, max=1_000_000_000, help="Only the last N events."
    ),
    json_: bool = JSON_OPTION,
) -> None:
    """List audit events, oldest first.

    $ mfactl audit list --org acme --since 24h

    $ mfactl audit list --action 'user.*' --json
    """
    from mfactl.services import audit

    app_ = get_app(ctx)
    if since is not None and not since.strip():  # an unset $SINCE in a script is no "ever"
        raise InvalidInput("--since is empty: give a time or a span like 24h")
    since_at = parse_since(since, app_.now()) if since else None
    events = audit.list_events(
        app_,
        org=org,
        user=user,
        action=action,
        since=since_at,
        limit=limit,
    )
    listed = list(events)
    if json_:
        print_json(listed)
    else:
        filtered = any(f is not None for f in (org, user, action, since))
        print_events(
            [
                (
                    iso(e.at) or "-",
                    for_terminal(e.actor),
                    for_terminal(e.action),
                    for_terminal("/".join(part for part in (e.org, e.user) if part) or "-"),
                    for_terminal(e.outcome),
                    f"[damaged: {e.damaged}]"
                    if e.damaged
                    else for_terminal(" ".join(f"{k}={v}" for k, v in e.details.items())),
                )
                for e in listed
            ],
            empty="no audit events match these filters" if filtered else "no audit events yet",
        )
    damaged = [e for e in listed if e.damaged]
    if damaged:  # listed with the rest, and still an error for whoever checks the exit code
        ids = ", ".join(str(e.id) for e in damaged)
        raise DamagedRow(
            f"{counted(len(damaged), 'audit event')} could not be read whole (id {ids}): "
            f"{damaged[0].damaged}",
            named=True,
        )


def print_events(events: list[tuple[str, str, str, str, str, str]], *, empty: str) -> None:
    """A table with a DETAILS column where the terminal has room for it; on a narrower one
    each event's details go whole on an indented line under it, never folded into a sliver."""
    if not events:
        info(empty)
        return
    columns = ["AT", "ACTOR", "ACTION", "WHO", "OUTCOME"]
    widths = [max([len(c)] + [len(e[i]) for e in events]) for i, c in enumerate(columns)]
    out = console()
    if sum(widths) + 2 * len(widths) + DETAILS_MIN_WIDTH <= out.width:
        print_table([*columns, "DETAILS"], events, wrap=("DETAILS",))
        return

    def line(cells: tuple[str, ...] | list[str]) -> str:
        return "  ".join(
            cell.ljust(width) for cell, width in zip(cells, widths, strict=True)
        ).rstrip()

    out.print(line(columns), style="bold", soft_wrap=True)
    for event in events:
        out.print(line(event[:5]), soft_wrap=True)
        if event[5]:
            wrapped = textwrap.fill(
                event[5],
                width=max(out.width, 40),
                initial_indent="    ",
                subsequent_indent="    ",
                break_long_words=False,
                break_on_hyphens=False,
            )
            out.print(wrapped, soft_wrap=True)
