"""mfactl users: many users at once, selected by the filters of services/selection.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from mfactl.cli.common import JSON_OPTION, get_app, info, print_json

if TYPE_CHECKING:
    from mfactl.services.reset import BulkResult
    from mfactl.services.selection import UserFilter

app = typer.Typer(help="Many users at once: list, bulk reset, bulk enrollment invitations.",
                  no_args_is_help=True)


# --- users list (issue 5) ------------------------------------------------------------------------


# --- users reset, users enable (issue 4) ---------------------------------------------------------

FILTER_ORG = typer.Option(None, "--org", help="Only this organization.")
FILTER_MFA = typer.Option(None, "--mfa", help="Only users whose MFA is active, pending or none.")
FILTER_ADMINS = typer.Option(False, "--admins", help="Only sysadmins.")
FILTER_STALE_KEY = typer.Option(
    False, "--stale-key", help="Only secrets not encrypted with the active key."
)
FILTER_NONCOMPLIANT = typer.Option(
    False, "--noncompliant", help="Only users the policy requires MFA from who lack active MFA."
)
FILTER_LOCKED = typer.Option(False, "--locked", help="Only users locked after failures.")
FILTER_SEARCH = typer.Option(None, "--search", help="Handle, email or name contains this text.")


def _bulk_filter(
    org: str | None,
    mfa: str | None,
    admins: bool,
    stale_key: bool,
    noncompliant: bool,
    locked: bool,
    search: str | None,
) -> UserFilter:
    from mfactl.errors import InvalidInput
    from mfactl.services.selection import MFA_STATES, UserFilter

    if mfa is not None and mfa not in MFA_STATES:
        raise InvalidInput(f"--mfa must be one of {', '.join(MFA_STATES)}, not {mfa!r}")
    return UserFilter(org, mfa, admins, stale_key, noncompliant, locked, search)


def _bulk_outcome(result: BulkResult, json_: bool, done: str) -> None:
    """The summary; exit 9 (EmailQueued) when some emails wait in the outbox."""
    from mfactl.cli.interact import emails_queued

    if json_:
        print_json(
            {
                "selected": result.selected,
                "changed": result.changed,
                "skipped": result.skipped,
                "emails": {
                    "sent": result.sent,
                    "queued": result.queued,
                    "no_address": result.no_address,
                    "error": result.error,
                },
            }
        )
    else:
        info(
            f"{done}; emails: {result.sent} sent, {result.queued} queued, "
            f"{result.no_address} without an address"
        )
    if result.queued:
        raise emails_queued(result.queued, result.error)


@app.command("reset")
def reset(
    ctx: typer.Context,
    org: str | None = FILTER_ORG,
    mfa: str | None = FILTER_MFA,
    admins: bool = FILTER_ADMINS,
    stale_key: bool = FILTER_STALE_KEY,
    noncompliant: bool = FILTER_NONCOMPLIANT,
    locked: bool = FILTER_LOCKED,
    search: str | None = FILTER_SEARCH,
    reason: str = typer.Option(..., "--reason", help="Why (required; kept in the audit log)."),
    no_email: bool = typer.Option(False, "--no-email", help="Do not mail setup links."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    json_: bool = JSON_OPTION,
) -> None:
    """Reset the MFA of every user the filters select, and mail each a setup link."""
    from mfactl.cli.interact import confirm, progress_bar
    from mfactl.services import reset as reset_service

    app_ = get_app(ctx)
    reset_service.reason_text(reason)
    flt = _bulk_filter(org, mfa, admins, stale_key, noncompliant, locked, search)
    if not yes:
        selected = reset_service.select_users(app_, flt)
        sysadmins = [f"{t.org}/{t.user}" for t in selected if t.admin]
        where = f"in {flt.org}" if flt.org else "in ALL organizations"
        warning = (
            f"{len(sysadmins)} of them are SYSADMINS: "
            + ", ".join(sysadmins[:10])
            + (" …" if len(sysadmins) > 10 else "")
            if sysadmins
            else None
        )
        confirm(
            f"Reset the MFA of {len(selected)} users {where}?",
            yes=yes,
            what="users reset",
            warning=warning,
        )
    with progress_bar("sending setup links") as progress:
        result = reset_service.reset_users(
            app_, flt, reason, send_email=not no_email, progress=progress
        )
    _bulk_outcome(result, json_, f"reset the MFA of {result.changed} users")


@app.command("enable")
def enable(
    ctx: typer.Context,
    org: str | None = FILTER_ORG,
    mfa: str | None = FILTER_MFA,
    admins: bool = FILTER_ADMINS,
    stale_key: bool = FILTER_STALE_KEY,
    noncompliant: bool = FILTER_NONCOMPLIANT,
    locked: bool = FILTER_LOCKED,
    search: str | None = FILTER_SEARCH,
    send_email: bool = typer.Option(
        False, "--send-email", help="Mail an enrollment link to each selected user without MFA."
    ),
    json_: bool = JSON_OPTION,
) -> None:
    """Invite every selected user without active MFA to set it up (mails enrollment links)."""
    from mfactl.cli.interact import progress_bar
    from mfactl.errors import UsageError
    from mfactl.services import reset as reset_service

    if not send_email:
        raise UsageError(
            "users enable only mails enrollment links (secrets are never printed in bulk); "
            "add --send-email"
        )
    flt = _bulk_filter(org, mfa, admins, stale_key, noncompliant, locked, search)
    with progress_bar("sending enrollment links") as progress:
        result = reset_service.invite_users(get_app(ctx), flt, progress=progress)
    _bulk_outcome(
        result,
        json_,
        f"invited {result.changed} users ({result.skipped} already have MFA active)",
    )
