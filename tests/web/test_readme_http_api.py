"""The README's HTTP API example, as printed: its shell lines run in bash after `mfactl demo`,
and each curl call gives the answer the README shows (the server in-process)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from mfactl.bootstrap import bootstrap
from mfactl.cli.app import app as cli_app
from mfactl.web.server import asgi

README = Path(__file__).resolve().parents[2] / "README.md"


def _example() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)
    [block] = [b for b in blocks if "/api/v1/requirement" in b]
    return block.splitlines()


def test_the_readme_http_api_example_runs_as_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    demo = CliRunner().invoke(cli_app, ["demo"], env={"NO_COLOR": "1"})
    assert demo.exit_code == 0, demo.output
    lines = _example()
    setup = lines[: lines.index("mfactl serve &")]
    assert setup[0] == "export MFACTL_VALUES=mfactl-demo/values.yaml"
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    shell = subprocess.run(
        ["bash", "-euc", "\n".join([*setup, 'printf %s "$KEY"'])],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": path},
        timeout=120,
    )
    assert shell.returncode == 0, shell.stderr
    key = shell.stdout
    assert key and key not in (tmp_path / "mfactl-demo" / "values.yaml").read_text()
    assert (tmp_path / "mfactl-demo" / "api-key.txt").stat().st_mode & 0o077 == 0

    app = bootstrap(tmp_path / "mfactl-demo" / "values.yaml", actor="test")
    calls = [i for i, line in enumerate(lines) if line.startswith("curl ")]
    assert len(calls) == 2
    try:
        web = asgi(app, app.settings.server)
        with TestClient(web, base_url="http://127.0.0.1:8080") as client:
            for i in calls:
                command = shlex.split(" ".join([lines[i].rstrip("\\"), lines[i + 1]]))
                url = command[command.index("-s") + 1]
                body = json.loads(command[command.index("-d") + 1])
                assert "Bearer $KEY" in lines[i]
                answer = client.post(url, json=body, headers={"Authorization": f"Bearer {key}"})
                assert answer.status_code == 200
                assert answer.json() == json.loads(lines[i + 2])
    finally:
        app.close()
