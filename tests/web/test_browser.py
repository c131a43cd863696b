"""The setup page in a real browser (Debian's chromium, driven by Playwright) against a real
`mfactl serve`: from the reset's .eml to MFA active, and everything that must not work."""

from __future__ import annotations

import email
import http.server
import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mfactl.app import App
from mfactl.bootstrap import bootstrap
from mfactl.crypto import generate_key
from mfactl.services import orgs, reset, users
from tests.conftest import _SKIPPED_SERVERS
from tests.web.test_site import HEADERS, state

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VALUES = """\
database: {{url: "{url}"}}
userLogin:
  mfa:
    issuer: "Browser Test"
    throttle: {{baseDelaySeconds: 0}}
secretStore: {{activeKey: "{key}"}}
email:
  transport: file
  fileDir: "{mail}"
  links:
    resetUrl: "http://127.0.0.1:{port}/mfa/setup?org={{org}}&token={{token}}"
"""


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        reason = f"no browser at {CHROMIUM} (apt-get install chromium): browser tests not run"
        _SKIPPED_SERVERS["chromium"] = reason
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """`mfactl serve` in a subprocess; its stderr (the log) kept in a file."""

    def __init__(self, values: Path, port: int, log: Path, *options: str) -> None:
        self.port, self.log = port, log
        command = [sys.executable, "-m", "mfactl", "--values", str(values), "serve"]
        self.process = subprocess.Popen(
            [*command, "--port", str(port), *options],
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),
        )
        deadline = time.monotonic() + 30
        while not self.healthy():
            assert self.process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "mfactl serve did not answer in 30 s"
            time.sleep(0.1)

    def healthy(self) -> bool:
        import httpx

        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=10)


def prepare(tmp_path: Path, url: str, port: int) -> tuple[App, Path]:
    values = tmp_path / "values.yaml"
    text = VALUES.format(url=url, key=generate_key(), mail=tmp_path / "mail", port=port)
    values.write_text(text)
    values.chmod(0o600)
    app = bootstrap(values, actor="test")
    from mfactl.services import schema

    schema.init_schema(app)
    orgs.add_org(app, "acme", "Acme Corporation")
    users.add_user(app, "acme", "bob", "bob@example.com", name="Bob Builder")
    return app, values


def emailed_link(app: App, mail: Path) -> str:
    """Reset bob; the link as his email carries it."""
    reset.reset_user(app, "acme", "bob", "lost phone")
    [eml] = mail.glob("*.eml")
    message = email.message_from_bytes(eml.read_bytes())
    text = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    payload = text.get_payload(decode=True)
    assert isinstance(payload, bytes)
    found = re.search(r"http://127\.0\.0\.1:\d+/mfa/setup\?\S+", payload.decode())
    assert found, payload
    return found[0]


def qr_of(page: Any) -> str:
    """The QR code read off a screenshot of the page by a real decoder."""
    import zxingcpp
    from PIL import Image

    shot = Image.open(io.BytesIO(page.locator("figure svg").screenshot()))
    # one code on the page; the decoder may report that one code twice (seen once in CI)
    [text] = {str(code.text) for code in zxingcpp.read_barcodes(shot)}
    return text


def secret_on(page: Any) -> str:
    return str(page.locator("#secret").inner_text()).replace(" ", "")


def code_for(uri: str, steps_later: int = 0) -> str:
    import pyotp

    totp = pyotp.parse_uri(uri)
    return str(totp.at(time.time() + steps_later * 30))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[App, Server, str]]:
    port = free_port()
    app, values = prepare(tmp_path, f"sqlite:///{tmp_path / 'web.db'}", port)
    server = Server(values, port, tmp_path / "serve.log")
    try:
        yield app, server, emailed_link(app, tmp_path / "mail")
    finally:
        if server.process.poll() is None:
            server.process.kill()
        app.close()


