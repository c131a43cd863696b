"""HTTP verify (/api/v1/verify on `mfactl serve`) against mfactl.api.verify in-process.

    .venv/bin/python bench/api.py [--seconds 2] [--engines sqlite,postgres]

Same run, same database, same workload: each verification is a right code of a fresh step for
an enrolled user (the login path's full cost: one read, open the secret, compare, the accepting
UPDATE), each user used twice (this step's code, then the next's), every answer checked ok.
The library runs in this process, one thread per client; the HTTP path is one `mfactl serve`
process, each client a thread here with its own keep-alive connection (http.client). Both share
this machine's cores with their clients. Target: at 8 clients the HTTP path at least 0.5x the
library's throughput (the HTTP layer costs less than the verification itself).
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._setup import database, enrolled_users, verdict
from mfactl import totp
from mfactl.api import connect
from mfactl.crypto import generate_key
from mfactl.services import api_keys, orgs

CLIENTS = (1, 8, 32)
PER_RUN = 1500  # users per measurement, each verified twice: at most 3000 requests a run
VALUES = """\
database: {{url: "{url}"}}
secretStore: {{activeKey: "{key}"}}
server:
  apiKeys: [{{name: bench, orgs: [acme], hash: "{hash}"}}]
"""
PARAMS = totp.TotpParams()


def code(secret: str, steps_ahead: int) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=PARAMS.period * steps_ahead)
    return totp.code_at(secret, moment, PARAMS)


def measure(
    clients: int, seconds: float, users: list[tuple[str, str]], verify: Callable[..., bool]
) -> tuple[float, int, int]:
    """(verifications a second, how many, how many not ok) with ``clients`` threads."""
    # every user's code of this step first, then of the next: one user's two uses never race
    work = iter([(u, s, 0) for u, s in users] + [(u, s, 1) for u, s in users])
    guard = threading.Lock()
    counts, failed = [0] * clients, [0] * clients
    barrier = threading.Barrier(clients + 1)
    deadline: list[float] = []

    def run(index: int, state: dict[str, object]) -> None:
        barrier.wait()
        while time.perf_counter() < deadline[0]:
            with guard:
                item = next(work, None)
            if item is None:
                break
            user, secret, ahead = item
            counts[index] += 1
            failed[index] += not verify(state, user, code(secret, ahead))

    states: list[dict[str, object]] = [{} for _ in range(clients)]
    threads = [threading.Thread(target=run, args=(i, states[i])) for i in range(clients)]
    for thread in threads:
        thread.start()
    deadline.append(time.perf_counter() + seconds)
    began = time.perf_counter()
    barrier.wait()
    for thread in threads:
        thread.join()
    for state in states:
        connection = state.get("connection")
        if isinstance(connection, http.client.HTTPConnection):
            connection.close()
    return sum(counts) / (time.perf_counter() - began), sum(counts), sum(failed)


def enroll(values: Path, count: int) -> list[tuple[str, str]]:
    mfa = connect(values, actor="bench")
    orgs.add_org(mfa.app, "acme", "Acme")
    people = enrolled_users(mfa.app, "u", count)
    mfa.close()
    return people


def started(values: Path, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "mfactl", "--values", str(values), "serve"]
    process = subprocess.Popen(
        [*command, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            probe = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            probe.request("GET", "/healthz")
            if probe.getresponse().status == 200:
                probe.close()
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("mfactl serve did not start")


def bench_engine(engine: str, seconds: float) -> dict[int, tuple[float, float]]:
    """{clients: (library/s, HTTP/s)} on one database."""
    from bench.serve import free_port

    made = api_keys.create("bench", ["acme"])
    with database(engine) as url, tempfile.TemporaryDirectory() as tmp:
        values = Path(tmp) / "values.yaml"
        values.write_text(VALUES.format(url=url, key=generate_key(), hash=made.entry.hash))
        values.chmod(0o600)
        people = enroll(values, PER_RUN * 2 * len(CLIENTS))
        pools = iter(people[i : i + PER_RUN] for i in range(0, len(people), PER_RUN))
        port = free_port()
        server = started(values, port)
        mfa = connect(values, actor="bench")
        headers = {"Authorization": f"Bearer {made.key}", "Content-Type": "application/json"}

        not_ok: Counter[str] = Counter()  # what the library's answers that were not ok said
        tally = threading.Lock()

        def library(state: dict[str, object], user: str, given: str) -> bool:
            result = mfa.verify("acme", user, given)
            if not result.ok:
                with tally:
                    not_ok[result.result] += 1
            return result.ok

        def over_http(state: dict[str, object], user: str, given: str) -> bool:
            connection = state.get("connection")
            if not isinstance(connection, http.client.HTTPConnection):
                connection = state["connection"] = http.client.HTTPConnection("127.0.0.1", port)
            body = json.dumps({"org": "acme", "user": user, "code": given})
            connection.request("POST", "/api/v1/verify", body, headers)
            answer = connection.getresponse()
            return answer.status == 200 and json.loads(answer.read())["ok"] is True

        results: dict[int, tuple[float, float]] = {}
        try:
            print(f"\n{engine}: verifications a second (each a right code of a fresh step)")
            head = f"{'clients':>7} {'library':>9} {'HTTP':>9} {'ratio':>6}"
            print(f"{head} {'not ok (lib/HTTP)':>18}")
            for clients in CLIENTS:
                lib_rate, _, lib_bad = measure(clients, seconds, next(pools), library)
                http_rate, _, http_bad = measure(clients, seconds, next(pools), over_http)
                results[clients] = (lib_rate, http_rate)
                print(
                    f"{clients:>7} {lib_rate:>9.0f} {http_rate:>9.0f} "
                    f"{http_rate / lib_rate:>6.2f} {f'{lib_bad}/{http_bad}':>18}"
                )
            if not_ok:
                print(f"the library's verifications that were not ok: {dict(not_ok)}")
        finally:
            mfa.close()
            server.terminate()
            server.wait(10)
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per run")
    parser.add_argument("--engines", default="sqlite,postgres")
    args = parser.parse_args()
    found = {engine: bench_engine(engine, args.seconds) for engine in args.engines.split(",")}
    print()
    for engine, results in found.items():
        lib_rate, http_rate = results[8]
        verdict(
            f"{engine}: HTTP verify at 8 clients >= 0.5x the library",
            f"{http_rate:.0f}/s against {lib_rate:.0f}/s ({http_rate / lib_rate:.2f}x)",
            http_rate >= 0.5 * lib_rate,
        )


if __name__ == "__main__":
    main()
