"""mfactl user: one user at a time."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mfactl.cli.common import (
    JSON_OPTION,
    ORG_OPTION,
    USER_OPTION,
    counted,
    get_app,
    info,
    print_fields,
    print_json,
    print_table,
    warn,
)
from mfactl.errors import Conflict, MfactlError, QrNotWritten, UsageError

if TYPE_CHECKING:
    from mfactl.app import App

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
    """Add a user to an organization.

    $ mfactl user add --org acme --user alice --email alice@example.com --name "Alice Admin" --admin
    """
    from mfactl.services import users

    added = users.add_user(get_app(ctx), org, user, email, name=name, admin=admin)
    if json_:
        print_json(added)
    else:
        info(
            f"added user {added.user} <{added.email}> to {added.org}"
            + (" as a sysadmin" if added.admin else "")
        )
        for typed, kept, what in ((user, added.user, "handles"), (email, added.email, "emails")):
            if typed.strip() != kept:  # said, not done silently: `--user Hank` is `hank` now
                info(f"note: {typed.strip()!r} is kept as {kept!r} ({what} are lowercase)")


LOWERCASED_SHOWN = 3  # the first few rows a `user import` lowercased, by line


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Path = typer.Argument(
        ...,
        help="CSV with a header row: handle,email and optionally name, admin, and totp_secret "
        "(base32), algorithm (SHA1, SHA256, SHA512), digits (6 or 8), period (10 to 120 "
        "seconds) for users who arrive enrolled.",
    ),
    org: str = ORG_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Add many users from a CSV file: all of them, or none when any row is bad.

    $ mfactl user import --org acme people.csv
    """
    from mfactl.services import user_import

    result = user_import.import_users(get_app(ctx), org, file)
    if json_:
        print_json(result)
    else:
        info(f"imported {counted(result.imported, 'user')} into {result.org}")
        for kept in result.lowercased[:LOWERCASED_SHOWN]:
            info(
                f"note: line {kept.line}: {kept.typed!r} is kept as {kept.kept!r} "
                f"({kept.column}s are lowercase)"
            )
        if len(result.lowercased) > LOWERCASED_SHOWN:
            info(
                f"note: and {len(result.lowercased) - LOWERCASED_SHOWN} more handles or emails "
                "with capitals, kept lowercase"
            )


@app.command("status")
def status(
    ctx: typer.Context, org: str = ORG_OPTION, user: str = USER_OPTION, json_: bool = JSON_OPTION
) -> None:
    """Show what is known of a user: MFA state, key freshness, last use, failures, lock.

    $ mfactl user status --org acme --user alice

    $ mfactl user status --org acme --user alice@example.com --json
    """
    from mfactl.services import users

    st = users.user_status(get_app(ctx), org, user)
    if json_:
        print_json(st)  # every field of UserStatus, in order
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


# --- MFA enrollment, verification, unlock, remember-me -----------------------------------------

QR_HELP = "Where to draw the QR code: terminal, none, or a file PATH.png / PATH.svg."
CODE_TRIES = 3


def _interactive() -> bool:
    """May we ask for the code? Only with a person at a terminal."""
    return sys.stdin.isatty()


def _confirm_hint(org: str, user: str) -> str:
    return f"mfactl user confirm --org {org} --user {user} --code CODE"


