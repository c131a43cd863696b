"""mfactl config: check values.yaml, the keys, the database and the SMTP server."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from mfactl.cli.common import JSON_OPTION, Globals, for_terminal, print_json

if TYPE_CHECKING:
    from mfactl.services import config_check

app = typer.Typer(help="Check the configuration.", no_args_is_help=True)


def _line(text: str) -> None:
    # an SMTP server's reply and the database's error are foreign text: shown safely
    sys.stdout.write(for_terminal(text) + "\n")


@app.command("check")
def check(ctx: typer.Context, json_: bool = JSON_OPTION) -> None:
    """Validate values.yaml and the keys; check that the database and the SMTP server answer.

    $ mfactl config check

    $ mfactl --values /etc/mfactl/values.yaml config check --json
    """
    from mfactl.services import config_check

    globals_: Globals = ctx.find_root().obj or Globals()
    report = config_check.check(globals_.values)
    db, smtp, keys = report.database, report.smtp, report.keys
    if json_:
        print_json(
            {
                "ok": report.exit_code == 0,
                "values_file": report.values_file,
                "problems": report.problems,
                "warnings": report.warnings,
                "database": None
                if db is None
                else {
                    "url": db.url,
                    "reachable": db.reachable,
                    "schema": db.schema,
                    "revision": db.revision,
                    "error": db.error,
                },
                "smtp": None
                if smtp is None
                else {"server": smtp.server, "reachable": smtp.reachable, "error": smtp.error},
                "mail_folder": report.mail_folder,
                "keys": None
                if keys is None
                else {
                    "active_key_id": keys.active_key_id,
                    "rolling_key_id": keys.rolling_key_id,
                    "secrets": keys.secrets.to_json() if keys.secrets else None,
                    "outbox": keys.outbox.to_json() if keys.outbox else None,
                },
            }
        )
    else:
        _line(f"values file: {report.values_file or '(none found: defaults)'}")
        for problem in report.problems:
            _line(f"problem: {problem}")
        for warning in report.warnings:
            _line(f"warning: {warning}")
        if db is not None:
            state = "answers" if db.reachable else f"does not answer ({db.error})"
            _line(f"database: {db.url} {state if db.exists else 'does not exist yet'}")
            if db.reachable:
                hint = {
                    "missing": " (run `mfactl init`)",
                    "behind": " (run `mfactl init`)",
                    "newer": " (made by a newer mfactl: upgrade mfactl)",
                }
                _line(f"schema: {db.schema}{hint.get(db.schema, '')}")
        if keys is not None and keys.unopenable:
            _line(f"keys: {_unopenable(keys)}")
        if smtp is not None:
            state = "answers" if smtp.reachable else f"does not answer ({smtp.error})"
            _line(f"smtp: {smtp.server} {state}")
        elif report.mail_folder is not None:
            _line(f"mail: written as .eml files to {report.mail_folder}")
        if report.exit_code == 0:
            _line("ok")
    raise typer.Exit(report.exit_code)


def _unopenable(keys: config_check.KeysCheck) -> str:
    secrets = keys.secrets.unknown if keys.secrets else 0
    outbox = keys.outbox.unknown if keys.outbox else 0
    return (
        f"{secrets} MFA secret{'s' if secrets != 1 else ''} and {outbox} outbox "
        f"bod{'ies' if outbox != 1 else 'y'} are sealed with a key that is neither "
        "secretStore.activeKey nor rollingKey, so no configured key opens them; set "
        "secretStore.rollingKey to the key that sealed them (`mfactl keys status` counts them)"
    )
