"""`keys verify`: open every secret and outbox body, checking whom each is bound to."""

from __future__ import annotations

from mfactl.app import App
from mfactl.services.keys._reencrypt import (
    DEFAULT_BATCH_SIZE,
    Crypto,
    Mode,
    Tally,
    Walk,
    check_options,
)
from mfactl.services.keys._tables import OUTBOX, SECRETS
from mfactl.services.keys.reports import VerifyReport
from mfactl.services.progress import NO_PROGRESS, Progress


def verify(
    app: App,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = 1,
    progress: Progress = NO_PROGRESS,
) -> VerifyReport:
    """Decrypt every secret and outbox body, checking each one's binding; nothing is written."""
    check_options(batch_size, workers)
    with app.uow() as uow:
        conn = uow.session.connection()
        total = sum(SECRETS.by_key_id(conn).values()) + sum(OUTBOX.by_key_id(conn).values())
    progress.start(total)
    secrets, outbox = Tally(), Tally()
    with Crypto(app, workers, rows=total, batch_size=batch_size) as crypto:
        for table, tally in ((SECRETS, secrets), (OUTBOX, outbox)):
            Walk(
                app,
                table,
                Mode.VERIFY,
                crypto,
                tally,
                org=None,
                batch_size=batch_size,
                progress=progress,
            ).run()
    return VerifyReport(secrets.seen, outbox.seen, secrets.failed + outbox.failed)
