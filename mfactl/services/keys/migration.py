"""`keys migrate`: re-encrypt, online and resumably, every secret and outbox body the active key
did not seal (how: ``_reencrypt``), refusing to start when a key is missing, and audited."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from enum import Enum

from sqlalchemy.engine import Connection

from mfactl.app import App
from mfactl.crypto import SecretStore
from mfactl.errors import SecretStoreError
from mfactl.services import audit
from mfactl.services.keys._reencrypt import (
    DEFAULT_BATCH_SIZE,
    Crypto,
    Mode,
    Tally,
    Walk,
    check_options,
)
from mfactl.services.keys._tables import OUTBOX, SECRETS, Backlog
from mfactl.services.keys.reports import MigrateReport
from mfactl.services.progress import NO_PROGRESS, Progress


class _Outcome(Enum):
    """The outcome of the run's audit event."""

    OK = "ok"
    FAILED = "failed"  # some rows could not be migrated
    INTERRUPTED = "interrupted"  # an error or Ctrl-C stopped it: what was committed is recorded


def migrate(
    app: App,
    *,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = 1,
    org: str | None = None,
    progress: Progress = NO_PROGRESS,
    before_write: Callable[[list[int]], None] | None = None,
) -> MigrateReport:
    """Re-encrypt every secret and outbox body not under the active key.

    Rows no key opens, or bound to someone else, are left untouched and listed in the report's
    ``failed``; the caller decides how to end (the CLI exits 6). ``before_write`` is called
    with each batch's primary keys just before it is written (tests use it to race).
    """
    check_options(batch_size, workers)
    slug = _org_scope(app, org)
    active = app.secrets.active_key_id
    with app.uow() as uow:  # also checks that the schema is current
        conn = uow.session.connection()
        secrets_backlog = SECRETS.backlog(conn, org=slug, active=active)
        outbox_backlog = OUTBOX.backlog(conn, org=slug, active=active)
        _refuse_unknown_without_rolling(conn, app.secrets, slug)
    todo = secrets_backlog.pending + outbox_backlog.pending
    progress.start(todo)
    mode = Mode.DRY_RUN if dry_run else Mode.MIGRATE
    secrets, outbox = Tally(), Tally()
    try:
        with Crypto(app, workers, rows=todo, batch_size=batch_size) as crypto:
            for table, tally in ((SECRETS, secrets), (OUTBOX, outbox)):
                Walk(
                    app,
                    table,
                    mode,
                    crypto,
                    tally,
                    org=slug,
                    batch_size=batch_size,
                    progress=progress,
                    before_write=before_write,
                ).run()
    except BaseException:
        if not dry_run:
            partial = _report(dry_run, secrets_backlog, outbox_backlog, secrets, outbox)
            with contextlib.suppress(Exception):  # the error that stopped the run comes first
                _record_migration(app, slug, _Outcome.INTERRUPTED, partial)
        raise
    report = _report(dry_run, secrets_backlog, outbox_backlog, secrets, outbox)
    if not dry_run:
        _record_migration(app, slug, _Outcome.FAILED if report.failed else _Outcome.OK, report)
    return report


def _report(
    dry_run: bool, secrets_backlog: Backlog, outbox_backlog: Backlog, secrets: Tally, outbox: Tally
) -> MigrateReport:
    return MigrateReport(
        dry_run=dry_run,
        migrated=secrets.migrated,
        already_active=secrets_backlog.already_active,
        outbox_migrated=outbox.migrated,
        outbox_already_active=outbox_backlog.already_active,
        changed_meanwhile=secrets.changed_meanwhile + outbox.changed_meanwhile,
        failed=secrets.failed + outbox.failed,
    )


def _org_scope(app: App, org: str | None) -> str | None:
    """The organization's slug as stored (``--org`` ignores case), or None for every one."""
    if org is None:
        return None
    from mfactl.services import lookup

    with app.uow() as uow:
        return lookup.get_org(uow.session, org).slug


def _record_migration(app: App, org: str | None, outcome: _Outcome, report: MigrateReport) -> None:
    with app.uow() as uow:
        audit.record(
            uow.session,
            app,
            "keys.migrate",
            org=org,
            outcome=outcome.value,
            details={
                "active_key_id": app.secrets.active_key_id,
                "migrated": report.migrated,
                "already_active": report.already_active,
                "outbox_migrated": report.outbox_migrated,
                "changed_meanwhile": report.changed_meanwhile,
                "failed": len(report.failed),
            },
        )
        uow.commit()


def _refuse_unknown_without_rolling(conn: Connection, store: SecretStore, org: str | None) -> None:
    """With no rolling key, rows under another key mean the previous key was dropped too soon."""
    if store.rolling_key_id is not None:
        return
    counts = SECRETS.by_key_id(conn, org=org)
    unknown = {kid: n for kid, n in counts.items() if kid != store.active_key_id}
    if unknown:
        total = sum(unknown.values())
        ids = ", ".join(sorted(str(kid) for kid in unknown))
        raise SecretStoreError(
            f"{total} MFA secret{'s are' if total != 1 else ' is'} sealed with a key that is not "
            f"configured (key id {ids}) and secretStore.rollingKey is not set; nothing was changed",
            hint="set secretStore.rollingKey to the previous active key, then run "
            "`mfactl keys migrate` again",
        )
