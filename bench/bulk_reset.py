"""`users reset` over N users: how long the reset transaction takes to commit, then the sending.

    .venv/bin/python bench/bulk_reset.py [--users 10000] [--transport file|smtp] [--engine postgres]

Builds a fresh database (SQLite in a temporary folder, or a throwaway PostgreSQL database), N users
in one organization, each with an active secret and a remember-me token, then runs the service
behind `users reset --org bench --reason … --yes`. Prints the commit time, the sending time, and
the ratio of the commit time to the raw limit: the same rows written by bare executemany
statements, with no rendering, sealing or hashing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, insert, update

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._setup import database
from mfactl.app import App
from mfactl.config import Database, Email, SecretStoreSettings, Smtp, load_settings
from mfactl.crypto import generate_key
from mfactl.db.models import (
    ActionToken,
    AuditEvent,
    MfaSecret,
    Organization,
    OutboxMessage,
    RememberToken,
    User,
)
from mfactl.services import reset
from mfactl.services.selection import UserFilter

NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def populate(app: App, n: int) -> None:
    sealed = app.secrets.seal_secret(str(uuid.uuid4()), "JBSWY3DPEHPK3PXP")
    with app.engine.begin() as conn:
        org_id = conn.execute(
            insert(Organization).values(slug="bench", name="Bench", created_at=NOW)
        ).inserted_primary_key[0]
        conn.execute(
            insert(User),
            [
                {
                    "uid": str(uuid.uuid4()),
                    "organization_id": org_id,
                    "handle": f"user{i:05d}",
                    "email": f"user{i:05d}@example.com",
                    "display_name": f"User {i}",
                    "is_admin": i < 10,
                    "created_at": NOW,
                }
                for i in range(n)
            ],
        )
        ids = [row[0] for row in conn.exec_driver_sql("SELECT id FROM users ORDER BY id")]
        conn.execute(
            insert(MfaSecret),
            [
                {
                    "user_id": uid,
                    "state": "active",
                    "ciphertext": sealed.ciphertext,
                    "key_id": sealed.key_id,
                    "algorithm": "SHA1",
                    "digits": 6,
                    "period": 30,
                    "created_at": NOW,
                    "last_used_step": -1,
                    "failed_attempts": 0,
                    "locked": False,
                }
                for uid in ids
            ],
        )
        conn.execute(
            insert(RememberToken),
            [
                {
                    "user_id": uid,
                    "token_hash": f"{uid:064d}",
                    "created_at": NOW,
                    "expires_at": NOW + timedelta(days=30),
                }
                for uid in ids
            ],
        )


def raw_limit(app: App, n: int) -> float:
    """The same writes as a reset, as bare statements (then rolled back)."""
    with app.engine.connect() as conn:
        ids = [row[0] for row in conn.exec_driver_sql("SELECT id FROM users ORDER BY id")]
        conn.rollback()
        start = time.perf_counter()
        with conn.begin() as tx:
            for part in range(0, n, 500):
                chunk = ids[part : part + 500]
                conn.execute(delete(MfaSecret).where(MfaSecret.user_id.in_(chunk)))
                conn.execute(
                    update(RememberToken)
                    .where(RememberToken.user_id.in_(chunk))
                    .values(revoked_at=NOW)
                )
            conn.execute(
                insert(ActionToken),
                [
                    {
                        "user_id": i,
                        "purpose": "reset",
                        "token_hash": f"{i:064x}",
                        "created_at": NOW,
                        "expires_at": NOW,
                    }
                    for i in ids
                ],
            )
            conn.execute(
                insert(OutboxMessage),
                [
                    {
                        "user_id": i,
                        "recipient": "x@example.com",
                        "subject": "s",
                        "body_ciphertext": "b" * 1500,
                        "status": "pending",
                        "attempts": 0,
                        "created_at": NOW,
                    }
                    for i in ids
                ],
            )
            conn.execute(
                insert(AuditEvent),
                [
                    {
                        "at": NOW,
                        "actor": "bench",
                        "action": "user.reset",
                        "organization": "bench",
                        "user_handle": str(i),
                        "outcome": "ok",
                        "details": {"reason": "bench"},
                    }
                    for i in ids
                ],
            )
            elapsed = time.perf_counter() - start
            tx.rollback()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--transport", choices=("file", "smtp"), default="file")
    parser.add_argument(
        "--engine",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="SQLite in a temporary folder, or a throwaway database on the PostgreSQL server "
        "of $MFACTL_TEST_POSTGRES_URL",
    )
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="mfactl-bench-") as folder,
        database(args.engine) as url,
    ):
        run(url, Path(folder), args.users, args.transport)


def run(url: str, folder: Path, users: int, transport: str) -> None:
    server = None
    email = replace(Email(), transport="file", file_dir=str(folder / "mail"))
    if transport == "smtp":
        from tests.integration.smtp_server import SmtpServer

        server = SmtpServer(folder).start()
        email = replace(Email(), transport="smtp", smtp=Smtp(**server.settings()))
    settings = replace(
        load_settings(environ={}),
        database=Database(url=url),
        secret_store=SecretStoreSettings(active_key=generate_key()),
        email=email,
    )
    app = App(settings=settings, clock=lambda: NOW, actor="bench")
    populate(app, users)
    raw = raw_limit(app, users)

    committed: list[float] = []
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if not committed:
            committed.append(time.perf_counter() - start)

    result = reset.reset_users(
        app, UserFilter(org="bench"), "bench: lost phones", progress=progress
    )
    total = time.perf_counter() - start
    if server is not None:
        server.stop()
    commit = committed[0] if committed else total
    print(f"users reset: {result.changed} users, database {url.split(':')[0]}")
    print(f"  reset transaction committed in {commit:.2f} s")
    print(f"  {result.sent} emails sent ({transport}) in {total - commit:.2f} s")
    print(f"  raw limit (bare statements, same rows): {raw:.2f} s; ratio {commit / raw:.1f}x")
    app.close()


if __name__ == "__main__":
    main()
