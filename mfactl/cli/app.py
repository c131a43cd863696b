"""The mfactl command: global options, the command groups, and the flat aliases."""

from __future__ import annotations

import os
import sys

import typer

from mfactl import __version__
from mfactl.cli import (
    api_key,
    audit,
    completion,
    config,
    demo,
    init,
    keys,
    mail,
    org,
    policy,
    recovery,
    serve,
    user,
    users,
)
from mfactl.cli.common import Globals, MfactlGroup

app = typer.Typer(
    cls=MfactlGroup,
    name="mfactl",
    help="Administer TOTP multi-factor authentication on a multi-organization platform.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mfactl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    values: str | None = typer.Option(
        None,
        "--values",
        metavar="FILE",
        help="values.yaml to use (default: $MFACTL_VALUES, ./values.yaml, /etc/mfactl/values.yaml).",  # noqa: E501
    ),
    actor: str | None = typer.Option(
        None, "--actor", help="Who is acting, for the audit log (default: $MFACTL_ACTOR or login)."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Administer TOTP multi-factor authentication on a multi-organization platform."""
    ctx.obj = Globals(values=values, actor=actor)


app.command("init")(init.init)
app.command("demo")(demo.demo)
app.add_typer(config.app, name="config")
app.add_typer(org.app, name="org")
user.app.add_typer(recovery.app, name="recovery-codes")  # `user recovery-codes …`
app.add_typer(user.app, name="user")
app.add_typer(users.app, name="users")
app.add_typer(keys.app, name="keys")
app.add_typer(audit.app, name="audit")
app.add_typer(policy.app, name="policy")
app.add_typer(mail.app, name="mail")
app.command("serve")(serve.serve)
app.add_typer(api_key.app, name="api-key")
app.command("completion")(completion.completion)

# The five flat names of the original brief, as aliases of the grouped commands (DESIGN.md).
ALIASES = "Aliases"
app.command(
    "list-status",
    rich_help_panel=ALIASES,
    help="Alias of `users list`.\n\n$ mfactl list-status --json",
)(users.list_)
app.command(
    "enable",
    rich_help_panel=ALIASES,
    help="Alias of `user enable`.\n\n$ mfactl enable --org acme --user alice",
)(user.enable)
app.command(
    "reset",
    rich_help_panel=ALIASES,
    help='Alias of `user reset`.\n\n$ mfactl reset --org acme --user alice --reason "lost phone"',
)(user.reset)
app.command(
    "send-reset-email",
    rich_help_panel=ALIASES,
    help="Alias of `user send-reset-email`.\n\n$ mfactl send-reset-email --org acme --user alice",
)(user.send_reset_email)
app.command(
    "migrate-keys",
    rich_help_panel=ALIASES,
    help="Alias of `keys migrate`.\n\n$ mfactl migrate-keys --dry-run",
)(keys.migrate)


def main() -> None:
    for position, argument in enumerate(sys.argv[1:], start=1):
        try:
            argument.encode("utf-8")
        except UnicodeEncodeError:  # bytes from a Latin-1 terminal, kept by surrogateescape
            from mfactl.cli.common import render_error
            from mfactl.errors import UsageError

            shown = argument.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            render_error(
                UsageError(f"argument {position} ({shown!r}) is not valid UTF-8"),
                as_json="--json" in sys.argv or "--jsonl" in sys.argv,
            )
            sys.exit(2)
    if os.environ.get(completion.COMPLETE_VAR):  # a shell asking for completions
        from typer._completion_classes import completion_init

        completion_init()  # typer registers its shells only when it adds its own options
    app(prog_name="mfactl")
