"""mfactl api-key: keys of the HTTP API in `mfactl serve`."""

from __future__ import annotations

import json

import typer

from mfactl.cli.common import JSON_OPTION, info, print_json

app = typer.Typer(help="Keys of the HTTP API (/api/v1 in `mfactl serve`).", no_args_is_help=True)


@app.command("create")
def create(
    name: str = typer.Option(
        ..., "--name", help="Who the key is: the actor of the audit events it causes."
    ),
    orgs: list[str] | None = typer.Option(
        None, "--org", metavar="O", help="An organization it may act on (repeat; default: all)."
    ),
    json_: bool = JSON_OPTION,
) -> None:
    """Make a new API key: print it (once) and the server.apiKeys entry that holds its hash.

    $ mfactl api-key create --name login-server --org acme
    """
    from mfactl.services import api_keys

    made = api_keys.create(name, orgs or [])
    if json_:
        print_json(made.to_json())
        return
    entry = made.entry
    info("the key, shown once (nothing keeps it; give it to the client as 'Bearer KEY'):")
    print(made.key)
    info("add this entry under server.apiKeys in values.yaml, then restart `mfactl serve`:")
    print(f"  - name: {json.dumps(entry.name)}")
    print(f"    orgs: {json.dumps(list(entry.orgs))}")
    print(f"    hash: {json.dumps(entry.hash)}")
