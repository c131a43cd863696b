"""mfactl org: add and list organizations."""

from __future__ import annotations

import typer

from mfactl.cli.common import JSON_OPTION, get_app, info, print_json, print_table

app = typer.Typer(help="Organizations.", no_args_is_help=True)


@app.command("add")
def add(
    ctx: typer.Context,
    slug: str = typer.Argument(..., help="Short name: lowercase letters, digits and dashes."),
    name: str | None = typer.Option(None, "--name", help="Display name (default: the slug)."),
    json_: bool = JSON_OPTION,
) -> None:
    """Add an organization.

    $ mfactl org add acme --name "Acme Corporation"
    """
    from mfactl.services import orgs

    org = orgs.add_org(get_app(ctx), slug, name)
    if json_:
        print_json(org.added_json())
    else:
        info(f"added organization {org.slug} ({org.name})")
        if slug.strip() != org.slug:  # said, not done silently
            info(f"note: {slug.strip()!r} is kept as {org.slug!r} (slugs are lowercase)")


@app.command("list")
def list_(ctx: typer.Context, json_: bool = JSON_OPTION) -> None:
    """List organizations with their user counts.

    $ mfactl org list

    $ mfactl org list --json
    """
    from mfactl.services import orgs

    rows = orgs.list_orgs(get_app(ctx))
    if json_:
        print_json(rows)
    else:
        print_table(
            ["ORG", "NAME", "USERS", "CREATED"],
            [(o.slug, o.name, o.users, o.created_at) for o in rows],
            empty="no organizations yet: `mfactl org add SLUG` adds one",
        )
