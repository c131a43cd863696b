from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from mfactl.cli.app import app as cli_app


def test_demo_builds_a_working_folder(tmp_path: Path) -> None:
    runner = CliRunner()
    folder = tmp_path / "demo"
    result = runner.invoke(cli_app, ["demo", "--dir", str(folder)], env={"NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert (folder / "values.yaml").stat().st_mode & 0o077 == 0
    assert "user add --org acme --user alice" in result.stdout
    status = runner.invoke(
        cli_app,
        [
            "--values",
            str(folder / "values.yaml"),
            "user",
            "status",
            "--org",
            "acme",
            "--user",
            "bob",
            "--json",
        ],
    )
    assert status.exit_code == 0 and '"user": "bob"' in status.stdout
    again = runner.invoke(cli_app, ["demo", "--dir", str(folder)])
    assert again.exit_code == 4 and "already exists" in again.stderr


def test_the_try_it_lines_run_as_printed(tmp_path: Path) -> None:
    """Right after the Quick start the venv is not activated: `mfactl` alone would not run."""
    script = Path(sys.executable).parent / "mfactl"

    def demo(folder: str, path: str) -> str:
        env = {**os.environ, "PATH": path}
        done = subprocess.run(
            [str(script), "demo", "--dir", folder], cwd=tmp_path, env=env, capture_output=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.decode()

    assert f"    {script} audit list\n" in demo("d1", "/usr/bin:/bin")
    assert "    mfactl audit list\n" in demo("d2", f"{script.parent}:/usr/bin:/bin")
