"""mfactl init: create or upgrade the schema."""

from __future__ import annotations

import typer

from mfactl.cli.common import JSON_OPTION, get_app, info, print_json


def init(ctx: typer.Context, json_: bool = JSON_OPTION) -> None:
    """Create the database schema, or upgrade it to this version of mfactl.

    $ mfactl init

    $ mfactl --values /etc/mfactl/values.yaml init --json
    """
    from mfactl.services import schema

    result = schema.init_schema(get_app(ctx, creates_database=True))
    if json_:
        print_json(result)
        return
    if result.before is None:
        info(f"created the mfactl schema (revision {result.after}) in {result.database}")
    elif result.before != result.after:
        info(f"upgraded the schema of {result.database} from {result.before} to {result.after}")
    else:
        info(f"the schema of {result.database} is already current (revision {result.after})")
