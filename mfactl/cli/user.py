"""mfactl user: one user at a time."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mfactl.cli.common import (
    JSON_OPTION,
    ORG_OPTION,
    USER_OPTION,
    get_app,
    info,
    print_fields,
    print_json,
)

if TYPE_CHECKING:
    from mfactl.services.reset import ResetResult

app = typer.Typer(
    help="One user: add, import, status, MFA enrollment, verification and reset.",
    no_args_is_help=True,
)


@app.command("add")
def add(
    ctx: typer.Context,
    org: str = ORG_OPTION,
    user: str = typer.Option(..., "--user", help="The user's handle."),
    email: str = typer.Option(..., "--email", help="The user's email address."),
    name: str | None = typer.Option(None, "--name", help="Display name."),
    admin: bool = typer.Option(False, "--admin", help="The user is a sysadmin."),
    json_: bool = JSON_OPTION,
) -> None:
    """Add a user to an organization."""
    from mfactl.services import users

    added = users.add_user(get_app(ctx), org, user, email, name=name, admin=admin)
    if json_:
        print_json(
            {
                "org": added.org,
                "user": added.user,
                "email": added.email,
                "name": added.name,
                "admin": added.admin,
                "created_at": added.created_at,
            }
        )
    else:
        info(
            f"added user {added.user} <{added.email}> to {added.org}"
            + (" as a sysadmin" if added.admin else "")
        )


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="CSV with a header row: handle,email[,name,admin]."),
    org: str = ORG_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Add many users from a CSV file: all of them, or none when any row is bad."""
    from mfactl.services import users

    result = users.import_users(get_app(ctx), org, file)
    if json_:
        print_json({"org": result.org, "imported": result.imported})
    else:
        info(f"imported {result.imported} users into {result.org}")


@app.command("status")
def status(
    ctx: typer.Context, org: str = ORG_OPTION, user: str = USER_OPTION, json_: bool = JSON_OPTION
) -> None:
    """Show what is known of a user: MFA state, key freshness, last use, failures, lock."""
    from mfactl.services import users

    st = users.user_status(get_app(ctx), org, user)
    if json_:
        print_json(
            {
                "org": st.org,
                "user": st.user,
                "email": st.email,
                "name": st.name,
                "admin": st.admin,
                "created_at": st.created_at,
                "mfa": st.mfa,
                "mfa_key_active": st.mfa_key_active,
                "key_id": st.key_id,
                "algorithm": st.algorithm,
                "digits": st.digits,
                "period": st.period,
                "enrolled_at": st.enrolled_at,
                "last_used_at": st.last_used_at,
                "failed_attempts": st.failed_attempts,
                "last_failed_at": st.last_failed_at,
                "locked": st.locked,
                "remember_tokens": st.remember_tokens,
                "open_links": st.open_links,
            }
        )
        return
    key = (
        "-"
        if st.mfa_key_active is None
        else f"{st.key_id} (active key)"
        if st.mfa_key_active
        else f"{st.key_id} (not the active key: run `mfactl keys migrate`)"
    )
    print_fields(
        [
            ("org", st.org),
            ("user", st.user),
            ("email", st.email),
            ("name", st.name or "-"),
            ("admin", st.admin),
            ("created", st.created_at),
            ("mfa", st.mfa),
            ("key", key),
            ("totp", f"{st.algorithm}, {st.digits} digits, {st.period}s" if st.algorithm else None),
            ("enrolled", st.enrolled_at),
            ("last used", st.last_used_at),
            ("failed attempts", st.failed_attempts),
            ("last failure", st.last_failed_at),
            ("locked", st.locked),
            ("remember-me tokens", st.remember_tokens),
            ("open links", st.open_links),
        ]
    )


# --- MFA enrollment, verification, unlock, remember-me (issue 3) -------------------------------


# --- reset and reset emails (issue 4) ----------------------------------------------------------


def _email_outcome(result: ResetResult, json_: bool, done: str, *, reset: bool = False) -> None:
    """Print the result; exit 9 (EmailQueued) when the email waits in the outbox."""
    from mfactl.errors import EmailQueued

    email = {"status": result.email.status, "error": result.email.error}
    if json_:
        document: dict[str, object] = {"org": result.org, "user": result.user}
        if reset:
            document["reset"] = True
        print_json({**document, "email": email})
    else:
        status = result.email.status
        tail = {
            "sent": "; the email was sent",
            "queued": "",
            "not_requested": "; no email was sent (--no-email)",
            "no_address": "; the user has no email address, so no email was sent",
        }[status]
        info(f"{done}{tail}")
    if result.email.status == "queued":
        raise EmailQueued(
            f"the email to {result.org}/{result.user} could not be sent and waits in the outbox: "
            f"{result.email.error}",
            hint="run `mfactl mail retry` once the mail server answers",
        )


@app.command("reset")
def reset(
    ctx: typer.Context,
    org: str = ORG_OPTION,
    user: str = USER_OPTION,
    reason: str = typer.Option(..., "--reason", help="Why (required; kept in the audit log)."),
    no_email: bool = typer.Option(False, "--no-email", help="Do not mail a setup link."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    json_: bool = JSON_OPTION,
) -> None:
    """Remove a user's MFA setup and mail them a link to set it up again (the user stays)."""
    from mfactl.cli.interact import confirm
    from mfactl.services import reset as reset_service

    app_ = get_app(ctx)
    reset_service.reason_text(reason)
    target = reset_service.describe_user(app_, org, user)
    who = f"{target.org}/{target.user} <{target.email}> (MFA: {target.mfa})"
    warning = (
        f"{target.org}/{target.user} is a SYSADMIN: after this reset they log in without MFA "
        "until they set it up again."
        if target.admin
        else None
    )
    confirm(f"Reset the MFA of {who}?", yes=yes, what="user reset", warning=warning)
    result = reset_service.reset_user(app_, org, user, reason, send_email=not no_email)
    _email_outcome(result, json_, f"reset the MFA of {result.org}/{result.user}", reset=True)


@app.command("send-reset-email")
def send_reset_email(
    ctx: typer.Context, org: str = ORG_OPTION, user: str = USER_OPTION, json_: bool = JSON_OPTION
) -> None:
    """Mail a fresh MFA setup link after a reset; the previous link stops working."""
    from mfactl.services import reset as reset_service

    result = reset_service.send_reset_email(get_app(ctx), org, user)
    _email_outcome(
        result,
        json_,
        f"made a new reset link for {result.org}/{result.user} (the previous one no longer works)",
    )
