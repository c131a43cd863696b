"""Key status, verification and the online migration, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import delete, insert, select, update

from mfactl.app import App
from mfactl.crypto import SecretStore, generate_key, outbox_label
from mfactl.db.models import AuditEvent, MfaSecret, OutboxMessage
from mfactl.errors import InvalidInput, NotFound, SecretStoreError, Unavailable
from mfactl.services import keys
from mfactl.services.keys import _reencrypt
from tests.conftest import FrozenClock, _wipe, make_app
from tests.keyseed import MOMENT, assert_all_open, seed_secrets, stored


@pytest.fixture
def old_key() -> str:
    return generate_key()


@pytest.fixture
def rotated(db_url: str, clock: FrozenClock, active_key: str, old_key: str) -> Iterator[App]:
    """An App whose active key is new and whose rolling key is the previous one."""
    application = make_app(db_url, clock, active_key, rolling_key=old_key)
    _wipe(application)
    yield application
    application.close()


def add_outbox(app: App, store: SecretStore, body: str, user_id: int | None = None) -> int:
    with app.engine.begin() as conn:
        message_id = int(
            conn.execute(
                insert(OutboxMessage).values(
                    user_id=user_id,
                    recipient="a@example.com",
                    subject="s",
                    status="pending",
                    attempts=0,
                    created_at=MOMENT,
                )
            ).inserted_primary_key[0]
        )
        sealed = store.seal_blob(outbox_label(message_id), body.encode())
        conn.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == message_id)
            .values(body_ciphertext=sealed.ciphertext, key_id=sealed.key_id)
        )
    return message_id


def audit_details(app: App) -> list[dict[str, object]]:
    with app.engine.connect() as conn:
        query = select(AuditEvent.details).where(AuditEvent.action == "keys.migrate")
        return list(conn.scalars(query.order_by(AuditEvent.id)))


def test_reports_become_their_documented_json() -> None:
    counts = keys.KeyCounts(active=1, rolling=2, unknown=3)
    assert json.dumps(keys.KeyStatus("a1", None, counts, counts).to_json()) == (
        '{"active_key_id": "a1", "rolling_key_id": null, '
        '"secrets": {"active": 1, "rolling": 2, "unknown": 3}, '
        '"outbox": {"active": 1, "rolling": 2, "unknown": 3}}'
    )
    failed = [keys.Failure("acme", "bob", "why"), keys.Failure(None, None, "gone")]
    migrated = keys.MigrateReport(True, 1, 2, 3, 4, 5, failed)
    assert json.dumps(migrated.to_json()) == (
        '{"dry_run": true, "migrated": 1, "already_active": 2, '
        '"failed": [{"org": "acme", "user": "bob", "reason": "why"}, '
        '{"org": null, "user": null, "reason": "gone"}], '
        '"outbox": {"migrated": 3, "already_active": 4}, "changed_meanwhile": 5}'
    )
    assert json.dumps(keys.VerifyReport(6, 7, failed[:1]).to_json()) == (
        '{"ok": false, "secrets": 6, "outbox": 7, '
        '"failed": [{"org": "acme", "user": "bob", "reason": "why"}]}'
    )
    assert keys.VerifyReport(6, 7).to_json()["ok"] is True


def test_status_counts_by_key_id(rotated: App, old_key: str) -> None:
    old = SecretStore(old_key)
    seed_secrets(rotated.engine, old, 3, prefix="o")
    seed_secrets(rotated.engine, rotated.secrets, 2, prefix="n")
    seed_secrets(rotated.engine, SecretStore(generate_key()), 1, prefix="x")
    add_outbox(rotated, old, "hello")
    add_outbox(rotated, rotated.secrets, "hi")
    result = keys.status(rotated)
    assert result.active_key_id == rotated.secrets.active_key_id
    assert result.rolling_key_id == old.active_key_id
    assert result.secrets == keys.KeyCounts(active=2, rolling=3, unknown=1)
    assert result.outbox == keys.KeyCounts(active=1, rolling=1, unknown=0)


def test_migrate_reseals_everything_and_resumes_with_nothing(rotated: App, old_key: str) -> None:
    old = SecretStore(old_key)
    seeded = seed_secrets(rotated.engine, old, 25, prefix="o")
    seeded += seed_secrets(rotated.engine, rotated.secrets, 5, prefix="n")
    message = add_outbox(rotated, old, "your link: https://x/?t=abc")
    report = keys.migrate(rotated, batch_size=7)
    assert (report.migrated, report.already_active, report.failed) == (25, 5, [])
    assert (report.outbox_migrated, report.changed_meanwhile) == (1, 0)
    assert_all_open(rotated.engine, rotated.secrets, seeded)
    with rotated.engine.connect() as conn:
        ct, kid = conn.execute(select(OutboxMessage.body_ciphertext, OutboxMessage.key_id)).one()
    assert kid == rotated.secrets.active_key_id
    opened = SecretStore(rotated.settings.secret_store.active_key).open_blob(
        outbox_label(message), ct, "body"
    )
    assert opened.plaintext == "your link: https://x/?t=abc"
    again = keys.migrate(rotated, batch_size=7)
    assert (again.migrated, again.already_active, again.outbox_migrated) == (0, 30, 0)
    assert [d["migrated"] for d in audit_details(rotated)] == [25, 0]
    assert keys.status(rotated).secrets == keys.KeyCounts(active=30, rolling=0, unknown=0)


def test_failures_are_left_untouched_and_reported(rotated: App, old_key: str) -> None:
    old = SecretStore(old_key)
    good = seed_secrets(rotated.engine, old, 6, prefix="o")
    stray = seed_secrets(rotated.engine, SecretStore(generate_key()), 1, prefix="lost")
    moved = seed_secrets(rotated.engine, old, 1, prefix="moved")
    # a ciphertext copied onto another user's row must be refused, never accepted
    with rotated.engine.begin() as conn:
        conn.execute(
            update(MfaSecret)
            .where(MfaSecret.user_id == moved[0].user_id)
            .values(ciphertext=stored(rotated.engine)[good[0].user_id][0])
        )
    before = stored(rotated.engine)
    report = keys.migrate(rotated, batch_size=3)
    assert report.migrated == 6
    reasons = {f.user: f.reason for f in report.failed}
    assert reasons == {
        "lost0": "the MFA secret of acme/lost0 cannot be decrypted with any configured key",
        "moved0": "the MFA secret stored for acme/moved0 is bound to another user; it was refused",
    }
    assert all(f.org == "acme" for f in report.failed)
    after = stored(rotated.engine)
    assert after[stray[0].user_id] == before[stray[0].user_id]
    assert after[moved[0].user_id] == before[moved[0].user_id]
    assert_all_open(rotated.engine, rotated.secrets, good)
    assert audit_details(rotated)[-1]["failed"] == 2
    checked = keys.verify(rotated, batch_size=4)
    assert checked.secrets == 8 and {f.user for f in checked.failed} == {"lost0", "moved0"}


def test_dry_run_counts_and_writes_nothing(rotated: App, old_key: str) -> None:
    seed_secrets(rotated.engine, SecretStore(old_key), 4, prefix="o")
    before = stored(rotated.engine)
    report = keys.migrate(rotated, dry_run=True, batch_size=3)
    assert (report.dry_run, report.migrated, report.failed) == (True, 4, [])
    assert stored(rotated.engine) == before and audit_details(rotated) == []


def test_org_limits_the_migration(rotated: App, old_key: str) -> None:
    old = SecretStore(old_key)
    acme = seed_secrets(rotated.engine, old, 3, org="acme", prefix="a")
    other = seed_secrets(rotated.engine, old, 2, org="globex", prefix="g")
    assert keys.migrate(rotated, org="ACME").migrated == 3
    assert_all_open(rotated.engine, rotated.secrets, acme)
    rows = stored(rotated.engine)
    assert {rows[s.user_id][1] for s in other} == {old.active_key_id}
    with pytest.raises(NotFound, match=r"^organization 'nope' does not exist$"):
        keys.migrate(rotated, org="nope")


def test_refuses_unknown_key_without_rolling_key(app: App) -> None:
    seed_secrets(app.engine, SecretStore(generate_key()), 2)
    before = stored(app.engine)
    with pytest.raises(SecretStoreError) as caught:
        keys.migrate(app)
    assert caught.value.message.startswith(
        "2 MFA secrets are sealed with a key that is not configured (key id "
    )
    assert caught.value.message.endswith(
        "and secretStore.rollingKey is not set; nothing was changed"
    )
    assert stored(app.engine) == before


def test_without_rolling_key_only_the_other_keys_are_refused(app: App) -> None:
    seed_secrets(app.engine, app.secrets, 3, prefix="a")
    assert keys.migrate(app).already_active == 3
    seed_secrets(app.engine, SecretStore(generate_key()), 1, prefix="x")
    with pytest.raises(SecretStoreError, match=r"^1 MFA secret is sealed with a key"):
        keys.migrate(app)


def test_bad_options(app: App) -> None:
    with pytest.raises(InvalidInput, match="--batch-size must be between 1 and 100000"):
        keys.migrate(app, batch_size=0)
    with pytest.raises(InvalidInput, match="--workers must be between 1 and 64"):
        keys.verify(app, workers=0)


def test_resets_and_enrollments_meanwhile_always_win(rotated: App, old_key: str) -> None:
    old = SecretStore(old_key)
    seeded = seed_secrets(rotated.engine, old, 10, prefix="o")
    reset, enrolled = seeded[2], seeded[3]
    new_secret = rotated.secrets.seal_secret(enrolled.uid, "JBSWY3DPEHPK3PXP")
    racers: list[threading.Thread] = []

    def concurrently() -> None:
        with rotated.engine.begin() as conn:
            conn.execute(delete(MfaSecret).where(MfaSecret.user_id == reset.user_id))
            conn.execute(
                update(MfaSecret)
                .where(MfaSecret.user_id == enrolled.user_id)
                .values(ciphertext=new_secret.ciphertext, key_id=new_secret.key_id)
            )

    def hook(batch: list[int]) -> None:
        if reset.user_id in batch and not racers:
            racer = threading.Thread(target=concurrently)
            racers.append(racer)
            racer.start()
            # PostgreSQL: the batch holds these rows FOR UPDATE, so the racer waits for its
            # commit and then wins; elsewhere it has changed them before the batch is written
            racer.join(timeout=0.3 if rotated.engine.dialect.name == "postgresql" else 30)

    report = keys.migrate(rotated, batch_size=4, before_write=hook)
    racers[0].join(timeout=30)
    rows = stored(rotated.engine)
    assert reset.user_id not in rows
    assert rows[enrolled.user_id][0] == new_secret.ciphertext
    racing = rotated.engine.dialect.name != "postgresql"
    assert report.changed_meanwhile == (2 if racing else 0)
    assert report.migrated == (8 if racing else 10)
    assert_all_open(
        rotated.engine, rotated.secrets, [s for s in seeded if s not in (reset, enrolled)]
    )


def test_workers_spread_the_crypto(rotated: App, old_key: str) -> None:
    seeded = seed_secrets(rotated.engine, SecretStore(old_key), 40, prefix="o")
    report = keys.migrate(rotated, batch_size=6, workers=2)
    assert (report.migrated, report.failed) == (40, [])
    assert_all_open(rotated.engine, rotated.secrets, seeded)
    assert keys.verify(rotated, workers=2).failed == []


def test_outbox_body_bound_to_another_message_is_refused(rotated: App, old_key: str) -> None:
    old = SecretStore(old_key)
    (alice,) = seed_secrets(rotated.engine, old, 1, prefix="alice")
    first = add_outbox(rotated, old, "link one", user_id=alice.user_id)
    second = add_outbox(rotated, old, "link two", user_id=alice.user_id)
    with rotated.engine.begin() as conn:  # body of message 1 copied onto message 2
        body = conn.scalar(select(OutboxMessage.body_ciphertext).where(OutboxMessage.id == first))
        conn.execute(
            update(OutboxMessage).where(OutboxMessage.id == second).values(body_ciphertext=body)
        )
    report = keys.migrate(rotated)
    assert (report.migrated, report.outbox_migrated) == (1, 1)
    assert report.failed == [
        keys.Failure(
            "acme",
            "alice0",
            f"the body of outbox message {second} is bound to something else; it was refused",
        )
    ]
    with rotated.engine.connect() as conn:
        kid = conn.scalar(select(OutboxMessage.key_id).where(OutboxMessage.id == second))
    assert kid == old.active_key_id


def _die(*_args: object) -> None:
    os._exit(3)  # a --workers process killed (out of memory, kill -9)


def test_a_dead_worker_stops_the_run_without_writing(
    sqlite_url: str,
    clock: FrozenClock,
    active_key: str,
    old_key: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rotated = make_app(sqlite_url, clock, active_key, rolling_key=old_key)
    seed_secrets(rotated.engine, SecretStore(old_key), 12)
    before = stored(rotated.engine)
    monkeypatch.setattr(_reencrypt, "_pool_reseal", _die)
    with pytest.raises(Unavailable, match="a --workers process died"):
        keys.migrate(rotated, batch_size=5, workers=2)
    assert stored(rotated.engine) == before
    with rotated.engine.connect() as conn:
        event = conn.execute(select(AuditEvent.outcome, AuditEvent.details)).one()
    assert event.outcome == "interrupted" and event.details["migrated"] == 0
    rotated.close()