def test_from_the_email_to_mfa_active_in_a_browser(
    chromium: Any, served: tuple[App, Server, str]
) -> None:
    app, server, link = served
    token = link.rsplit("token=", 1)[1]
    context = chromium.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    responses: list[Any] = []
    page.on("response", lambda response: responses.append(response))
    before = state(app)
    first = page.goto(link)
    assert first.status == 200
    assert page.get_by_role("heading").inner_text() == "Set up MFA for Acme Corporation"
    assert "Bob Builder" in page.content() and "Browser Test" in page.content()
    page.reload()  # a preview, a scanner, a second look: nothing changes
    assert state(app) == before

    page.get_by_role("button", name="Show my QR code").click()
    assert page.url == f"http://127.0.0.1:{server.port}/mfa/setup/step"
    uri = qr_of(page)
    assert uri.startswith("otpauth://totp/") and f"secret={secret_on(page)}" in uri
    assert page.locator("#code").get_attribute("autocomplete") == "one-time-code"
    assert page.locator("#code").get_attribute("inputmode") == "numeric"
    assert page.get_by_label("Code from your app").count() == 1
    # the page fits a 390 px phone: nothing wider than the viewport
    assert page.evaluate("document.documentElement.scrollWidth") <= 390

    page.reload()
    assert qr_of(page) == uri  # the same step, the same secret
    tab = context.new_page()
    tab.goto(link)  # the email clicked again in a second tab: on to the same step
    assert tab.url.endswith("/mfa/setup/step") and secret_on(tab) == secret_on(page)

    other = chromium.new_context()
    stranger = other.new_page()
    refused = stranger.goto(link)
    assert refused.status == 409 and "another browser" in stranger.content()
    assert secret_on(page) not in stranger.content()
    other.close()

    page.fill("#code", "000000" if code_for(uri) != "000000" else "111111")
    page.get_by_role("button", name="Turn on MFA").click()
    assert "That code is not right" in page.locator("#problem").inner_text()
    page.fill("#code", code_for(uri))
    page.get_by_role("button", name="Turn on MFA").click()
    heading = page.get_by_role("heading", level=1)
    assert heading.inner_text() == "MFA is now active for Acme Corporation"
    assert users.user_status(app, "acme", "bob").mfa == "active"
    # the first recovery codes, shown once, downloadable as text without JavaScript
    codes = page.locator("ol.codes code").all_inner_texts()
    assert len(codes) == 10
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the codes as a text file").click()
    saved = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    assert saved[-10:] == codes

    again = page.goto(link)
    assert again.status == 410 and "administrator" in page.content()
    documents = [r for r in responses if r.request.resource_type == "document"]
    assert {r.status for r in documents} >= {200, 303, 410, 422}
    for response in documents:
        headers = response.all_headers()
        for name, value in HEADERS.items():
            assert headers[name] == value, (response.url, name)
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
    context.close()

    assert server.stop() == 0  # SIGTERM: a clean stop
    log = server.log.read_text()
    assert "GET /mfa/setup?[redacted]" in log
    secret = uri.split("secret=")[1].split("&")[0]
    assert token not in log and secret not in log


class _Attacker(http.server.BaseHTTPRequestHandler):
    """A page on another origin with a form aimed at the link."""

    target = ""
    csrf = ""

    def do_GET(self) -> None:
        body = (
            f'<form method="post" action="{self.target}">'
            f'<input type="hidden" name="csrf" value="{self.csrf}">'
            '<button id="go">Win a prize</button></form>'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_forged_posts_change_nothing(chromium: Any, served: tuple[App, Server, str]) -> None:
    app, _server, link = served
    context = chromium.new_context()
    page = context.new_page()
    page.goto(link)
    before = state(app)
    # our own page with its CSRF field taken out
    page.evaluate("document.querySelector('input[name=csrf]').remove()")
    page.get_by_role("button").click()
    assert "nothing was changed" in page.content() and state(app) == before
    # another origin (same host, another port: the browser still sends the cookie) with a
    # valid CSRF token copied from the page
    page.goto(link)
    _Attacker.target = link
    _Attacker.csrf = str(page.locator("input[name=csrf]").get_attribute("value"))
    attacker = http.server.HTTPServer(("127.0.0.1", 0), _Attacker)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://127.0.0.1:{attacker.server_port}/")
        page.click("#go")
        assert "nothing was changed" in page.content() and state(app) == before
    finally:
        attacker.shutdown()
    context.close()


@pytest.mark.postgres
def test_a_flow_begun_on_one_server_finishes_on_another(
    chromium: Any, tmp_path: Path, postgres_url: str
) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_url)
    with engine.begin() as connection:  # the shared test database, empty and unversioned
        connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    port_a, port_b = free_port(), free_port()
    app, values = prepare(tmp_path, postgres_url, port_a)
    link = emailed_link(app, tmp_path / "mail")
    one = Server(values, port_a, tmp_path / "a.log")
    two = Server(values, port_b, tmp_path / "b.log")
    try:
        context = chromium.new_context()
        page = context.new_page()
        page.goto(link)
        page.get_by_role("button").click()
        uri = qr_of(page)
        page.goto(f"http://127.0.0.1:{port_b}/mfa/setup/step")  # the other replica
        assert qr_of(page) == uri
        page.fill("#code", code_for(uri))
        page.get_by_role("button", name="Turn on MFA").click()
        assert "MFA is now active for Acme Corporation" in page.content()
        context.close()
        assert users.user_status(app, "acme", "bob").mfa == "active"
        assert (one.stop(), two.stop()) == (0, 0)
    finally:
        for server in (one, two):
            if server.process.poll() is None:
                server.process.kill()
        app.close()
