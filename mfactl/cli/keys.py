"""mfactl keys: generate, status, verify and migrate the keys that seal the TOTP secrets."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from mfactl.cli.common import (
    JSON_OPTION,
    counted,
    get_app,
    info,
    org_value,
    print_fields,
    print_json,
)
from mfactl.cli.interact import ProgressBar

if TYPE_CHECKING:
    from mfactl.services.keys import Failure

app = typer.Typer(
    help="The keys that seal the TOTP secrets: generate, status, verify, migrate.",
    no_args_is_help=True,
)

BATCH_OPTION = typer.Option(
    1000, "--batch-size", metavar="N", help="Rows per batch; each batch commits on its own."
)
WORKERS_OPTION = typer.Option(
    1, "--workers", metavar="N", help="Processes doing the decryption and encryption."
)
# verify writes nothing: its batches are only read, and its workers only decrypt
VERIFY_BATCH_OPTION = typer.Option(
    1000, "--batch-size", metavar="N", help="Rows read (and checked) per batch; nothing is written."
)
VERIFY_WORKERS_OPTION = typer.Option(
    1, "--workers", metavar="N", help="Processes doing the decryption."
)


def _raise_failures(failed: list[Failure], what: tuple[str, str], tail: str) -> None:
    """Exit 6 naming every failure; ``what`` is the (singular, plural) predicate."""
    from mfactl.errors import SecretStoreError

    if failed:
        count = len(failed)
        predicate = what[0] if count == 1 else what[1]
        raise SecretStoreError(
            f"{count} sealed value{'s' if count != 1 else ''} {predicate}; {tail}",
            problems=[f"{f.org or '-'}/{f.user or '-'}: {f.reason}" for f in failed],
            hint=_failures_hint(failed),
        )


def _failures_hint(failed: list[Failure]) -> str:
    """What fixes them: the old key back, or a reset, which makes a new secret and cancels the
    user's queued emails (their bodies carry the old links)."""
    secrets = any(not f.outbox for f in failed)
    bodies = any(f.outbox for f in failed)
    if secrets and not bodies:
        fix = "reset the MFA of these users"
    elif bodies and not secrets:
        fix = "reset these users (a reset cancels their queued emails and mails a new link)"
    else:
        fix = (
            "reset these users (a reset gives a new MFA secret, cancels their queued emails "
            "and mails a new link)"
        )
    return f"set secretStore.rollingKey to the key that sealed them, or {fix}"


@app.command("generate")
def generate() -> None:
    """Print a new Fernet key (only the key, for $(…)).

    $ mfactl keys generate > /etc/mfactl/active.key
    """
    from mfactl.services import keys

    sys.stdout.write(keys.new_key() + "\n")


@app.command("status")
def status(ctx: typer.Context, json_: bool = JSON_OPTION) -> None:
    """Show the key ids and how many secrets and outbox bodies each key holds.

    $ mfactl keys status

    $ mfactl keys status --json
    """
    from mfactl.services import keys

    result = keys.status(get_app(ctx))
    if json_:
        print_json(result)
        return
    s, o = result.secrets, result.outbox
    print_fields(
        [
            ("active key", result.active_key_id),
            ("rolling key", result.rolling_key_id),
            ("secrets", f"{s.active} active, {s.rolling} rolling, {s.unknown} unknown key"),
            ("outbox bodies", f"{o.active} active, {o.rolling} rolling, {o.unknown} unknown key"),
        ]
    )
    if s.rolling or o.rolling:
        info("run `mfactl keys migrate` to re-encrypt what the rolling key still holds")


@app.command("verify")
def verify(
    ctx: typer.Context,
    batch_size: int = VERIFY_BATCH_OPTION,
    workers: int = VERIFY_WORKERS_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Decrypt every secret and outbox body and check who it is bound to (exit 6 on a failure).

    It only reads: nothing is re-encrypted or written.

    $ mfactl keys verify

    $ mfactl keys verify --workers 2 --json
    """
    from mfactl.services import keys

    with ProgressBar("verifying") as bar:
        report = keys.verify(get_app(ctx), batch_size=batch_size, workers=workers, progress=bar)
    if json_:
        print_json(report)
    else:
        info(
            f"checked {counted(report.secrets, 'secret')} and "
            f"{counted(report.outbox, 'outbox body', 'outbox bodies')}"
        )
    _raise_failures(
        report.failed,
        (
            "cannot be opened or is bound to someone else",
            "cannot be opened or are bound to someone else",
        ),
        "every other one is fine",
    )
    if not json_:
        info("ok: every sealed value opens and is bound to its owner")


@app.command("migrate")
def migrate(
    ctx: typer.Context,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Decrypt and count what would be migrated; write nothing."
    ),
    batch_size: int = BATCH_OPTION,
    workers: int = WORKERS_OPTION,
    org: str | None = typer.Option(
        None, "--org", help="Only this organization's secrets.", callback=org_value
    ),
    json_: bool = JSON_OPTION,
) -> None:
    """Re-encrypt every secret and outbox body under the active key, online and resumable.

    $ mfactl keys migrate --dry-run

    $ mfactl keys migrate --workers 2 --json
    """
    from mfactl.services import keys

    with ProgressBar("checking" if dry_run else "migrating") as bar:
        report = keys.migrate(
            get_app(ctx),
            dry_run=dry_run,
            batch_size=batch_size,
            workers=workers,
            org=org,
            progress=bar,
        )
    if json_:
        print_json(report)
    else:
        verb = "would migrate" if dry_run else "migrated"
        already = report.already_active
        info(
            f"{verb} {counted(report.migrated, 'secret')} and "
            f"{counted(report.outbox_migrated, 'outbox body', 'outbox bodies')}; "
            f"{counted(already, 'secret')} {'was' if already == 1 else 'were'} already under "
            "the active key"
        )
        if report.changed_meanwhile:
            changed = report.changed_meanwhile
            left = "was left as it is" if changed == 1 else "were left as they are"
            info(
                f"{counted(changed, 'row')} changed meanwhile (a reset or an enrollment) and {left}"
            )
    _raise_failures(
        report.failed,
        (
            "could not be migrated and was left untouched",
            "could not be migrated and were left untouched",
        ),
        "every other row was migrated",
    )
