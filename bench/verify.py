"""A login server's cost: mfactl's verify beside the same statements done bare and django-otp.

    .venv/bin/python bench/verify.py [--seconds 2] [--rounds 3] [--users 2000]
                                     [--threads 1,4,16] [--engines sqlite,postgres] [--no-django]
    .venv/bin/python bench/verify.py --recovery [--seconds 2] [--users 2000] [--engines …]

Three systems, in one run, on one database per engine, in interleaved rounds (each round runs
each system once at each thread count, so a noisy neighbour spreads over all three):

- mfactl: ``mfactl.api.Mfa.verify``, as a login server calls it;
- bare: the statements mfactl sends for a login (the joined read, the conditional UPDATE) through
  the driver alone (sqlite3, psycopg), with the same crypto (the Fernet decrypt and uid check,
  the window's codes compared): what a verification cannot avoid;
- django-otp: the device lookup and ``verify_token`` (Django and django-otp live in the bench's
  own environment, bench/.venv-django, made on first use; ``--no-django`` leaves them out).

Each user's right code is used once (every pass over the users moves the clock by one step), so
every verification is a success, the costliest path. Printed: operations a second (the median
round), p50 and p99 latency, each system's ratio to bare, and PASS or MISS per target.

``--recovery`` instead measures ``use_recovery_code`` on one thread beside ``verify``: the keyed
hash alone, right codes (each used once), and a storm of wrong codes spread over every user
(each counted or refused by the throttle), in operations a second that one core sustains.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._setup import BenchClock, database, enrolled_users, make_app, verdict
from bench.passes import passes
from mfactl import totp
from mfactl.app import App
from mfactl.services import orgs

ROOT = Path(__file__).resolve().parent.parent
DJANGO_ENV = ROOT / "bench" / ".venv-django"
DJANGO_PACKAGES = ["django", "django-otp", "psycopg[binary]"]

# what mfactl sends for a login (services/verification.py), as plain SQL
READ = """
SELECT u.id, u.uid, s.ciphertext, s.algorithm, s.digits, s.period, s.last_used_step,
       s.failed_attempts, s.locked, s.state,
       (SELECT count(*) FROM mfa_failures f WHERE f.user_id = u.id AND f.at > :since)
FROM users u JOIN organizations o ON o.id = u.organization_id
LEFT OUTER JOIN mfa_secrets s ON s.user_id = u.id
WHERE o.slug = :org AND u.handle = :user
"""
ACCEPT = """
UPDATE mfa_secrets SET last_used_step = :step, last_used_at = :used_at
WHERE user_id = :user_id AND ciphertext = :ciphertext AND state = 'active'
  AND locked = false AND failed_attempts = 0 AND last_used_step = :read_step
"""


@dataclass
class Measured:
    rates: list[float] = field(default_factory=list)  # one per round
    latencies: list[float] = field(default_factory=list)
    failed: int = 0

    def add(self, count: int, seconds: float, latencies: list[float], failed: int) -> None:
        self.rates.append(count / seconds)
        self.latencies.extend(latencies)
        self.failed += failed

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def user_passes(
    users: list[tuple[str, str]],
    clock: BenchClock,
    threads: int,
    seconds: float,
    verify: Callable[[str, str], bool],
    thread_done: Callable[[], None] = lambda: None,
) -> tuple[int, float, list[float], int]:
    """Each user's code of a fresh step, pass after pass (see bench/passes.py)."""
    params = totp.TotpParams()

    def next_pass() -> list[tuple[Any, ...]]:
        clock.now += timedelta(seconds=params.period)
        return [(name, totp.code_at(s, clock.now, params)) for name, s in users]

    return passes(threads, seconds, next_pass, verify, thread_done)


