"""The HTTP API served for real: uvicorn in a thread under 20 concurrent verifies of one code,
and `mfactl serve` processes (one on SQLite, two sharing one PostgreSQL) whose logs are read."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mfactl.app import App
from mfactl.config import Server as ServerOptions
from mfactl.crypto import generate_key
from mfactl.services import api_keys, enrollment, orgs, users
from mfactl.web.server import asgi
from tests.conftest import FrozenClock, _wipe
from tests.unit.helpers import phone_code, secret_of
from tests.web.test_browser import Server, free_port

KEY = api_keys.create("login-server", ["acme"])
CLIENTS = 20


class Uvicorn:
    """uvicorn serving an ASGI app in a thread of this process, on a free port."""

    def __init__(self, application: Any) -> None:
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(
            application,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:  # waiting for it to listen, not for a race
            assert self.thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def post(connection: http.client.HTTPConnection, path: str, body: dict[str, Any]) -> Any:
    connection.request(
        "POST",
        f"/api/v1/{path}",
        json.dumps(body),
        {"Authorization": f"Bearer {KEY.key}", "Content-Type": "application/json"},
    )
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def test_twenty_concurrent_verifies_of_one_code_give_exactly_one_ok(
    app: App, clock: FrozenClock
) -> None:
    orgs.add_org(app, "acme", "Acme")
    users.add_user(app, "acme", "alice", "alice@example.com")
    uri = enrollment.enable_user(app, "acme", "alice").otpauth_uri
    assert uri is not None
    enrollment.confirm_user(app, "acme", "alice", phone_code(uri, clock()))
    clock.advance(30)  # a code not used yet
    code = phone_code(uri, clock())
    served = Uvicorn(asgi(app, ServerOptions(api_keys=(KEY.entry,))))
    try:
        connections = [http.client.HTTPConnection("127.0.0.1", served.port) for _ in range(CLIENTS)]
        for connection in connections:
            connection.connect()
        barrier = threading.Barrier(CLIENTS)
        answers: list[Any] = []

        def client(connection: http.client.HTTPConnection) -> None:
            barrier.wait()  # all sent at once
            answers.append(
                post(connection, "verify", {"org": "acme", "user": "alice", "code": code})
            )

        threads = [threading.Thread(target=client, args=(c,)) for c in connections]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        for connection in connections:
            connection.close()
    finally:
        served.stop()
    assert len(answers) == CLIENTS
    assert {status for status, _ in answers} == {200}
    results = Counter(body["result"] for _, body in answers)
    assert results == {"ok": 1, "replayed": CLIENTS - 1}, results


VALUES = """\
database: {{url: "{url}"}}
userLogin:
  mfa:
    throttle: {{baseDelaySeconds: 0}}
secretStore: {{activeKey: "{key}"}}
email: {{transport: file, fileDir: "{mail}"}}
server:
  apiKeys:
    - {{name: "{name}", orgs: ["acme"], hash: "{hash}"}}
"""


def values_file(tmp_path: Path, url: str) -> Path:
    from mfactl.bootstrap import bootstrap
    from mfactl.services import schema

    values = tmp_path / "values.yaml"
    values.write_text(
        VALUES.format(
            url=url,
            key=generate_key(),
            mail=tmp_path / "mail",
            name=KEY.entry.name,
            hash=KEY.entry.hash,
        )
    )
    values.chmod(0o600)
    app = bootstrap(values, actor="test")
    schema.init_schema(app)
    _wipe(app)  # the session's PostgreSQL database: other tests left rows
    orgs.add_org(app, "acme", "Acme")
    users.add_user(app, "acme", "alice", "alice@example.com")
    app.close()
    return values


@pytest.fixture
def servers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[Server]]:
    """One `mfactl serve` on SQLite, or two on one PostgreSQL database (request.param)."""
    kind, count = request.param
    url = request.getfixturevalue(f"{kind}_url")
    values = values_file(tmp_path, url)
    running: list[Server] = []
    try:
        for n in range(count):
            running.append(Server(values, free_port(), tmp_path / f"serve{n}.log"))
        yield running
    finally:
        for server in running:
            assert server.stop() == 0


def _code(uri: str, steps: int = 0) -> str:
    from datetime import UTC, datetime

    return phone_code(uri, datetime.now(UTC), steps)


@pytest.mark.parametrize("servers", [("sqlite", 1), ("postgres", 2)], indirect=True)
def test_the_api_across_servers_and_what_their_logs_hold(servers: list[Server]) -> None:
    """Enroll on one server and confirm on the other; a code accepted by one is replayed on the
    other; a device remembered on one is known to the other. No log holds the key, a secret, a
    code or a token."""
    connections = [http.client.HTTPConnection("127.0.0.1", s.port) for s in servers]
    one, two = connections[0], connections[-1]
    alice = {"org": "acme", "user": "alice"}
    status, started = post(one, "enroll", alice)
    assert status == 200
    uri = started["otpauth_uri"]
    status, confirmed = post(two, "confirm", {**alice, "code": _code(uri)})
    assert (status, confirmed["state"]) == (200, "active")
    recovery = confirmed["recovery_codes"][0]
    assert post(one, "recovery-codes/use", {**alice, "code": recovery})[1]["result"] == "ok"
    assert post(two, "recovery-codes/use", {**alice, "code": recovery})[1]["result"] == "wrong"
    code = _code(uri, 1)  # the next step's code: not used yet, and within the window
    status, first = post(one, "verify", {**alice, "code": code})
    assert (status, first["result"]) == (200, "ok")
    assert post(two, "verify", {**alice, "code": code})[1]["result"] == "replayed"
    status, remembered = post(two, "remember", alice)
    assert status == 200
    token = remembered["token"]
    assert post(one, "remember/check", {**alice, "token": token}) == (200, {"remembered": True})
    assert post(one, "requirement", {**alice, "remember_token": token})[1]["decision"] == "allow"
    assert post(one, "forget", alice) == (200, {"revoked": 1})
    assert post(two, "remember/check", {**alice, "token": token}) == (200, {"remembered": False})
    assert post(two, "verify", {"org": "other", "user": "alice", "code": code})[0] == 403
    for connection in connections:
        connection.close()
    for server in servers:
        log = server.log.read_text()
        assert "POST /api/v1/" in log
        for secret in (KEY.key, secret_of(uri), code, token, *confirmed["recovery_codes"]):
            assert secret not in log
