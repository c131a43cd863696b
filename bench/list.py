"""Benchmark `mfactl users list --jsonl` against a raw sqlite3 + json loop over the same rows.

    .venv/bin/python bench/list.py                    # 100,000 then 1,000,000 users
    .venv/bin/python bench/list.py --users 100000     # one size (repeat --users for more)

Each size gets a SQLite database made by `mfactl init` and filled with sqlite3.executemany
(half the users with MFA, half of those under the active key, fake ciphertexts: listing never
decrypts), cached in --workdir. Both sides run as whole processes writing to /dev/null,
interleaved; the wall and CPU (user + system) times are medians of --runs runs, and the peak
memory is the child's max RSS (/usr/bin/time). On a busy, shared machine the CPU-time ratio
is the steadier figure.
Targets: mfactl at most 2.0x the raw loop, under 150 MB, not growing with the user count.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._setup import verdict

ROOT = Path(__file__).resolve().parent.parent
USERS_PER_ORG = 10_000
STAMP = "2026-11-01 09:00:00.000000"
USED = "2026-11-20 17:45:30.000000"
EXPIRES = "2099-01-01 00:00:00.000000"  # live remember-me tokens

# The raw limit: the same query and the same JSON objects, with nothing in between.
RAW_LOOP = r"""
import json, sqlite3, sys
db, active, now, oldest, out_path = sys.argv[1:6]
conn = sqlite3.connect(db)
encode = json.JSONEncoder(ensure_ascii=False).encode
def iso(v):
    return None if v is None else f"{v[:10]}T{v[11:19]}Z"
cur = conn.execute(
    "SELECT o.slug, u.handle, u.email, u.display_name, u.is_admin, s.state, s.key_id,"
    " s.confirmed_at, s.last_used_at, s.locked,"
    " (SELECT count(*) FROM remember_tokens r WHERE r.user_id = u.id"
    "  AND r.revoked_at IS NULL AND r.expires_at > ? AND r.created_at > ?)"
    " FROM users u JOIN organizations o ON o.id = u.organization_id"
    " LEFT OUTER JOIN mfa_secrets s ON s.user_id = u.id ORDER BY o.slug, u.handle",
    (now, oldest),
)
with open(out_path, "w", encoding="utf-8") as out:
    for org, handle, email, name, admin, state, key, enrolled, used, locked, remember in cur:
        state = state or "none"
        out.write(encode({
            "org": org, "user": handle, "email": email, "name": name, "admin": bool(admin),
            "mfa": state, "mfa_key_active": None if key is None else key == active,
            "enrolled_at": iso(enrolled), "last_used_at": iso(used), "locked": bool(locked),
            "remember_tokens": remember, "compliant": True,  # the default policy
        }) + "\n")
