"""The demo enrolls and verifies alice; the README's mfactl.api example runs as printed."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mfactl.cli.app import app as cli_app

README = Path(__file__).resolve().parents[2] / "README.md"


def test_demo_then_the_readme_api_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    demo = runner.invoke(cli_app, ["demo"], env={"NO_COLOR": "1"})
    assert demo.exit_code == 0, demo.output
    lines = demo.stdout.splitlines()
    assert any(
        re.search(r"user confirm --org acme --user alice --code \d{6}  -> MFA active", x)
        for x in lines
    )
    outcomes = [x.split("-> ")[1].split()[0] for x in lines if "user verify" in x]
    assert outcomes == ["replayed", "ok", "replayed", "wrong"]
    assert "the demo plays alice's phone" in demo.stdout
    status = runner.invoke(
        cli_app,
        [
            "--values",
            "mfactl-demo/values.yaml",
            "user",
            "status",
            "--org",
            "acme",
            "--user",
            "alice",
            "--json",
        ],
    )
    assert '"mfa": "active"' in status.stdout and '"failed_attempts": 0' in status.stdout

    text = README.read_text(encoding="utf-8")
    example = text.split("<!-- api-example -->\n```python\n", 1)[1].split("```", 1)[0]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(example, "README.md", "exec"), {})
    assert printed.getvalue().split() == ["allow", "code", "replayed", "malformed", "allow"]


def test_connect_fails_at_start_up_on_a_bad_setup(tmp_path: Path, sqlite_url: str) -> None:
    import mfactl.api
    from mfactl.crypto import generate_key
    from mfactl.errors import ConfigError
    from tests.cli.conftest import write_values

    no_key = write_values(tmp_path / "v.yaml", sqlite_url, "")
    with pytest.raises(ConfigError, match=r"secretStore\.activeKey is not set"):
        mfactl.api.connect(values=no_key)

    no_schema = write_values(
        tmp_path / "w.yaml", f"sqlite:///{tmp_path / 'new.db'}", generate_key()
    )
    with pytest.raises(ConfigError, match="has no mfactl schema"):
        mfactl.api.connect(values=no_schema)
