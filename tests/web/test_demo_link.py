"""The demo ends with bob's setup link and the command that serves it: the link works there."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.testclient import TestClient
from typer.testing import CliRunner

from mfactl.bootstrap import bootstrap
from mfactl.cli.app import app as cli_app
from mfactl.config import Server as ServerSettings
from mfactl.web.server import asgi
from tests.web import test_browser
from tests.web.test_browser import Server, code_for, free_port, qr_of

chromium = test_browser.chromium  # the browser, as test_browser starts it


def test_the_demo_prints_a_setup_link_that_mfactl_serve_answers(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    result = CliRunner().invoke(cli_app, ["demo", "--dir", str(folder)], env={"NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    values = folder / "values.yaml"
    assert f"--values {values} serve\n" in result.stdout
    link = re.search(r"^    (http://127\.0\.0\.1:8080/mfa/setup\?\S+)$", result.stdout, re.M)
    assert link, result.stdout
    [eml] = (folder / "mail").glob("*.eml")
    assert urlsplit(link[1]).query.split("token=")[1] in eml.read_text()  # the email's link
    app = bootstrap(values, actor="test")
    try:
        web = asgi(app, ServerSettings())
        with TestClient(web, base_url="http://127.0.0.1:8080", follow_redirects=False) as client:
            page = client.get(link[1])
            assert page.status_code == 200 and "Acme Corporation" in page.text
            assert "Bob Builder" in page.text
    finally:
        app.close()


def test_the_demo_in_a_browser_until_users_list_shows_mfa_active(
    chromium: Any, tmp_path: Path
) -> None:
    """The issue's "done when": `mfactl demo`, `mfactl serve`, bob's link in a browser, the QR
    scanned, and `mfactl users list` shows his MFA active (on a free port: 8080 may be taken)."""
    folder = tmp_path / "demo"
    runner = CliRunner()
    result = runner.invoke(cli_app, ["demo", "--dir", str(folder)], env={"NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    link = re.search(r"^    (http://127\.0\.0\.1:8080/mfa/setup\?\S+)$", result.stdout, re.M)
    assert link, result.stdout
    port = free_port()
    values = folder / "values.yaml"
    values.write_text(values.read_text().replace("127.0.0.1:8080", f"127.0.0.1:{port}"))
    server = Server(values, port, tmp_path / "serve.log")
    try:
        context = chromium.new_context()
        page = context.new_page()
        page.goto(link[1].replace(":8080", f":{port}"))
        page.get_by_role("button", name="Show my QR code").click()
        page.fill("#code", code_for(qr_of(page)))
        page.get_by_role("button", name="Turn on MFA").click()
        assert "MFA is now active for Acme Corporation" in page.locator("h1").inner_text()
        context.close()
    finally:
        assert server.stop() == 0
    listed = runner.invoke(
        cli_app, ["--values", str(values), "users", "list", "--org", "acme", "--json"]
    )
    assert listed.exit_code == 0, listed.output
    bob = next(u for u in json.loads(listed.stdout) if u["user"] == "bob")
    assert bob["mfa"] == "active"
