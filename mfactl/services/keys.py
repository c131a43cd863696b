"""The secret-store keys: status, verification, and the online, resumable key migration.

The migration re-encrypts every MFA secret and outbox body not sealed with the active key while
users keep logging in:

- rows are taken in batches by primary key (keyset pagination) among those whose ``key_id`` is
  not the active key's, so a re-run after an interruption (even ``kill -9``) does what is left;
- each batch is one short transaction, and each row is written only if its ciphertext is still
  the one read (compare-and-swap), so a reset or an enrollment made meanwhile always wins;
- on PostgreSQL the batch is read ``FOR UPDATE SKIP LOCKED``: several processes, on several
  hosts, share the work without doing a row twice (on the other engines the compare-and-swap
  alone guarantees that; they may only waste some decryption);
- the crypto runs in a pool of ``--workers`` processes (one by default) while this process does
  the database work, one batch ahead, so reading and writing cost next to no time of their own;
  a worker whose mfactl process is killed leaves at once.

The database path is SQLAlchemy Core with executemany updates: no ORM object per row.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from sqlalchemy import Select, bindparam, func, null, or_, select, update
from sqlalchemy.engine import Connection, Engine

from mfactl.app import App
from mfactl.crypto import SecretStore, outbox_label
from mfactl.db.models import MfaSecret, Organization, OutboxMessage, User
from mfactl.errors import InvalidInput, SecretStoreError, Unavailable
from mfactl.services import audit
from mfactl.services.progress import NO_PROGRESS, Progress

DEFAULT_BATCH_SIZE = 1000
MAX_BATCH_SIZE = 100_000

_SECRETS = MfaSecret.__table__
_USERS = User.__table__
_ORGS = Organization.__table__
_OUTBOX = OutboxMessage.__table__


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyCounts:
    active: int
    rolling: int
    unknown: int


@dataclass(frozen=True)
class KeyStatus:
    active_key_id: str
    rolling_key_id: str | None
    secrets: KeyCounts
    outbox: KeyCounts


@dataclass(frozen=True)
class Failure:
    org: str | None
    user: str | None
    reason: str


@dataclass
class MigrateReport:
    dry_run: bool
    migrated: int = 0  # secrets re-encrypted (or, in a dry run, that would be)
    already_active: int = 0  # secrets already under the active key
    outbox_migrated: int = 0
    outbox_already_active: int = 0
    changed_meanwhile: int = 0  # rows a reset or enrollment changed between read and write
    failed: list[Failure] = field(default_factory=list)


@dataclass
class VerifyReport:
    secrets: int = 0
    outbox: int = 0
    failed: list[Failure] = field(default_factory=list)


# --- status ----------------------------------------------------------------------------------


def status(app: App) -> KeyStatus:
    """How many secrets and outbox bodies each key holds, from the key ids alone."""
    store = app.secrets
    with app.uow() as uow:
        secrets = _count_by_key(uow.session.connection(), store, _SECRETS.c.key_id, None)
        outbox = _count_by_key(
            uow.session.connection(),
            store,
            _OUTBOX.c.key_id,
            _OUTBOX.c.body_ciphertext.is_not(None),
        )
    return KeyStatus(store.active_key_id, store.rolling_key_id, secrets, outbox)


def _count_by_key(conn: Connection, store: SecretStore, column: Any, where: Any) -> KeyCounts:
    query = select(column, func.count()).group_by(column)
    if where is not None:
        query = query.where(where)
    counts: dict[str, int] = {"active": 0, "rolling": 0, "unknown": 0}
    for kid, n in conn.execute(query):
        if kid == store.active_key_id:
            counts["active"] += n
        elif kid is not None and kid == store.rolling_key_id:
            counts["rolling"] += n
        else:
            counts["unknown"] += n
    return KeyCounts(**counts)


def rolling_key_in_use(engine: Engine, rolling_key_id: str) -> tuple[int, int]:
    """(secrets, outbox bodies) still sealed with the rolling key."""
    with engine.connect() as conn:
        secrets = conn.scalar(select(func.count()).where(_SECRETS.c.key_id == rolling_key_id))
        outbox = conn.scalar(
            select(func.count()).where(
                _OUTBOX.c.key_id == rolling_key_id, _OUTBOX.c.body_ciphertext.is_not(None)
            )
        )
    return int(secrets or 0), int(outbox or 0)


# --- the two tables a migration walks ----------------------------------------------------------

# writes (primary key, old ciphertext, new ciphertext) rows under the active key id; -> rows written
_CasWriter = Callable[[Connection, list[tuple[int, str, str]], str], int]

# a row as read: (primary key, key id, ciphertext, binding: the user's uid, or None for outbox)
_Read = tuple[int, str | None, str, str | None]


@dataclass(frozen=True)
class _Table:
    kind: str  # "secret" | "outbox"
    pk: Any
    key_id: Any
    ciphertext: Any
    uid: Any  # users.uid for secrets (their binding), None for outbox bodies
    base: Any  # the table, joined to users when the binding needs it
    scoped: Any  # the same, joined to users and organizations, for --org
    not_null: Any  # the condition a row needs to hold anything sealed (or None)
    # the joined column equal to pk (users.id): bounded too, or a merge join would scan the
    # users from the first one at every batch
    pk_twin: Any = None

    def select_rows(
        self, *, limit: int, org: str | None, pending_for: str | None, lock: bool
    ) -> Select[Any]:
        """The batch after the bound parameter ``after``: built once, executed per batch."""
        after = bindparam("after", type_=self.pk.type)
        query = (
            select(
                self.pk, self.key_id, self.ciphertext, self.uid if self.uid is not None else null()
            )
            .select_from(self.scoped if org is not None else self.base)
            .where(self.pk > after)
            .order_by(self.pk)
            .limit(limit)
        )
        if self.pk_twin is not None:
            query = query.where(self.pk_twin > after)
        if self.not_null is not None:
            query = query.where(self.not_null)
        if pending_for is not None:
            query = query.where(or_(self.key_id.is_(None), self.key_id != pending_for))
        if org is not None:
            query = query.where(_ORGS.c.slug == org)
        if lock:
            query = query.with_for_update(of=self.pk.table, skip_locked=True)
        return query

    def count(self, conn: Connection, *, org: str | None, active: str) -> tuple[int, int]:
        """(rows under the active key, rows not under it) within scope."""
        # GROUP BY key_id: read from the key_id index alone, not from the ciphertexts
        query = select(self.key_id, func.count()).group_by(self.key_id)
        query = query.select_from(self.scoped if org is not None else self.pk.table)
        if self.not_null is not None:
            query = query.where(self.not_null)
        if org is not None:
            query = query.where(_ORGS.c.slug == org)
        done = todo = 0
        for kid, n in conn.execute(query):
            if kid == active:
                done += n
            else:
                todo += n
        return done, todo

    def binding(self, row: _Read) -> str:
        return row[3] if row[3] is not None else outbox_label(row[0])

    def cas_writer(self, dialect: Any) -> _CasWriter:
        """The compare-and-swap UPDATE of a batch, as lean as the driver allows."""
        if dialect.name == "postgresql":
            # one statement for the whole batch; PostgreSQL re-checks "ciphertext = old" on a
            # row another transaction changed meanwhile, so the compare-and-swap still holds
            table = self.pk.table.name
            pk, ct, kid = self.pk.name, self.ciphertext.name, self.key_id.name
            sql = (
                f"UPDATE {table} AS t SET {ct} = v.new, {kid} = %(kid)s "
                "FROM unnest(%(pks)b::bigint[], %(olds)b::text[], %(news)b::text[]) "
                f"AS v(pk, old, new) WHERE t.{pk} = v.pk AND t.{ct} = v.old"
            )

            def unnest(conn: Connection, changes: list[tuple[int, str, str]], active: str) -> int:
                pks, olds, news = (list(column) for column in zip(*changes, strict=True))
                params = {"kid": active, "pks": pks, "olds": olds, "news": news}
                return int(conn.exec_driver_sql(sql, params).rowcount)

            return unnest
        stmt = (
            update(self.pk.table)
            .where(self.pk == bindparam("b_pk"), self.ciphertext == bindparam("b_old"))
            .values({self.ciphertext.key: bindparam("b_new"), self.key_id.key: bindparam("b_kid")})
        )
        compiled = stmt.compile(dialect=dialect)
        statement = str(compiled)
        order = tuple(compiled.positiontup or ()) if compiled.positional else None

        positions = {"b_pk": 0, "b_old": 1, "b_new": 2, "b_kid": 3}
        pick = itemgetter(*(positions[name] for name in order)) if order else None

        def executemany(conn: Connection, changes: list[tuple[int, str, str]], active: str) -> int:
            # straight to the driver: no per-row parameter processing in SQLAlchemy
            params: list[Any] = (
                [{"b_pk": p, "b_old": o, "b_new": n, "b_kid": active} for p, o, n in changes]
                if pick is None
                else [pick((p, o, n, active)) for p, o, n in changes]
            )
            if conn.dialect.supports_sane_multi_rowcount:
                return int(conn.exec_driver_sql(statement, params).rowcount)
            return sum(int(conn.exec_driver_sql(statement, p).rowcount) for p in params)

        return executemany

    def explain(self, conn: Connection, store: SecretStore, row: _Read) -> Failure | None:
        """Who a failed row belongs to and why it failed, in the words of the secret store;
        None when the row is gone meanwhile (the user or the sent email was deleted)."""
        if self.kind == "secret":
            query = (
                select(_ORGS.c.slug, _USERS.c.handle)
                .select_from(_USERS.join(_ORGS, _ORGS.c.id == _USERS.c.organization_id))
                .where(_USERS.c.id == row[0])
            )
            found: Any = conn.execute(query).first()
            if found is None:
                return None
            org, user = found
            try:
                store.open_secret(str(row[3]), row[2], f"{org}/{user}", key_id=row[1])
            except SecretStoreError as exc:
                return Failure(org, user, exc.message)
            return Failure(org, user, f"the MFA secret of {org}/{user} changed while it was read")
        query = (
            select(_ORGS.c.slug, _USERS.c.handle, _OUTBOX.c.recipient)
            .select_from(_OUTBOX_WHO)
            .where(_OUTBOX.c.id == row[0])
        )
        message: Any = conn.execute(query).first()
        if message is None:
            return None
        org, user, recipient = message
        what = f"the body of outbox message {row[0]}"
        try:
            store.open_blob(outbox_label(row[0]), row[2], what, key_id=row[1])
        except SecretStoreError as exc:
            return Failure(org, user or recipient, exc.message)
        return Failure(org, user or recipient, f"{what} changed while it was read")


_SECRET_USERS = _SECRETS.join(_USERS, _USERS.c.id == _SECRETS.c.user_id)
_SECRET_TABLE = _Table(
    kind="secret",
    pk=_SECRETS.c.user_id,
    key_id=_SECRETS.c.key_id,
    ciphertext=_SECRETS.c.ciphertext,
    uid=_USERS.c.uid,
    base=_SECRET_USERS,
    scoped=_SECRET_USERS.join(_ORGS, _ORGS.c.id == _USERS.c.organization_id),
    not_null=None,
    pk_twin=_USERS.c.id,
)
_OUTBOX_WHO = _OUTBOX.outerjoin(_USERS, _USERS.c.id == _OUTBOX.c.user_id).outerjoin(
    _ORGS, _ORGS.c.id == _USERS.c.organization_id
)
_OUTBOX_TABLE = _Table(
    kind="outbox",
    pk=_OUTBOX.c.id,
    key_id=_OUTBOX.c.key_id,
    ciphertext=_OUTBOX.c.body_ciphertext,
    uid=None,
    base=_OUTBOX,
    scoped=_OUTBOX.join(_USERS, _USERS.c.id == _OUTBOX.c.user_id).join(
        _ORGS, _ORGS.c.id == _USERS.c.organization_id
    ),
    not_null=_OUTBOX.c.body_ciphertext.is_not(None),
)
_TABLES = (_SECRET_TABLE, _OUTBOX_TABLE)


# --- the crypto, in this process or in a pool --------------------------------------------------

# work item: (binding, ciphertext, key id hint); answer: new ciphertext, "" (checked), None (failed)
_Item = tuple[str, str, str | None]
_Answer = str | None

_worker_store: SecretStore | None = None


def _init_worker(active_key: str, rolling_key: str) -> None:
    global _worker_store
    _worker_store = SecretStore(active_key, rolling_key)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A worker whose mfactl process was killed (kill -9 leaves it no time to stop its pool)
    would wait for work forever: it leaves as soon as it is orphaned."""
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(1)


