"""The setup page's throughput under 1, 8 and 32 clients, against a bare Starlette app.

    .venv/bin/python bench/serve.py [--seconds 4] [--engine sqlite|postgres]

Both servers run as one uvicorn process each on loopback, in the same run on the same machine:
the bare app answers a constant page of the link page's size; `mfactl serve` answers the link
page (GET: find the link, check it, render) and the code POST (a wrong code, the costliest
ordinary path: the user's lock, open the secret, compare, count the failure, audit, commit, and
render the step with its QR code again). Each client is a thread with its own connection; every
loop is bounded by --seconds and by a request count. Target: the link page at least 0.5x the
bare app at 8 clients, and no error at 32.
"""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench._setup import database
from mfactl.bootstrap import bootstrap
from mfactl.crypto import generate_key
from mfactl.services import links, lookup, orgs, users

CLIENTS = (1, 8, 32)
# wrong codes sent for one user before its client opens the next user's link: the throttle
# locks a user at 100 failures at most (it cannot be turned off), and a locked user is a
# cheaper path than the one measured
CODES_PER_USER = 90
SPARE_USERS = 100  # for the code runs, beyond one per client
MAX_REQUESTS = 20_000  # per measurement, whatever --seconds says
BARE = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route
PAGE = "<!doctype html><title>x</title>" + "x" * 2400
async def page(request):
    return HTMLResponse(PAGE)
uvicorn.run(Starlette(routes=[Route("/", page)]), host="127.0.0.1", port=int(sys.argv[1]),
            log_level="warning", access_log=False)
"""
VALUES = """\
database: {{url: "{url}"}}
userLogin:
  mfa: {{throttle: {{baseDelaySeconds: 0, lockAfterFailures: 100, maxFailuresPerDay: 1000}}}}
secretStore: {{activeKey: "{key}"}}
email:
  links: {{resetUrl: "http://127.0.0.1:{port}/mfa/setup?org={{org}}&token={{token}}"}}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def started(command: list[str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz")
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"{command[:3]} did not start")


def measure(clients: int, seconds: float, request: object) -> tuple[float, int, int]:
    """(requests per second, requests, errors) with ``clients`` threads for ``seconds``."""
    counts, errors = [0] * clients, [0] * clients
    stop = time.monotonic() + seconds
    barrier = threading.Barrier(clients)

    def run(index: int) -> None:
        with httpx.Client(timeout=30) as client:
            setup = request(client, index, None)  # type: ignore[operator]
            barrier.wait()
            while time.monotonic() < stop and sum(counts) < MAX_REQUESTS:
                try:
                    ok = request(client, index, setup)  # type: ignore[operator]
                except httpx.HTTPError:
                    ok = False
                counts[index] += 1
                errors[index] += 0 if ok else 1

    started_at = time.monotonic()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started_at
    return sum(counts) / elapsed, sum(counts), sum(errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--engine", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    with database(args.engine) as url, tempfile.TemporaryDirectory() as tmp:
        port, bare_port = free_port(), free_port()
        values = Path(tmp) / "values.yaml"
        values.write_text(VALUES.format(url=url, key=generate_key(), port=port))
        values.chmod(0o600)
        app = bootstrap(values, actor="bench")
        orgs.add_org(app, "acme", "Acme")
        # the link page's users, then the code runs' (a link opened by one client is refused
        # to any other, and a client moves on to a new user every CODES_PER_USER codes)
        handles = [f"user{i}" for i in range(max(CLIENTS) + sum(CLIENTS) + SPARE_USERS)]
        for handle in handles:
            users.add_user(app, "acme", handle, f"{handle}@example.com")
        with app.uow() as uow:
            targets = []
            for handle in handles:
                org, user = lookup.get_org_user(uow.session, "acme", handle)
                targets.append(links.LinkTarget(user.id, org.slug, user.handle))
            urls = [i.url for i in links.issue_links(uow.session, app, targets, "reset")]
            uow.commit()
        app.close()
        serve = started(
            [sys.executable, "-m", "mfactl", "--values", str(values), "serve", "--port", str(port)],
            port,
        )
        bare = started([sys.executable, "-c", BARE, str(bare_port)], bare_port)
        try:
            report(args.seconds, urls, bare_port)
        finally:
            for process in (serve, bare):
                process.terminate()
                process.wait(10)


def report(seconds: float, urls: list[str], bare_port: int) -> None:
    def bare(client: httpx.Client, index: int, setup: object) -> bool:
        return client.get(f"http://127.0.0.1:{bare_port}/").status_code == 200

    def link_page(client: httpx.Client, index: int, setup: object) -> bool:
        return client.get(urls[index]).status_code == 200

    code_urls = iter(urls[max(CLIENTS) :])
    drawing = threading.Lock()

    def opened(client: httpx.Client) -> list[object]:
        """This client's browser opens the next unused link: [step, csrf, origin, codes sent]."""
        with drawing:
            url = next(code_urls)
        step = url.split("?")[0] + "/step"
        page = client.get(url).text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf, page
        origin = url.split("/mfa")[0]
        client.post(url, data={"csrf": csrf[1]}, headers={"origin": origin})
        token = re.search(r'name="csrf" value="([^"]+)"', client.get(step).text)
        assert token
        return [step, token[1], origin, 0]

    def code_post(client: httpx.Client, index: int, setup: object) -> object:
        if setup is None:
            return opened(client)
        held: list[Any] = setup  # type: ignore[assignment]
        if held[3] >= CODES_PER_USER:
            held[:] = opened(client)
        step, token, origin, _ = held
        held[3] += 1
        answer = client.post(
            step, data={"csrf": token, "code": "000000"}, headers={"origin": origin}
        )
        return answer.status_code in (422, 303)

    print(
        f"{'clients':>7} {'bare req/s':>11} {'link req/s':>11} {'ratio':>6} "
        f"{'code POST/s':>12} {'errors':>7}"
    )
    ratios: dict[int, float] = {}
    failures: dict[int, int] = {}
    for clients in CLIENTS:
        bare_rate, _, bare_errors = measure(clients, seconds, bare)
        link_rate, _, link_errors = measure(clients, seconds, link_page)
        code_rate, _, code_errors = measure(clients, seconds, code_post)
        errors = bare_errors + link_errors + code_errors
        ratios[clients], failures[clients] = link_rate / bare_rate, errors
        print(
            f"{clients:>7} {bare_rate:>11.0f} {link_rate:>11.0f} "
            f"{link_rate / bare_rate:>6.2f} {code_rate:>12.0f} {errors:>7}"
        )

    at_8 = "PASS" if ratios[8] >= 0.5 else "MISS"
    print(f"{at_8} link page at 8 clients: {ratios[8]:.2f}x the bare app (target >= 0.5x)")
    at_32 = "PASS" if failures[32] == 0 else "MISS"
    print(f"{at_32} no error at 32 clients: {failures[32]} errors (target 0)")


if __name__ == "__main__":
    main()