"""


def key_id(key: str) -> str:
    sys.path.insert(0, str(ROOT))
    from mfactl.config import key_id as fingerprint

    return fingerprint(key)


def make_database(workdir: Path, users: int) -> tuple[Path, str]:
    """A values file on a database of ``users`` users (cached); returns (values, active key id)."""
    folder = workdir / f"users-{users}"
    values = folder / "values.yaml"
    done = folder / "ready"
    key = "RPhSTLU2mhmT6bb1CzVAwjrQcPR5d1IvOTUQW3VvQY4="  # a fixed bench key (no real secrets)
    active = key_id(key)
    if done.exists():
        return values, active
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "mfactl.db"
    for leftover in folder.glob("mfactl.db*"):
        leftover.unlink()
    values.write_text(
        f'database: {{url: "sqlite:///{db}"}}\nsecretStore: {{activeKey: "{key}"}}\n',
        encoding="utf-8",
    )
    values.chmod(0o600)
    subprocess.run(
        [sys.executable, "-m", "mfactl", "--values", str(values), "init"],
        check=True,
        capture_output=True,
    )
    started = time.perf_counter()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA synchronous=OFF")
    orgs = max(1, -(-users // USERS_PER_ORG))
    conn.executemany(
        "INSERT INTO organizations (id, slug, name, created_at) VALUES (?, ?, ?, ?)",
        ((o + 1, f"org{o:04d}", f"Organization {o}", STAMP) for o in range(orgs)),
    )
    conn.executemany(
        "INSERT INTO users (id, uid, organization_id, handle, email, display_name, is_admin,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            (
                i,
                f"00000000-0000-4000-8000-{i:012d}",
                i // USERS_PER_ORG + 1,
                f"user{i:07d}",
                f"user{i:07d}@org{i // USERS_PER_ORG:04d}.example.com",
                f"User Number {i}",
                int(i % 100 == 0),
                STAMP,
            )
            for i in range(users)
        ),
    )
    # Half the users have MFA (even ids); of those, half under the active key, some pending.
    conn.executemany(
        "INSERT INTO mfa_secrets (user_id, state, ciphertext, key_id, algorithm, digits, period,"
        " created_at, confirmed_at, last_used_step, last_used_at, failed_attempts, locked)"
        " VALUES (?, ?, ?, ?, 'SHA1', 6, 30, ?, ?, ?, ?, 0, ?)",
        (
            (
                i,
                "pending" if i % 10 == 0 else "active",
                "gAAAAAB" + "x" * 150,
                active if i % 4 == 0 else "0123456789ab",
                STAMP,
                None if i % 10 == 0 else STAMP,
                -1 if i % 6 == 0 else 59_000_000,
                None if i % 6 == 0 else USED,
                int(i % 1000 == 2),
            )
            for i in range(0, users, 2)
        ),
    )
    conn.executemany(
        "INSERT INTO remember_tokens (user_id, token_hash, created_at, expires_at)"
        " VALUES (?, ?, ?, ?)",
        (
            (i, hashlib.sha256(str(i).encode()).hexdigest(), STAMP, EXPIRES)
            for i in range(0, users, 50)
        ),
    )
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()
    done.touch()
    print(f"  made {users:,} users in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return values, active


def run(argv: list[str], stdout: str) -> tuple[float, float, float]:
    """Run a whole process: its wall time and CPU time (user + system) in seconds, and its
    peak memory (max RSS) in MB.

    The peak comes from /usr/bin/time, a small parent: a child forked straight from this
    process would report this process's own peak whenever that is higher (Linux keeps the
    pre-exec high-water mark).
    """
    with tempfile.NamedTemporaryFile("r") as report, open(stdout, "wb") as out:
        started = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%U %S %M", "-o", report.name, *argv],
            stdout=out,
            stderr=subprocess.PIPE,
        )
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"{argv} failed: {proc.stderr.decode()[-500:]}")
        user, system, peak = report.read().split()[-3:]
        return elapsed, float(user) + float(system), int(peak) / 1024


def commands(values: Path, active: str, out: str) -> tuple[list[str], list[str]]:
    db = values.parent / "mfactl.db"
    mfactl = [sys.executable, "-m", "mfactl", "--values", str(values), "users", "list", "--jsonl"]
    # a live token: not revoked, before its stored expiry, and made within rememberMe.days (30)
    now = datetime.now(UTC).replace(tzinfo=None)
    oldest = now - timedelta(days=30)
    stamps = [t.strftime("%Y-%m-%d %H:%M:%S.%f") for t in (now, oldest)]
    raw = [sys.executable, "-c", RAW_LOOP, str(db), active, *stamps, out]
    return mfactl, raw


def same_output(values: Path, active: str) -> bool:
    """Both sides print exactly the same lines (checked once, on the smallest size)."""
    with tempfile.TemporaryDirectory() as tmp:
        mine, theirs = Path(tmp, "mfactl.jsonl"), Path(tmp, "raw.jsonl")
        mfactl, raw = commands(values, active, str(theirs))
        run(mfactl, str(mine))
        run(raw, os.devnull)
        return mine.read_bytes() == theirs.read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, action="append", help="sizes (default 1e5 and 1e6)")
    parser.add_argument("--runs", type=int, default=0, help="runs per side (default 3, 1 at 1M)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir(), "mfactl-bench"))
    args = parser.parse_args()
    sizes = sorted(args.users or [100_000, 1_000_000])
    header = ("users", "raw s", "mfactl s", "ratio", "raw cpu", "mfactl cpu", "ratio")
    header += ("raw MB", "mfactl MB")
    print("{:>10} {:>7} {:>8} {:>6} {:>7} {:>10} {:>6} {:>7} {:>9}".format(*header))
    peaks = []
    ratios = []
    for index, users in enumerate(sizes):
        values, active = make_database(args.workdir, users)
        if index == 0 and not same_output(values, active):
            raise SystemExit("mfactl and the raw loop do not print the same rows")
        runs = args.runs or (1 if users >= 1_000_000 else 3)
        mfactl, raw = commands(values, active, os.devnull)
        raw_runs, mine_runs = [], []
        for _ in range(runs):  # interleaved, so a busy moment of the machine hits both
            raw_runs.append(run(raw, os.devnull))
            mine_runs.append(run(mfactl, os.devnull))
        raw_s, raw_cpu = (statistics.median(r[i] for r in raw_runs) for i in (0, 1))
        mine_s, mine_cpu = (statistics.median(r[i] for r in mine_runs) for i in (0, 1))
        raw_mb = max(r[2] for r in raw_runs)
        mine_mb = max(r[2] for r in mine_runs)
        peaks.append(mine_mb)
        ratios.append(mine_s / raw_s)
        print(
            f"{users:>10,} {raw_s:>7.2f} {mine_s:>8.2f} {mine_s / raw_s:>5.2f}x "
            f"{raw_cpu:>7.2f} {mine_cpu:>10.2f} {mine_cpu / raw_cpu:>5.2f}x "
            f"{raw_mb:>7.1f} {mine_mb:>9.1f}",
            flush=True,
        )
    if len(peaks) > 1:
        print(
            f"peak memory growth {sizes[0]:,} -> {sizes[-1]:,} users: "
            f"{peaks[-1] - peaks[0]:+.1f} MB"
        )
    worst = max(ratios)
    verdict("users list --jsonl <= 2.0x the raw loop", f"{worst:.2f}x at most", worst <= 2.0)
    verdict("peak memory < 150 MB", f"{max(peaks):.1f} MB", max(peaks) < 150)
    if len(peaks) > 1:
        growth = peaks[-1] - peaks[0]
        verdict("memory flat with the number of users", f"{growth:+.1f} MB", growth <= 5)


if __name__ == "__main__":
    main()