@app.command("enable")
def enable(
    ctx: typer.Context,
    org: str = ORG_OPTION,
    user: str = USER_OPTION,
    code: str | None = typer.Option(
        None, "--code", help="Confirm at once with this code (keeps an existing pending secret)."
    ),
    no_confirm: bool = typer.Option(
        False, "--no-confirm", help="Leave the secret pending, for `user confirm` later."
    ),
    qr: str | None = typer.Option(None, "--qr", metavar="TARGET", help=QR_HELP),
    send_email: bool = typer.Option(
        False, "--send-email", help="Mail the user an enrollment link instead (prints no URI)."
    ),
    json_: bool = JSON_OPTION,
) -> None:
    """Enroll a user in MFA: print the otpauth URI and QR code, then confirm with a code.

    Without --code or --no-confirm, asks for the code at a terminal; when stdin is not a
    terminal, the secret is left pending and the command says how to confirm it.

    $ mfactl user enable --org acme --user alice

    $ mfactl user enable --org acme --user alice --send-email
    """
    from mfactl.cli import qrcode
    from mfactl.services import enrollment

    if code is not None and no_confirm:
        raise UsageError("--code and --no-confirm cannot be used together")
    if send_email:
        if qr is not None:  # no secret is made here, so there is no QR code to show
            raise UsageError("--send-email cannot be used with --qr: the emailed link shows it")
        _enable_by_email(ctx, org, user, code is not None or no_confirm, json_)
        return
    if qr is not None and not qr.strip():
        raise UsageError("--qr is empty: terminal, none, or a file PATH.png / PATH.svg")
    target = qrcode.parse_target(qr or "terminal")
    mfa_app = get_app(ctx)
    started = enrollment.enable_user(mfa_app, org, user, keep_pending=code is not None)
    where = f"{started.org}/{started.user}"
    if started.otpauth_uri is not None:
        try:
            qrcode.show(started.otpauth_uri, target, to_stderr=json_)
        except QrNotWritten as exc:
            exc.hint = (
                f"the MFA of {where} stays pending, its secret unshown: run `mfactl user "
                "enable` again with another --qr (it makes a new secret)"
            )
            raise
        if not json_:
            sys.stdout.write(f"otpauth URI: {started.otpauth_uri}\n")
            sys.stdout.flush()
            info(f"MFA enrollment of {where} is pending: add it to the authenticator app")
    state, gave_up = "pending", False
    if code is not None:
        try:
            enrollment.confirm_user(mfa_app, started.org, started.user, code)
            state = "active"
        except MfactlError:
            if json_:  # the secret stays pending: the URI is still needed
                _enable_json(started.org, started.user, state, started.otpauth_uri)
            raise
    elif no_confirm:
        info(f"confirm it with: {_confirm_hint(started.org, started.user)}")
    elif _interactive():
        state = _ask_for_code(mfa_app, started.org, started.user)
        gave_up = state == "pending"
    else:
        info(
            "stdin is not a terminal, so the secret stays pending; confirm it with: "
            + _confirm_hint(started.org, started.user)
        )
    if json_:
        _enable_json(started.org, started.user, state, started.otpauth_uri)
    elif state == "active":
        info(f"MFA is now active for {where}")
    if gave_up:
        raise typer.Exit(4)


def _enable_json(org: str, user: str, state: str, uri: str | None) -> None:
    print_json({"org": org, "user": user, "state": state, "otpauth_uri": uri})


def _ask_for_code(mfa_app: App, org: str, user: str) -> str:
    """Ask for the code up to CODE_TRIES times; 'active' on success, else 'pending'."""
    from mfactl.services import enrollment

    for _ in range(CODE_TRIES):
        try:
            code = typer.prompt(
                "Code from the authenticator app", err=True, default="", show_default=False
            )
        except typer.Abort:  # end of input
            code = ""
        if not code.strip():
            break
        try:
            enrollment.confirm_user(mfa_app, org, user, code)
            return "active"
        except Conflict as exc:
            warn(exc.message)
    info(f"the secret stays pending; confirm it later with: {_confirm_hint(org, user)}")
    return "pending"


@app.command("confirm")
def confirm(
    ctx: typer.Context,
    org: str = ORG_OPTION,
    user: str = USER_OPTION,
    code: str = typer.Option(..., "--code", help="The code the authenticator app shows now."),
    json_: bool = JSON_OPTION,
) -> None:
    """Activate a pending MFA enrollment with a code from the user's authenticator app.

    $ mfactl user confirm --org acme --user alice --code 492039
    """
    from mfactl.services import enrollment

    done = enrollment.confirm_user(get_app(ctx), org, user, code)
    if json_:
        _enable_json(done.org, done.user, done.state, None)
    else:
        info(f"MFA is now active for {done.org}/{done.user}")


VERIFY_MEANINGS = {
    "ok": "ok: the code is right; it cannot be used again",
    "wrong": "wrong: the code is not valid now",
    "replayed": "replayed: this code (or a later one) was already used",
    "throttled": "throttled: too many wrong codes",
    "locked": "locked: too many wrong codes; clear it with `mfactl user unlock`",
    "not_enrolled": "not_enrolled: the user has no active MFA",
    "malformed": "malformed: not a code of the user's app ({digits} digits); not counted",
}


@app.command("verify")
def verify(
    ctx: typer.Context,
    org: str = ORG_OPTION,
    user: str = USER_OPTION,
    code: str = typer.Option(..., "--code", help="The code the user reads from their app."),
    json_: bool = JSON_OPTION,
) -> None:
    """Check a user's code as a login would, and explain the result (exit 4 unless ok).

    A right code is used up, a wrong one counts as a failure, like a real login.

    $ mfactl user verify --org acme --user alice --code 492039
    """
    from mfactl.services import verification

    mfa_app = get_app(ctx)
    result = verification.verify(mfa_app, org, user, code, explain=True, audited=True)
    if json_:
        print_json(result)
    else:
        line = VERIFY_MEANINGS[result.result].format(digits=result.digits) + result.drift_hint
        if result.retry_after_seconds:
            line += f"; retry after {result.retry_after_seconds} s"
        sys.stdout.write(line + "\n")
    if not result.ok:
        raise typer.Exit(4)