class Bare:
    """mfactl's login statements through the driver alone, one connection per thread."""

    def __init__(self, engine: str, url: str, app: App) -> None:
        self.engine = engine
        self.url = url
        self.store = app.secrets
        self.clock = app.clock
        self.local = threading.local()  # each bench thread holds one connection throughout
        self.idle: list[Any] = []  # and hands it on to the next measurement's threads
        if engine == "sqlite":
            self.read, self.accept = READ, ACCEPT
        else:  # psycopg's placeholders
            self.read, self.accept = (
                _pyformat(READ),
                _pyformat(ACCEPT),
            )
        self.connections: list[Any] = []

    def release(self) -> None:
        connection = getattr(self.local, "connection", None)
        if connection is not None:
            self.idle.append(connection)
            self.local.connection = None

    def _connection(self) -> Any:
        connection = getattr(self.local, "connection", None)
        if connection is None and self.idle:
            connection = self.local.connection = self.idle.pop()
        if connection is None:
            if self.engine == "sqlite":
                import sqlite3

                connection = sqlite3.connect(
                    self.url.removeprefix("sqlite:///"),
                    isolation_level=None,
                    check_same_thread=False,
                    timeout=30,
                )
                # as mfactl's own connections (db/engine.py): WAL is the file's already
                connection.execute("PRAGMA busy_timeout=30000")
                connection.execute("PRAGMA synchronous=NORMAL")
            else:
                import psycopg

                connection = psycopg.connect(
                    self.url.replace("+psycopg", ""), autocommit=True, prepare_threshold=1
                )
            self.local.connection = connection
            self.connections.append(connection)
        return connection

    def _time(self, moment: Any) -> Any:
        naive = moment.replace(tzinfo=None)
        return str(naive) if self.engine == "sqlite" else naive

    def verify(self, user: str, code: str) -> bool:
        now = self.clock()
        connection = self._connection()
        row = connection.execute(
            self.read, {"since": self._time(now - timedelta(hours=24)), "org": "acme", "user": user}
        ).fetchone()
        user_id, uid, ciphertext, algorithm, digits, period, last_step, failures, locked = row[:9]
        if row[9] != "active" or locked or failures or row[10] >= 10:
            return False
        params = totp.stored_params(algorithm, digits, period)
        secret = self.store.open_secret(uid, ciphertext, user).plaintext
        step = totp.match(secret, code, now, params, 1).step
        if step is None or step <= last_step:
            return False
        changed = connection.execute(
            self.accept,
            {
                "step": step,
                "used_at": self._time(now),
                "user_id": user_id,
                "ciphertext": ciphertext,
                "read_step": last_step,
            },
        )
        return bool(changed.rowcount == 1)

    def close(self) -> None:
        for connection in self.connections:
            connection.close()


def _pyformat(sql: str) -> str:
    import re

    return re.sub(r":(\w+)", r"%(\1)s", sql)


