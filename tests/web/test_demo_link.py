"""The demo ends with bob's setup link and the command that serves it: the link works there."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from starlette.testclient import TestClient
from typer.testing import CliRunner

from mfactl.bootstrap import bootstrap
from mfactl.cli.app import app as cli_app
from mfactl.config import Server
from mfactl.web.server import asgi


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
        web = asgi(app, Server())
        with TestClient(web, base_url="http://127.0.0.1:8080", follow_redirects=False) as client:
            page = client.get(link[1])
            assert page.status_code == 200 and "Acme Corporation" in page.text
            assert "Bob Builder" in page.text
    finally:
        app.close()
