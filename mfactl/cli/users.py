"""mfactl users: many users at once, selected by the filters of services/selection.py."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from enum import StrEnum
from typing import IO, TYPE_CHECKING, Any

import typer

from mfactl.cli.common import (
    JSON_OPTION,
    counted,
    for_terminal,
    get_app,
    info,
    org_value,
    print_json,
)
from mfactl.errors import UsageError

if TYPE_CHECKING:
    from mfactl.services.listing import ListedUser
    from mfactl.services.reset import BulkResult
    from mfactl.services.selection import UserFilter

app = typer.Typer(
    help="Many users at once: list, bulk reset, bulk enrollment invitations.", no_args_is_help=True
)


# --- the selection options, shared by users list / reset / enable ---------------------------------
# A command declares them as parameters with these defaults and passes them to user_filter():
#     org: str | None = FILTER_ORG_OPTION, mfa: MfaState | None = FILTER_MFA_OPTION, ...
#     flt = user_filter(org, mfa, admins, stale_key, noncompliant, locked, search)
# (a command where --org is required declares its own --org and passes it the same way).


class MfaState(StrEnum):
    active = "active"
    pending = "pending"
    none = "none"


FILTER_ORG_OPTION = typer.Option(
    None, "--org", help="Only this organization (slug).", callback=org_value
)
# Bulk changes act on one organization at a time (DESIGN.md): a forgotten --org must not reach
# every organization of the platform.
BULK_ORG_OPTION = typer.Option(
    ..., "--org", help="The organization (slug) to act on.", callback=org_value
)
FILTER_MFA_OPTION = typer.Option(
    None, "--mfa", help="Only users whose MFA is active, pending (not confirmed) or none."
)
FILTER_ADMINS_OPTION = typer.Option(False, "--admins", help="Only sysadmins.")
FILTER_STALE_KEY_OPTION = typer.Option(
    False, "--stale-key", help="Only users whose secret is not encrypted with the active key."
)
FILTER_NONCOMPLIANT_OPTION = typer.Option(
    False, "--noncompliant", help="Only users the policy requires MFA from who lack it."
)
FILTER_LOCKED_OPTION = typer.Option(False, "--locked", help="Only users locked out by failures.")
FILTER_SEARCH_OPTION = typer.Option(
    None, "--search", metavar="TEXT", help="Only users whose handle, email or name contains TEXT."
)


def user_filter(
    org: str | None = None,
    mfa: MfaState | str | None = None,
    admins: bool = False,
    stale_key: bool = False,
    noncompliant: bool = False,
    locked: bool = False,
    search: str | None = None,
    *,
    recovery_codes_low: bool = False,
) -> UserFilter:
    """The UserFilter of the shared selection options."""
    from mfactl.services.selection import UserFilter

    return UserFilter(
        org=org,
        mfa=mfa.value if isinstance(mfa, MfaState) else mfa,
        admins=admins,
        stale_key=stale_key,
        noncompliant=noncompliant,
        locked=locked,
        search=search or None,
        recovery_codes_low=recovery_codes_low,
    )


# --- users list ----------------------------------------------------------------------------------

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a writer whose reader left
TABLE_CHUNK = 500  # rows measured for the table's column widths, then printed per chunk


@app.command("list")
def list_(
    ctx: typer.Context,
    org: str | None = FILTER_ORG_OPTION,
    mfa: MfaState | None = FILTER_MFA_OPTION,
    admins: bool = FILTER_ADMINS_OPTION,
    stale_key: bool = FILTER_STALE_KEY_OPTION,
    noncompliant: bool = FILTER_NONCOMPLIANT_OPTION,
    locked: bool = FILTER_LOCKED_OPTION,
    search: str | None = FILTER_SEARCH_OPTION,
    recovery_codes_low: bool = typer.Option(
        False,
        "--recovery-codes-low",
        help="Only users with active MFA and 2 unused recovery codes or fewer (or none).",
    ),
    json_: bool = typer.Option(False, "--json", help="One JSON array on stdout."),
    jsonl: bool = typer.Option(False, "--jsonl", help="One JSON object a line on stdout."),
    csv_: bool = typer.Option(False, "--csv", help="CSV (RFC 4180) with a header row."),
) -> None:
    """List users' MFA status: state, key freshness, last use, lock, policy compliance.

    $ mfactl users list --org acme --mfa none

    $ mfactl users list --noncompliant --json | jq -r '.[].email'
    """
    if json_ + jsonl + csv_ > 1:
        raise UsageError("choose one of --json, --jsonl and --csv")
    from mfactl.services.listing import list_users

    flt = user_filter(
        org,
        mfa,
        admins,
        stale_key,
        noncompliant,
        locked,
        search,
        recovery_codes_low=recovery_codes_low,
    )
    rows = list_users(get_app(ctx), flt)
    out = sys.stdout
    try:
        if json_:
            write_json_array(rows, out)
        elif jsonl:
            write_jsonl(rows, out)
        elif csv_:
            write_csv(rows, out)
        else:
            write_table(rows)
    except BrokenPipeError:
        reader_gone()


def reader_gone() -> None:
    """The reader went away (`mfactl users list | head`): stop quietly, exit 141 like `yes`."""
    import os

    # Later flushes (ours, the interpreter's at exit) now go to /dev/null instead of failing.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    raise typer.Exit(EXIT_BROKEN_PIPE)


def _encoder() -> Callable[[Any], str]:
    import json

    return json.JSONEncoder(ensure_ascii=False).encode


def _batches(lines: Iterable[str], size: int = 1000) -> Iterator[str]:
    """Lines joined in batches: one write per batch instead of one per row."""
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= size:
            yield "".join(batch)
            batch.clear()
    if batch:
        yield "".join(batch)


def write_jsonl(rows: Iterable[ListedUser], out: IO[str]) -> None:
    encode = _encoder()
    for chunk in _batches(encode(row) + "\n" for row in rows):
        out.write(chunk)
    out.flush()


def write_json_array(rows: Iterable[ListedUser], out: IO[str]) -> None:
    encode = _encoder()

    def lines() -> Iterator[str]:
        first = True
        for row in rows:
            yield ("[\n" if first else ",\n") + encode(row)
            first = False
        yield "[]\n" if first else "\n]\n"

    for chunk in _batches(lines()):
        out.write(chunk)
    out.flush()


def write_csv(rows: Iterable[ListedUser], out: IO[str]) -> None:
    import csv

    from mfactl.services.listing import FIELDS

    writer = csv.writer(out)  # RFC 4180: CRLF line ends, quotes only where needed
    writer.writerow(FIELDS)
    for row in rows:
        writer.writerow(_csv_value(v) for v in row.values())
    out.flush()


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, CSV injection)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_value(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value  # shown as text, never run; only in CSV: scripts read JSON verbatim
    return value


# The table for people: who, MFA state and key, use, and the notes that explain a problem.
# Columns by terminal width; NOTES, NAME and EMAIL wrap to fit, and nothing is ever cut.
_NARROW = ("USER", "EMAIL", "MFA", "KEY", "LAST USED", "NOTES")  # under 100 columns
_NORMAL = ("ORG", "USER", "EMAIL", "MFA", "KEY", "ENROLLED", "LAST USED", "NOTES")
_WIDE = ("ORG", "USER", "NAME", "EMAIL", "MFA", "KEY", "ENROLLED", "LAST USED", "NOTES")


def _notes(row: ListedUser) -> str:
    notes = []
    if row["admin"]:
        notes.append("admin")
    if row["locked"]:
        notes.append("locked")
    if not row["compliant"]:
        notes.append("noncompliant")
    if row["remember_tokens"]:
        notes.append(f"{row['remember_tokens']} remembered")
    if row["recovery_codes"] is not None:
        notes.append(counted(row["recovery_codes"], "recovery code"))
    return ", ".join(notes) or "-"


def _cells(row: ListedUser) -> dict[str, str]:
    key = row["mfa_key_active"]
    return {
        # as the database holds them, which a write to it could have filled with escapes
        "ORG": for_terminal(row["org"]),
        "USER": for_terminal(row["user"]),
        "NAME": for_terminal(row["name"]) or "-",
        "EMAIL": for_terminal(row["email"]),
        "MFA": row["mfa"],
        "KEY": "-" if key is None else "active" if key else "stale",
        "ENROLLED": (row["enrolled_at"] or "-")[:10],
        "LAST USED": (row["last_used_at"] or "-")[:10],
        "NOTES": _notes(row),
    }


def _column_widths(headers: tuple[str, ...], chunk: list[list[str]], total: int) -> list[int]:
    """Natural widths, with the widest folding columns narrowed until the table fits."""
    from rich.cells import cell_len  # terminal cells: wide characters take two

    widths = [max(len(h), *(cell_len(c[i]) for c in chunk)) for i, h in enumerate(headers)]
    available = total - 2 * (len(headers) - 1)  # two spaces between columns
    for header in ("NOTES", "NAME", "EMAIL"):  # wrap notes first: people look for the email
        if header in headers:
            i = headers.index(header)
            excess = sum(widths) - available
            widths[i] -= max(0, min(excess, widths[i] - 12))  # no narrower than 12
    return widths


def write_table(rows: Iterable[ListedUser]) -> None:
    """A Rich table, printed a chunk at a time with the column widths of the first chunk."""
    from itertools import islice

    from rich.table import Table

    from mfactl.cli.common import console, info

    terminal = console()
    headers = _NARROW if terminal.width < 100 else _NORMAL if terminal.width < 140 else _WIDE

    def cells(row: ListedUser) -> list[str]:
        by_column = _cells(row)
        if headers is _NARROW:  # one column for both, to leave room for the email
            by_column["USER"] = for_terminal(f"{row['org']}/{row['user']}")
        return [by_column[h] for h in headers]

    iterator = iter(rows)
    widths: list[int] | None = None
    printed = 0
    while chunk := [cells(row) for row in islice(iterator, TABLE_CHUNK)]:
        if widths is None:
            widths = _column_widths(headers, chunk, terminal.width)
        table = Table(
            show_edge=False, pad_edge=False, box=None, header_style="bold", show_header=not printed
        )
        for header, width in zip(headers, widths, strict=True):
            # fixed widths keep every chunk aligned; a longer value folds, nothing is cut
            table.add_column(header, width=width, overflow="fold")
        for row_cells in chunk:
            table.add_row(*row_cells)
        with terminal.capture() as captured:  # written by us: a broken pipe reaches list_()
            terminal.print(table)
        sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
        printed += len(chunk)
    info(f"{printed} user{'' if printed == 1 else 's'}")


# --- users reset, users enable -------------------------------------------------------------------


def _bulk_outcome(result: BulkResult, json_: bool, done: str) -> None:
    """The summary; exit 9 (EmailQueued) when some emails wait in the outbox."""
    from mfactl.cli.interact import emails_queued

    if json_:
        print_json(result)
    else:
        info(
            f"{done}; emails: {result.sent} sent, {result.queued} queued, "
            f"{result.no_address} without an address"
        )
    if result.queued:
        raise emails_queued(result.queued, result.error, interrupted=result.interrupted)


@app.command("reset")
def reset(
    ctx: typer.Context,
    org: str = BULK_ORG_OPTION,
    mfa: MfaState | None = FILTER_MFA_OPTION,
    admins: bool = FILTER_ADMINS_OPTION,
    stale_key: bool = FILTER_STALE_KEY_OPTION,
    noncompliant: bool = FILTER_NONCOMPLIANT_OPTION,
    locked: bool = FILTER_LOCKED_OPTION,
    search: str | None = FILTER_SEARCH_OPTION,
    reason: str = typer.Option(..., "--reason", help="Why (required; kept in the audit log)."),
    no_email: bool = typer.Option(False, "--no-email", help="Do not mail setup links."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    json_: bool = JSON_OPTION,
) -> None:
    """Reset the MFA of every user the filters select, and mail each a setup link.

    $ mfactl users reset --org acme --mfa active --reason "breach" --yes
    """
    from mfactl.cli.interact import ProgressBar, confirm
    from mfactl.services import reset as reset_service

    app_ = get_app(ctx)
    reset_service.reason_text(reason)
    flt = user_filter(org, mfa, admins, stale_key, noncompliant, locked, search)
    if not yes:
        selected = reset_service.select_users(app_, flt)
        sysadmins = [f"{t.org}/{t.user}" for t in selected if t.admin]
        warning = (
            f"{len(sysadmins)} of them "
            + ("is a SYSADMIN: " if len(sysadmins) == 1 else "are SYSADMINS: ")
            + ", ".join(sysadmins[:10])
            + (" …" if len(sysadmins) > 10 else "")
            if sysadmins
            else None
        )
        confirm(
            f"Reset the MFA of {counted(len(selected), 'user')} in {flt.org}?",
            yes=yes,
            what="users reset",
            warning=warning,
        )
    with ProgressBar("sending setup links") as progress:
        result = reset_service.reset_users(
            app_, flt, reason, send_email=not no_email, progress=progress
        )
    _bulk_outcome(result, json_, f"reset the MFA of {counted(result.changed, 'user')}")


@app.command("enable")
def enable(
    ctx: typer.Context,
    org: str = BULK_ORG_OPTION,
    mfa: MfaState | None = FILTER_MFA_OPTION,
    admins: bool = FILTER_ADMINS_OPTION,
    stale_key: bool = FILTER_STALE_KEY_OPTION,
    noncompliant: bool = FILTER_NONCOMPLIANT_OPTION,
    locked: bool = FILTER_LOCKED_OPTION,
    search: str | None = FILTER_SEARCH_OPTION,
    send_email: bool = typer.Option(
        False, "--send-email", help="Mail an enrollment link to each selected user without MFA."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    json_: bool = JSON_OPTION,
) -> None:
    """Invite every selected user without active MFA to set it up (mails enrollment links).

    $ mfactl users enable --org acme --mfa none --send-email --yes
    """
    from mfactl.cli.interact import ProgressBar, confirm
    from mfactl.errors import UsageError
    from mfactl.services import reset as reset_service

    if not send_email:
        raise UsageError(
            "users enable only mails enrollment links (secrets are never printed in bulk); "
            "add --send-email"
        )
    app_ = get_app(ctx)
    flt = user_filter(org, mfa, admins, stale_key, noncompliant, locked, search)
    if not yes:
        invited = [t for t in reset_service.select_users(app_, flt) if t.mfa != "active"]
        confirm(
            f"Mail an enrollment link to {counted(len(invited), 'user')} in {flt.org}?",
            yes=yes,
            what="users enable --send-email",
        )
    with ProgressBar("sending enrollment links") as progress:
        result = reset_service.invite_users(app_, flt, progress=progress)
    _bulk_outcome(
        result,
        json_,
        f"invited {counted(result.changed, 'user')} ({result.skipped} already "
        f"{'has' if result.skipped == 1 else 'have'} MFA active)",
    )