class Django:
    """django-otp in its own process and environment, driven over a pipe."""

    def __init__(self, engine: str, url: str, users: int) -> None:
        python = DJANGO_ENV / "bin" / "python"
        if not python.exists():
            print("making bench/.venv-django (Django, django-otp) ...", file=sys.stderr)
            subprocess.run([sys.executable, "-m", "venv", str(DJANGO_ENV)], check=True)
            subprocess.run(
                [
                    str(python),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "django",
                    "django-otp",
                    "psycopg[binary]",
                ],
                check=True,
            )
        self.process = subprocess.Popen(
            [str(python), str(ROOT / "bench" / "django_otp_verify.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.ask({"setup": {"engine": engine, "url": url, "users": users}})

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        reply: dict[str, Any] = json.loads(self.process.stdout.readline())
        return reply

    def run(self, threads: int, seconds: float) -> tuple[int, float, list[float], int]:
        reply = self.ask({"run": {"threads": threads, "seconds": seconds}})
        return len(reply["latencies"]), reply["seconds"], reply["latencies"], reply["failed"]

    def close(self) -> None:
        assert self.process.stdin
        self.process.stdin.close()
        self.process.wait(30)


def bench_engine(engine: str, args: argparse.Namespace) -> dict[str, dict[int, Measured]]:
    import mfactl.api

    thread_counts = [int(t) for t in args.threads.split(",")]
    results: dict[str, dict[int, Measured]] = {}
    clock = BenchClock()
    with database(engine) as url:
        app = make_app(url, clock)
        orgs.add_org(app, "acme")
        mfactl_users = enrolled_users(app, "m", args.users)
        bare_users = enrolled_users(app, "b", args.users)
        mfa = mfactl.api.Mfa(app)
        bare = Bare(engine, url, app)
        django = None if args.no_django else Django(engine, url, args.users)
        systems: dict[str, Callable[[int], tuple[int, float, list[float], int]]] = {
            "mfactl": lambda t: user_passes(
                mfactl_users, clock, t, args.seconds, lambda u, c: mfa.verify("acme", u, c).ok
            ),
            "bare": lambda t: user_passes(
                bare_users, clock, t, args.seconds, bare.verify, bare.release
            ),
        }
        if django is not None:
            systems["django-otp"] = lambda t: django.run(t, args.seconds)
        try:
            for _ in range(args.rounds):
                for threads in thread_counts:
                    for name, run in systems.items():
                        measured = results.setdefault(name, {}).setdefault(threads, Measured())
                        measured.add(*run(threads))
        finally:
            bare.close()
            if django is not None:
                django.close()
            app.close()
    return results


def report(engine: str, results: dict[str, dict[int, Measured]]) -> None:
    bare = results["bare"]
    for name, by_threads in results.items():
        for threads, measured in by_threads.items():
            ratio = bare[threads].rate / measured.rate
            print(
                f"{engine:<9} {name:<10} {threads:>2} threads: {measured.rate:8,.0f}/s  "
                f"p50 {measured.percentile(0.5) * 1e3:6.2f} ms  "
                f"p99 {measured.percentile(0.99) * 1e3:7.2f} ms  "
                f"bare/this {ratio:5.2f}x  ({measured.failed} not ok)",
                flush=True,
            )
    mfactl = results["mfactl"]
    one = min(mfactl)
    limit = 3.0 if engine == "sqlite" else 1.5
    slower = bare[one].rate / mfactl[one].rate
    verdict(
        f"{engine}: mfactl at {one} thread within {limit}x of the bare statements",
        f"{slower:.2f}x",
        slower <= limit,
    )
    if "django-otp" in results:
        for threads in mfactl:
            ours, theirs = mfactl[threads].rate, results["django-otp"][threads].rate
            verdict(
                f"{engine}: mfactl at least as fast as django-otp at {threads} threads",
                f"{ours:,.0f}/s vs {theirs:,.0f}/s ({ours / theirs:.2f}x)",
                ours >= theirs,
            )
    most = max(mfactl)
    if engine == "sqlite":
        tail = mfactl[most].percentile(0.99) / bare[most].percentile(0.99)
        verdict(
            f"sqlite: p99 at {most} threads within 3x of the bare statements' p99",
            f"{mfactl[most].percentile(0.99) * 1e3:.1f} ms vs "
            f"{bare[most].percentile(0.99) * 1e3:.1f} ms ({tail:.2f}x)",
            tail <= 3.0,
        )


def _rate(calls: Callable[[], Any], seconds: float) -> float:
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        calls()
        done += 1
    return done / elapsed


def bench_recovery(engine: str, args: argparse.Namespace) -> None:
    """use_recovery_code beside verify, one thread: what one core sustains."""
    import itertools

    import mfactl.api
    from mfactl.services import recovery

    clock = BenchClock()
    with database(engine) as url:
        app = make_app(url, clock)
        orgs.add_org(app, "acme")
        users = enrolled_users(app, "r", args.users)
        codes = {name: recovery.generate(app, "acme", name).codes for name, _ in users}
        mfa = mfactl.api.Mfa(app)
        try:
            verified = passes(
                users, clock, 1, args.seconds, lambda u, c: mfa.verify("acme", u, c).ok
            )
            hashing = _rate(lambda: recovery.code_hashes(app, "uid", "abcdefghjkmn"), args.seconds)
            right = iter([(name, code) for name, _ in users for code in codes[name]])
            used = _rate(lambda: mfa.use_recovery_code("acme", *next(right)).ok, args.seconds)
            names = itertools.cycle([name for name, _ in users])
            wrong = _rate(
                lambda: mfa.use_recovery_code("acme", next(names), "aaaa-bbbb-cccc"), args.seconds
            )
        finally:
            app.close()
    print(f"{engine}: one thread, {args.users} users")
    print(f"  verify (right TOTP codes)      {verified[0] / verified[1]:9.0f} /s")
    print(f"  recovery code keyed hash only  {hashing:9.0f} /s")
    print(f"  use_recovery_code, right code  {used:9.0f} /s (audit event and email queued)")
    print(f"  use_recovery_code, wrong code  {wrong:9.0f} /s (counted or throttled)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=2000, help="enrolled users per system")
    parser.add_argument("--threads", default="1,4,16")
    parser.add_argument("--engines", default="sqlite,postgres")
    parser.add_argument("--no-django", action="store_true", help="leave django-otp out")
    parser.add_argument(
        "--recovery", action="store_true", help="use_recovery_code beside verify, one thread"
    )
    args = parser.parse_args()
    if args.recovery:
        for engine in args.engines.split(","):
            bench_recovery(engine, args)
        return
    for engine in args.engines.split(","):
        report(engine, bench_engine(engine, args))


if __name__ == "__main__":
    main()
