"""mfactl user: one user at a time."""

from __future__ import annotations

from pathlib import Path

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
