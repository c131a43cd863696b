"""mfactl users: many users at once, selected by the filters of services/selection.py."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

import typer

from mfactl.cli.common import JSON_OPTION, get_app, info, print_json

if TYPE_CHECKING:
    from mfactl.services.reset import BulkResult
    from mfactl.services.selection import UserFilter

app = typer.Typer(help="Many users at once: list, bulk reset, bulk enrollment invitations.",
                  no_args_is_help=True)


# --- the selection options, shared by users list / reset / enable ---------------------------------
# A command declares them as parameters with these defaults and passes them to user_filter():
#     org: str | None = FILTER_ORG_OPTION, mfa: MfaState | None = FILTER_MFA_OPTION, ...
#     flt = user_filter(org, mfa, admins, stale_key, noncompliant, locked, search)
# (a command where --org is required declares its own --org and passes it the same way).


class MfaState(StrEnum):
    active = "active"
    pending = "pending"
    none = "none"


FILTER_ORG_OPTION = typer.Option(None, "--org", help="Only this organization (slug).")
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
    )


# --- users list (issue 5) ------------------------------------------------------------------------


# --- users reset, users enable (issue 4) ---------------------------------------------------------

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
    org: str | None = FILTER_ORG_OPTION,
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
    """Reset the MFA of every user the filters select, and mail each a setup link."""
    from mfactl.cli.interact import confirm, progress_bar
    from mfactl.services import reset as reset_service

    app_ = get_app(ctx)
    reset_service.reason_text(reason)
    flt = user_filter(org, mfa, admins, stale_key, noncompliant, locked, search)
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
    org: str | None = FILTER_ORG_OPTION,
    mfa: MfaState | None = FILTER_MFA_OPTION,
    admins: bool = FILTER_ADMINS_OPTION,
    stale_key: bool = FILTER_STALE_KEY_OPTION,
    noncompliant: bool = FILTER_NONCOMPLIANT_OPTION,
    locked: bool = FILTER_LOCKED_OPTION,
    search: str | None = FILTER_SEARCH_OPTION,
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
    flt = user_filter(org, mfa, admins, stale_key, noncompliant, locked, search)
    with progress_bar("sending enrollment links") as progress:
        result = reset_service.invite_users(get_app(ctx), flt, progress=progress)
    _bulk_outcome(
        result,
        json_,
        f"invited {result.changed} users ({result.skipped} already have MFA active)",
    )
