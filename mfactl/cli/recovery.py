"""mfactl user recovery-codes: a user's single-use recovery codes (generate, status, revoke)."""

from __future__ import annotations

import sys

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
)

app = typer.Typer(
    help="A user's recovery codes (for a lost phone): generate, status, revoke.",
    no_args_is_help=True,
)


@app.command("generate")
def recovery_generate(
    ctx: typer.Context,
    org: str = ORG_OPTION,
    user: str = USER_OPTION,
    yes: bool = typer.Option(
        False, "--yes", "-y", help="Replace an existing set without asking."
    ),
    json_: bool = JSON_OPTION,
) -> None:
    """Make a new set of recovery codes, replacing any earlier set, and print them once.

    For a user whose MFA is active; give the codes to the user: only their keyed hashes are
    stored, so they are never shown again. Asks on a terminal when a set exists (--yes: don't).

    $ mfactl user recovery-codes generate --org acme --user alice

    $ mfactl user recovery-codes generate --org acme --user alice --yes --json
    """
    from mfactl.cli.interact import confirm
    from mfactl.services import recovery

    mfa_app = get_app(ctx)
    current = recovery.status(mfa_app, org, user)
    if current.created_at is not None:
        confirm(
            f"Replace the recovery codes of {current.org}/{current.user} "
            f"({current.remaining} unused)?",
            yes=yes,
            what="replacing recovery codes",
        )
    made = recovery.generate(mfa_app, org, user)
    if json_:
        print_json(made)  # {"org", "user", "codes", "created_at"}
        return
    info(
        f"{len(made.codes)} recovery codes for {made.org}/{made.user}; each works once. "
        "They are shown only now: give them to the user."
    )
    sys.stdout.write("".join(code + "\n" for code in made.codes))


@app.command("status")
def recovery_status(
    ctx: typer.Context, org: str = ORG_OPTION, user: str = USER_OPTION, json_: bool = JSON_OPTION
) -> None:
    """How many unused recovery codes a user has, and when the set was made.

    $ mfactl user recovery-codes status --org acme --user alice
    """
    from mfactl.services import recovery

    st = recovery.status(get_app(ctx), org, user)
    if json_:
        print_json(st)  # {"org", "user", "remaining", "created_at"}
        return
    print_fields(
        [
            ("user", f"{st.org}/{st.user}"),
            ("remaining", st.remaining),
            ("created", st.created_at),
        ]
    )


@app.command("revoke")
def recovery_revoke(
    ctx: typer.Context, org: str = ORG_OPTION, user: str = USER_OPTION, json_: bool = JSON_OPTION
) -> None:
    """Remove a user's recovery codes (a set that leaked, say): none works any more.

    $ mfactl user recovery-codes revoke --org acme --user alice
    """
    from mfactl.services import recovery

    revoked = recovery.revoke(get_app(ctx), org, user)
    if json_:
        print_json({"org": org, "user": user, "revoked": revoked})
    else:
        info(f"revoked {counted(revoked, 'unused recovery code')} of {org}/{user}")
