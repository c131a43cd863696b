"""Benchmark `mfactl keys migrate` against the raw limit: the same decrypt + encrypt in a loop.

For each size, in the same run:
- raw: an in-process loop that opens every ciphertext with the old key, checks its uid binding
  and seals it again with the new key (the crypto alone, no database; reading the ciphertexts
  is not timed);
- `mfactl keys migrate` as a whole process (start-up, counting, batches, commits, audit), with
  --workers 1 and --workers 2, each on a fresh copy of the same data; peak RSS of its largest
  process (the main one or a pool worker) from wait4.

    python bench/migrate.py --secrets 100000,1000000
    python bench/migrate.py --secrets 100000 --postgres postgresql+psycopg://postgres@127.0.0.1/postgres

Targets (issue 6): 1 worker <= 1.3x raw; 2 workers >= 1.6x faster than 1; peak RSS < 200 MB and
flat from 100k to 1M secrets.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import Engine, make_url

from mfactl import totp
from mfactl.crypto import SecretStore, generate_key
from mfactl.db.engine import make_engine, upgrade_schema
from mfactl.db.models import Base, MfaSecret, Organization, User

NOW = datetime(2026, 11, 1, tzinfo=UTC)
CHUNK = 20_000
_PREFIX = b"mfactl-totp:1:"


def _seal_chunk(args: tuple[str, int]) -> list[tuple[str, str]]:
    key, count = args
    store = SecretStore(key)
    out = []
    for _ in range(count):
        uid = str(uuid.uuid4())
        out.append((uid, store.seal_secret(uid, totp.new_secret()).ciphertext))
    return out


def generate(engine: Engine, old_key: str, count: int, pool: multiprocessing.pool.Pool) -> None:
    """``count`` users with one secret each, sealed by ``old_key``, bound to their own uid."""
    with engine.begin() as conn:
        org_id = conn.execute(
            insert(Organization).values(slug="bench", name="bench", created_at=NOW)
        ).inserted_primary_key[0]
    sizes = [min(CHUNK, count - i) for i in range(0, count, CHUNK)]
    next_id = 1
    for sealed in pool.imap(_seal_chunk, [(old_key, n) for n in sizes]):
        ids = range(next_id, next_id + len(sealed))
        next_id += len(sealed)
        with engine.begin() as conn:
            conn.execute(
                insert(User),
                [
                    {
                        "id": i,
                        "uid": uid,
                        "organization_id": org_id,
                        "handle": f"u{i}",
                        "email": f"u{i}@example.com",
                        "display_name": "",
                        "is_admin": False,
                        "created_at": NOW,
                    }
                    for i, (uid, _) in zip(ids, sealed, strict=True)
                ],
            )
            conn.execute(
                insert(MfaSecret),
                [
                    {
                        "user_id": i,
                        "state": "active",
                        "ciphertext": ct,
                        "key_id": SecretStore(old_key).active_key_id,
                        "algorithm": "SHA1",
                        "digits": 6,
                        "period": 30,
                        "created_at": NOW,
                        "last_used_step": -1,
                        "failed_attempts": 0,
                        "locked": False,
                    }
                    for i, (_, ct) in zip(ids, sealed, strict=True)
                ],
            )


def raw_loop(engine: Engine, old_key: str, new_key: str) -> float:
    """Seconds for the crypto alone: open (checking the binding), seal again."""
    old, new = Fernet(old_key.encode()), Fernet(new_key.encode())
    elapsed, after = 0.0, 0
    query = (
        select(MfaSecret.user_id, User.uid, MfaSecret.ciphertext)
        .join(User, User.id == MfaSecret.user_id)
        .order_by(MfaSecret.user_id)
    )
    while True:
        with engine.connect() as conn:
            rows = conn.execute(query.where(MfaSecret.user_id > after).limit(CHUNK)).all()
        if not rows:
            return elapsed
        after = rows[-1][0]
        start = time.perf_counter()
        for _, uid, ciphertext in rows:
            raw = old.decrypt(ciphertext.encode("ascii"))
            bound, _, secret = raw[len(_PREFIX) :].partition(b":")
            assert raw.startswith(_PREFIX) and bound == uid.encode("ascii")
            new.encrypt(_PREFIX + bound + b":" + secret)
        elapsed += time.perf_counter() - start


@dataclass
class Run:
    seconds: float
    peak_mb: float


def run_migrate(url: str, old_key: str, new_key: str, workers: int, batch: int) -> Run:
    env = {
        **os.environ,
        "MFACTL_DATABASE_URL": url,
        "MFACTL_SECRETSTORE_ACTIVEKEY": new_key,
        "MFACTL_SECRETSTORE_ROLLINGKEY": old_key,
        "MFACTL_ACTOR": "bench",
    }
    command = [sys.executable, "-m", "mfactl", "keys", "migrate", "--json"]
    command += ["--batch-size", str(batch), "--workers", str(workers)]
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"keys migrate exited {process.returncode}")
    return Run(seconds, usage.ru_maxrss / 1024)


def migrated_count(engine: Engine, new_key: str) -> int:
    with engine.connect() as conn:
        kid = SecretStore(new_key).active_key_id
        return int(conn.scalar(select(func.count()).where(MfaSecret.key_id == kid)) or 0)


def bench_sqlite(
    size: int, workers: list[int], batch: int, pool: multiprocessing.pool.Pool
) -> dict[str, float]:
    old_key, new_key = generate_key(), generate_key()
    with tempfile.TemporaryDirectory(prefix="mfactl-bench-") as folder:
        pristine = Path(folder) / "pristine.db"
        engine = make_engine(f"sqlite:///{pristine}")
        upgrade_schema(engine)
        started = time.perf_counter()
        generate(engine, old_key, size, pool)
        with engine.connect() as conn:
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        print(f"  generated {size:,} secrets in {time.perf_counter() - started:.1f}s", flush=True)
        raw = raw_loop(engine, old_key, new_key)
        engine.dispose()
        results = {"raw": raw}
        for n in workers:
            copy = Path(folder) / "run.db"
            shutil.copyfile(pristine, copy)
            run = run_migrate(f"sqlite:///{copy}", old_key, new_key, n, batch)
            check = make_engine(f"sqlite:///{copy}")
            assert migrated_count(check, new_key) == size
            check.dispose()
            copy.unlink()
            results[f"w{n}"] = run.seconds
            results[f"w{n}_mb"] = run.peak_mb
    return results


def bench_postgres(
    url: str, size: int, workers: list[int], batch: int, pool: multiprocessing.pool.Pool
) -> dict[str, float]:
    old_key, new_key = generate_key(), generate_key()
    name = f"mfactl_bench_{os.getpid()}"
    admin = make_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    db_url = make_url(url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(db_url)
    try:
        upgrade_schema(engine)
        started = time.perf_counter()
        generate(engine, old_key, size, pool)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "CREATE TABLE bench_pristine AS "
                    "SELECT user_id, ciphertext, key_id FROM mfa_secrets"
                )
            )
        print(f"  generated {size:,} secrets in {time.perf_counter() - started:.1f}s", flush=True)
        results = {"raw": raw_loop(engine, old_key, new_key)}
        for n in workers:
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "UPDATE mfa_secrets s SET ciphertext = p.ciphertext, key_id = p.key_id "
                        "FROM bench_pristine p WHERE p.user_id = s.user_id"
                    )
                )
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE mfa_secrets"))
            run = run_migrate(db_url, old_key, new_key, n, batch)
            assert migrated_count(engine, new_key) == size
            results[f"w{n}"] = run.seconds
            results[f"w{n}_mb"] = run.peak_mb
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()
    return results


def report(label: str, size: int, r: dict[str, float], workers: list[int]) -> None:
    print(f"{label} {size:,} secrets: raw loop {r['raw']:.1f}s ({size / r['raw']:,.0f}/s)")
    for n in workers:
        line = (
            f"  keys migrate --workers {n}: {r[f'w{n}']:.1f}s ({size / r[f'w{n}']:,.0f}/s), "
            f"{r[f'w{n}'] / r['raw']:.2f}x raw, peak RSS {r[f'w{n}_mb']:.0f} MB"
        )
        if n != 1 and "w1" in r:
            line += f", {r['w1'] / r[f'w{n}']:.2f}x faster than 1 worker"
        print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", default="100000", help="sizes, comma-separated")
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--postgres", metavar="URL", help="also run on this PostgreSQL server")
    parser.add_argument("--postgres-secrets", type=int, default=100_000)
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.secrets.split(",")]
    workers = [int(w) for w in args.workers.split(",")]
    assert Base.metadata.tables  # the models are loaded
    with multiprocessing.Pool(2) as pool:
        if not args.skip_sqlite:
            for size in sizes:
                print(f"SQLite, {size:,} secrets", flush=True)
                report("SQLite", size, bench_sqlite(size, workers, args.batch_size, pool), workers)
        if args.postgres:
            size = args.postgres_secrets
            print(f"PostgreSQL, {size:,} secrets", flush=True)
            results = bench_postgres(args.postgres, size, workers, args.batch_size, pool)
            report("PostgreSQL", size, results, workers)


if __name__ == "__main__":
    main()