@app.command("unlock")
def unlock(
    ctx: typer.Context, org: str = ORG_OPTION, user: str = USER_OPTION, json_: bool = JSON_OPTION
) -> None:
    """Clear a user's failure count, back-off and lock.

    $ mfactl user unlock --org acme --user alice
    """
    from mfactl.services import verification

    done = verification.unlock(get_app(ctx), org, user)
    if json_:
        print_json(done)  # {"org", "user", "was_locked", "failed_attempts"}
    else:
        info(
            f"unlocked {done.org}/{done.user} ("
            + ("was locked, " if done.was_locked else "was not locked, ")
            + f"{counted(done.failed_attempts, 'failed attempt')} cleared)"
        )


remember_app = typer.Typer(help="A user's remember-me tokens: list, revoke.", no_args_is_help=True)
app.add_typer(remember_app, name="remember")


@remember_app.command("list")
def remember_list(
    ctx: typer.Context, org: str = ORG_OPTION, user: str = USER_OPTION, json_: bool = JSON_OPTION
) -> None:
    """List a user's remember-me tokens (ids and dates, never the tokens).

    $ mfactl user remember list --org acme --user alice
    """
    from mfactl.services import remember

    tokens = remember.list_tokens(get_app(ctx), org, user)
    if json_:
        print_json(tokens)  # [{"id", "created_at", "expires_at", "revoked_at", "state"}]
        return
    print_table(
        ["id", "state", "created", "expires", "revoked"],
        ([t.id, t.state, t.created_at, t.expires_at, t.revoked_at] for t in tokens),
        empty=f"{org}/{user} has no remember-me tokens",
    )


@remember_app.command("revoke")
def remember_revoke(
    ctx: typer.Context,
    org: str = ORG_OPTION,
    user: str = USER_OPTION,
    token_id: int | None = typer.Option(
        None, "--id", help="Revoke only this token (default: all of the user's tokens)."
    ),
    json_: bool = JSON_OPTION,
) -> None:
    """Revoke a user's remember-me tokens: all, or one by id.

    $ mfactl user remember revoke --org acme --user alice

    $ mfactl user remember revoke --org acme --user alice --id 3
    """
    from mfactl.services import remember

    mfa_app = get_app(ctx)
    revoked = remember.revoke(mfa_app, org, user, token_id)
    if json_:
        print_json({"org": org, "user": user, "revoked": revoked})
    else:
        info(f"revoked {revoked} remember-me token{'s' if revoked != 1 else ''}")


# --- reset and reset emails --------------------------------------------------------------------


def _email_outcome(
    result: ResetResult, json_: bool, done: str, fields: dict[str, object] | None = None
) -> None:
    """Print the result ({"org", "user", **fields, "email"}); exit 9 when the email is queued."""
    from mfactl.cli.interact import RETRY_HINT
    from mfactl.errors import EmailQueued

    email = {"status": result.email.status, "error": result.email.error}
    if json_:
        print_json({"org": result.org, "user": result.user, **(fields or {}), "email": email})
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
            hint=RETRY_HINT,
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
    """Remove a user's MFA setup and mail them a link to set it up again (the user stays).

    $ mfactl user reset --org acme --user alice --reason "lost phone"

    $ mfactl user reset --org acme --user alice --reason "lost phone" --yes --json
    """
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
    _email_outcome(result, json_, f"reset the MFA of {result.org}/{result.user}", {"reset": True})


@app.command("send-reset-email")
def send_reset_email(
    ctx: typer.Context, org: str = ORG_OPTION, user: str = USER_OPTION, json_: bool = JSON_OPTION
) -> None:
    """Mail a fresh MFA setup link after a reset; the previous link stops working.

    Refused (exit 4) for a user who was never reset: `user enable --send-email` invites one.

    $ mfactl user send-reset-email --org acme --user alice
    """
    from mfactl.services import reset as reset_service

    result = reset_service.send_reset_email(get_app(ctx), org, user)
    ended = " (the previous one no longer works)" if result.replaced_link else ""
    _email_outcome(result, json_, f"made a new reset link for {result.org}/{result.user}{ended}")


def _enable_by_email(
    ctx: typer.Context, org: str, user: str, confirming: bool, json_: bool
) -> None:
    """`user enable --send-email`: the link does the enrollment, so no URI is printed here."""
    from mfactl.services import reset as reset_service

    if confirming:
        raise UsageError("--send-email cannot be used with --code or --no-confirm")
    result = reset_service.send_enroll_email(get_app(ctx), org, user)
    _email_outcome(
        result,
        json_,
        f"made an enrollment link for {result.org}/{result.user}",
        {"state": result.had_mfa, "otpauth_uri": None},
    )
