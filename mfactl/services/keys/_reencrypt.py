"""The engine under `keys migrate` and `keys verify`: a walk over a sealed table in batches, its
crypto in this process or in a pool of processes.

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
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from enum import Enum
from types import TracebackType
from typing import NamedTuple, TypeVar

from sqlalchemy.engine import Connection

from mfactl.app import App
from mfactl.crypto import SecretStore
from mfactl.errors import InvalidInput, Unavailable
from mfactl.services.keys._tables import CasWriter, Change, Read, SealedTable
from mfactl.services.keys.reports import Failure
from mfactl.services.progress import Progress

DEFAULT_BATCH_SIZE = 1000
MAX_BATCH_SIZE = 100_000
MAX_WORKERS = 64


class Mode(Enum):
    """What a walk does with each row it reads."""

    MIGRATE = "migrate"  # re-encrypt what the active key did not seal, and write it
    DRY_RUN = "dry_run"  # open what the active key did not seal; write nothing
    VERIFY = "verify"  # open every row; write nothing

    @property
    def writes(self) -> bool:
        return self is Mode.MIGRATE

    @property
    def pending_only(self) -> bool:
        """Only the rows another key sealed, rather than every row."""
        return self is not Mode.VERIFY


def check_options(batch_size: int, workers: int) -> None:
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise InvalidInput(f"--batch-size must be between 1 and {MAX_BATCH_SIZE}")
    if not 1 <= workers <= MAX_WORKERS:
        raise InvalidInput(f"--workers must be between 1 and {MAX_WORKERS}")


# --- the crypto, in this process or in a pool --------------------------------------------------

# a work item, as SecretStore.reseal_many and open_many take it: (binding, ciphertext, key id)
_Item = tuple[str, str, str | None]
_Answer = TypeVar("_Answer")

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


def _pool_reseal(items: list[_Item], blobs: bool) -> list[str | None]:
    assert _worker_store is not None
    return _worker_store.reseal_many(items, blobs=blobs)


def _pool_open(items: list[_Item], blobs: bool) -> list[bool]:
    assert _worker_store is not None
    return _worker_store.open_many(items, blobs=blobs)


class Crypto:
    """Runs the crypto of the batches in a pool of ``workers`` processes while this process
    reads and writes the database, one batch ahead; inline when there is a batch or less.

    Each call returns at once the function that waits for its answers, one per item."""

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

    def __enter__(self) -> Crypto:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def reseal(self, items: list[_Item], blobs: bool) -> Callable[[], list[str | None]]:
        """The new ciphertexts, None where a row does not open or is someone else's."""
        if self.pool is None:
            answers = self.store.reseal_many(items, blobs=blobs)
            return lambda: answers
        return self._spread(_pool_reseal, items, blobs)

    def check(self, items: list[_Item], blobs: bool) -> Callable[[], list[bool]]:
        """Whether each row opens and is bound to its owner."""
        if self.pool is None:
            answers = self.store.open_many(items, blobs=blobs)
            return lambda: answers
        return self._spread(_pool_open, items, blobs)

    def _spread(
        self,
        work: Callable[[list[_Item], bool], list[_Answer]],
        items: list[_Item],
        blobs: bool,
    ) -> Callable[[], list[_Answer]]:
        assert self.pool is not None
        size = -(-len(items) // self.workers)
        pool = self.pool
        try:
            # the pool may have broken already, while the previous batch was in the workers
            futures = [
                pool.submit(work, items[i : i + size], blobs) for i in range(0, len(items), size)
            ]
        except BrokenProcessPool:
            raise _worker_died() from None

        def collect() -> list[_Answer]:
            try:
                return [answer for future in futures for answer in future.result()]
            except BrokenProcessPool:
                raise _worker_died() from None

        return collect


def _worker_died() -> Unavailable:
    return Unavailable(
        "a --workers process died (out of memory, or killed); the batches in progress were "
        "not written, and a new run does what is left"
    )


# --- the walk shared by migrate, dry run and verify ------------------------------------------


@dataclass
class Tally:
    """What a walk did; complete up to the last batch even when the walk stopped early."""

    migrated: int = 0  # rows written (a dry run: rows that would be)
    changed_meanwhile: int = 0  # rows a reset or enrollment changed between read and write
    seen: int = 0
    failed: list[Failure] = field(default_factory=list)


class _Batch(NamedTuple):
    """A batch whose crypto is under way: ``settle`` waits for it, then writes or counts."""

    conn: Connection  # holds the batch's row locks (PostgreSQL) until it is settled
    rows: list[Read]
    settle: Callable[[], None]


@dataclass
class Walk:
    """One pass over a table in batches; what it did goes to ``tally`` as each batch ends."""

    app: App
    table: SealedTable
    mode: Mode
    crypto: Crypto
    tally: Tally
    org: str | None  # only this organization's rows (its slug); None: every row
    batch_size: int
    progress: Progress
    before_write: Callable[[list[int]], None] | None = None  # tests race with it

    def run(self) -> None:
        engine = self.app.engine
        active = self.app.secrets.active_key_id
        lock = self.mode.writes and engine.dialect.name == "postgresql"
        cas = self.table.cas_writer(engine.dialect)
        # with a pool, the next batch is read and sent while the previous one is being sealed
        depth = 2 if self.crypto.pool is not None else 1
        in_flight: deque[_Batch] = deque()
        query = self.table.select_rows(
            limit=self.batch_size,
            org=self.org,
            pending_for=active if self.mode.pending_only else None,
            lock=lock,
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
                    rows = self.table.read(conn, query, after)
                    if not lock:
                        conn.commit()  # no snapshot held while the crypto runs
                    if rows:
                        batch = self._start(conn, rows, cas, active)
                except BaseException:
                    conn.rollback()  # the batch's row locks (PostgreSQL) go with it
                    conn.close()
                    raise
                if not rows:
                    conn.close()
                    break
                after = rows[-1].pk
                in_flight.append(batch)
                if len(in_flight) >= depth:
                    self._settle(in_flight.popleft())
            while in_flight:
                self._settle(in_flight.popleft())
        finally:
            for batch in in_flight:
                batch.conn.rollback()
                batch.conn.close()

    def _start(self, conn: Connection, rows: list[Read], cas: CasWriter, active: str) -> _Batch:
        """Send the batch's crypto off; what settling it will do depends on the mode."""
        items = [(r.binding, r.ciphertext, r.key_id) for r in rows]
        if self.mode.writes:
            resealed = self.crypto.reseal(items, self.table.blobs)
            return _Batch(conn, rows, lambda: self._write(conn, rows, resealed(), cas, active))
        opened = self.crypto.check(items, self.table.blobs)
        return _Batch(conn, rows, lambda: self._count(conn, rows, opened()))

    def _settle(self, batch: _Batch) -> None:
        try:
            batch.settle()
        finally:
            batch.conn.close()
        self.tally.seen += len(batch.rows)
        self.progress.advance(len(batch.rows))

    def _write(
        self,
        conn: Connection,
        rows: list[Read],
        answers: list[str | None],
        cas: CasWriter,
        active: str,
    ) -> None:
        changes: list[Change] = []
        for row, new in zip(rows, answers, strict=True):
            if new is None:
                self._fail(conn, row)
            else:
                changes.append(Change(row.pk, row.ciphertext, new))
        if not changes:
            conn.rollback()
            return
        if self.before_write is not None:
            self.before_write([c.pk for c in changes])
        written = cas(conn, changes, active)
        conn.commit()
        self.tally.migrated += written
        self.tally.changed_meanwhile += len(changes) - written

    def _count(self, conn: Connection, rows: list[Read], answers: list[bool]) -> None:
        for row, opens in zip(rows, answers, strict=True):
            if not opens:
                self._fail(conn, row)
            elif self.mode is Mode.DRY_RUN:
                self.tally.migrated += 1
        conn.rollback()

    def _fail(self, conn: Connection, row: Read) -> None:
        failure = self.table.explain(conn, self.app.secrets, row)
        if failure is not None:
            self.tally.failed.append(failure)