def _pool_chunk(items: list[_Item], blobs: bool, write: bool) -> list[_Answer]:
    assert _worker_store is not None
    return _worker_store.rekey(items, blobs=blobs, write=write)


class _Crypto:
    """Runs the crypto of the batches in a pool of ``workers`` processes while this process
    reads and writes the database, one batch ahead; inline when there is a batch or less."""

    def __init__(self, app: App, workers: int, *, rows: int, batch_size: int) -> None:
        self.store = app.secrets
        self.workers = workers
        self.pool: ProcessPoolExecutor | None = None
        if workers > 1 or rows > batch_size:
            keys = app.settings.secret_store
            self.pool = ProcessPoolExecutor(
                workers,
                mp_context=multiprocessing.get_context(),
                initializer=_init_worker,
                initargs=(keys.active_key, keys.rolling_key),
            )

    def submit(self, items: list[_Item], blobs: bool, write: bool) -> Callable[[], list[_Answer]]:
        if self.pool is None:
            answers = self.store.rekey(items, blobs=blobs, write=write)
            return lambda: answers
        size = -(-len(items) // self.workers)
        pool = self.pool
        try:
            # the pool may have broken already, while the previous batch was in the workers
            futures = [
                pool.submit(_pool_chunk, items[i : i + size], blobs, write)
                for i in range(0, len(items), size)
            ]
        except BrokenProcessPool:
            raise _worker_died() from None

        def collect() -> list[_Answer]:
            try:
                return [answer for future in futures for answer in future.result()]
            except BrokenProcessPool:
                raise _worker_died() from None

        return collect

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _worker_died() -> Unavailable:
    return Unavailable(
        "a --workers process died (out of memory, or killed); the batches in progress were "
        "not written, and a new run does what is left"
    )


# --- the walk shared by migrate, dry run and verify ------------------------------------------


@dataclass
class _Walk:
    app: App
    table: _Table
    org: str | None
    batch_size: int
    mode: str  # "migrate" | "dry_run" | "verify"
    crypto: _Crypto
    progress: Progress
    before_write: Callable[[list[int]], None] | None = None
    migrated: int = 0
    changed_meanwhile: int = 0
    seen: int = 0
    failed: list[Failure] = field(default_factory=list)

    def run(self) -> None:
        engine = self.app.engine
        active = self.app.secrets.active_key_id
        lock = self.mode == "migrate" and engine.dialect.name == "postgresql"
        write = self.mode == "migrate"
        blobs = self.table.kind == "outbox"
        pending_for = None if self.mode == "verify" else active
        cas = self.table.cas_writer(engine.dialect)
        # with a pool, the next batch is read and sent while the previous one is being sealed
        depth = 2 if self.crypto.pool is not None else 1
        in_flight: deque[tuple[Connection, list[_Read], Callable[[], list[_Answer]]]] = deque()
        query = self.table.select_rows(
            limit=self.batch_size, org=self.org, pending_for=pending_for, lock=lock
        )
        after = 0
        try:
            while True:
                conn = engine.connect()
                try:
                    if lock:
                        # A batch lost in a server crash is simply done again by the next run
                        # (its rows still open with the rolling key): it need not wait for disk.
                        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                    rows: list[_Read] = conn.execute(query, {"after": after}).all()  # type: ignore[assignment]
                    if not lock:
                        conn.commit()  # no snapshot held while the crypto runs
                    if rows:
                        binding = self.table.binding
                        items: list[_Item] = [(binding(r), r[2], r[1]) for r in rows]
                        collect = self.crypto.submit(items, blobs, write)
                except BaseException:
                    conn.rollback()  # the batch's row locks (PostgreSQL) go with it
                    conn.close()
                    raise
                if not rows:
                    conn.close()
                    break
                after = rows[-1][0]
                in_flight.append((conn, rows, collect))
                if len(in_flight) >= depth:
                    self._finish(*in_flight.popleft(), cas, active)
            while in_flight:
                self._finish(*in_flight.popleft(), cas, active)
        finally:
            for conn, _, _ in in_flight:
                conn.rollback()
                conn.close()

    def _finish(
        self,
        conn: Connection,
        rows: list[_Read],
        collect: Callable[[], list[_Answer]],
        cas: _CasWriter,
        active: str,
    ) -> None:
        try:
            answers = collect()
            changes: list[tuple[int, str, str]] = []
            for row, new in zip(rows, answers, strict=True):
                if new is None:
                    failure = self.table.explain(conn, self.app.secrets, row)
                    if failure is not None:
                        self.failed.append(failure)
                elif new:
                    changes.append((row[0], row[2], new))
                elif self.mode == "dry_run" and row[1] != active:
                    self.migrated += 1
            if changes:
                if self.before_write is not None:
                    self.before_write([c[0] for c in changes])
                written = cas(conn, changes, active)
                conn.commit()
                self.migrated += written
                self.changed_meanwhile += len(changes) - written
            else:
                conn.rollback()
        finally:
            conn.close()
        self.seen += len(rows)
        self.progress.advance(len(rows))


def _check_options(batch_size: int, workers: int) -> None:
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise InvalidInput(f"--batch-size must be between 1 and {MAX_BATCH_SIZE}")
    if not 1 <= workers <= 64:
        raise InvalidInput("--workers must be between 1 and 64")


def _org_scope(app: App, org: str | None) -> str | None:
    if org is None:
        return None
    from mfactl.services import lookup

    with app.uow() as uow:
        return lookup.get_org(uow.session, org).slug


# --- migrate ---------------------------------------------------------------------------------


def migrate(
    app: App,
    *,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = 1,
    org: str | None = None,
    progress: Progress | None = None,
    before_write: Callable[[list[int]], None] | None = None,
) -> MigrateReport:
    """Re-encrypt every secret and outbox body not under the active key (see the module doc).

    Rows no key opens, or bound to someone else, are left untouched and listed in the report's
    ``failed``; the caller decides how to end (the CLI exits 6). ``before_write`` is called
    with each batch's primary keys just before it is written (tests use it to race).
    """
    _check_options(batch_size, workers)
    slug = _org_scope(app, org)
    store = app.secrets
    progress = progress or NO_PROGRESS
    report = MigrateReport(dry_run=dry_run)
    with app.uow() as uow:  # also checks that the schema is current
        conn = uow.session.connection()
        counts = {t.kind: t.count(conn, org=slug, active=store.active_key_id) for t in _TABLES}
        _refuse_unknown_without_rolling(conn, store, slug)
    report.already_active = counts["secret"][0]
    report.outbox_already_active = counts["outbox"][0]
    todo = counts["secret"][1] + counts["outbox"][1]
    progress.start(todo)
    crypto = _Crypto(app, workers, rows=todo, batch_size=batch_size)
    outcome = "interrupted"  # until every table is done: what was committed is still recorded
    try:
        for table in _TABLES:
            walk = _Walk(
                app,
                table,
                slug,
                batch_size,
                "dry_run" if dry_run else "migrate",
                crypto,
                progress,
                before_write,
            )
            try:
                walk.run()
            finally:
                if table.kind == "secret":
                    report.migrated = walk.migrated
                else:
                    report.outbox_migrated = walk.migrated
                report.changed_meanwhile += walk.changed_meanwhile
                report.failed += walk.failed
        outcome = "failed" if report.failed else "ok"
    finally:
        crypto.close()
        if not dry_run and outcome == "interrupted":
            with contextlib.suppress(Exception):  # the error that stopped the run comes first
                _record_migration(app, slug, outcome, report)
    if not dry_run:
        _record_migration(app, slug, outcome, report)
    return report


def _record_migration(app: App, org: str | None, outcome: str, report: MigrateReport) -> None:
    with app.uow() as uow:
        audit.record(
            uow.session,
            app,
            "keys.migrate",
            org=org,
            outcome=outcome,
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
    query = (
        select(_SECRETS.c.key_id, func.count())
        .select_from(_SECRET_TABLE.scoped)
        .where(_SECRETS.c.key_id != store.active_key_id)
        .group_by(_SECRETS.c.key_id)
    )
    if org is not None:
        query = query.where(_ORGS.c.slug == org)
    unknown = {kid: int(n) for kid, n in conn.execute(query)}
    if unknown:
        total = sum(unknown.values())
        ids = ", ".join(sorted(unknown))
        raise SecretStoreError(
            f"{total} MFA secret{'s are' if total != 1 else ' is'} sealed with a key that is not "
            f"configured (key id {ids}) and secretStore.rollingKey is not set; nothing was changed",
            hint="set secretStore.rollingKey to the previous active key, then run "
            "`mfactl keys migrate` again",
        )


# --- verify ----------------------------------------------------------------------------------


def verify(
    app: App,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = 1,
    progress: Progress | None = None,
) -> VerifyReport:
    """Decrypt every secret and outbox body, checking each one's binding; nothing is written."""
    _check_options(batch_size, workers)
    active = app.secrets.active_key_id
    progress = progress or NO_PROGRESS
    report = VerifyReport()
    with app.uow() as uow:
        conn = uow.session.connection()
        sizes = {t.kind: sum(t.count(conn, org=None, active=active)) for t in _TABLES}
    total = sum(sizes.values())
    progress.start(total)
    crypto = _Crypto(app, workers, rows=total, batch_size=batch_size)
    try:
        for table in _TABLES:
            walk = _Walk(app, table, None, batch_size, "verify", crypto, progress)
            walk.run()
            report.failed += walk.failed
            if table.kind == "secret":
                report.secrets = walk.seen
            else:
                report.outbox = walk.seen
    finally:
        crypto.close()
    return report
