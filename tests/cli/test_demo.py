from __future__ import annotations

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
