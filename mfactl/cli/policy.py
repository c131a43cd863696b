"""mfactl policy: who breaks the MFA policy of values.yaml."""

from __future__ import annotations

import typer

from mfactl.cli.common import JSON_OPTION, get_app, info, org_value, print_json, print_table

app = typer.Typer(help="The MFA policy: check who breaks it.", no_args_is_help=True)


@app.command("check")
def check(
    ctx: typer.Context,
    org: str | None = typer.Option(
        None, "--org", help="Only this organization.", callback=org_value
    ),
    json_: bool = JSON_OPTION,
) -> None:
    """List the users the policy requires MFA from who have not activated it (exit 8 if any).

    $ mfactl policy check

    $ mfactl policy check --org acme --json
    """
    from mfactl.services import policy

    violations = policy.check_policy(get_app(ctx), org)
    if json_:
        print_json(violations)  # [{"org", "user", "email", "admin", "mfa", "reason"}]
    elif violations:
        print_table(
            ["org", "user", "email", "admin", "mfa", "reason"],
            ([v.org, v.user, v.email, v.admin, v.mfa, v.reason] for v in violations),
            wrap=("reason",),
        )
    if not violations:
        info("no user breaks the MFA policy")
        return
    count = len(violations)
    info(f"{count} user{'s break' if count > 1 else ' breaks'} the MFA policy")
    raise typer.Exit(8)
