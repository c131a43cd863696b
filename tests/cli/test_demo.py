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


def test_a_folder_named_with_quotes_and_backslashes_gets_a_values_file_it_reads(
    tmp_path: Path,
) -> None:
    runner = CliRunner()
    folder = tmp_path / 'say "hi" \\ there'
    result = runner.invoke(cli_app, ["demo", "--dir", str(folder)], env={"NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    values = str(folder / "values.yaml")
    listed = runner.invoke(cli_app, ["--values", values, "org", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert '"org": "acme"' in listed.stdout
    assert (folder / "mfactl.db").is_file() and (folder / "mail").is_dir()


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


def test_the_demo_tells_a_true_story(tmp_path: Path) -> None:
    import json
    import shlex

    runner = CliRunner()
    folder = tmp_path / "demo"
    result = runner.invoke(cli_app, ["demo", "--dir", str(folder)], env={"NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    # headings and details on one stream, in order: a pipe reads the story as it was told
    assert result.stderr == ""
    assert out.index("[4] Verify") < out.index("user verify") < out.index("[5] Reset")
    # the email greets bob by the name the command shown gave him
    assert "user add --org acme --user bob --email bob@example.com --name 'Bob Builder'\n" in out
    assert "    org add acme --name 'Acme Corporation'\n" in out  # the name it was given
    assert "((" not in out and "))" not in out
    values = ["--values", str(folder / "values.yaml")]

    def run(*args: str) -> dict[str, object]:
        done = runner.invoke(cli_app, [*values, *args, "--json"])
        assert done.exit_code == 0, done.output
        return dict(json.loads(done.stdout))

    # the wrong code's failure was cleared, and the demo shows how
    assert "user unlock --org acme --user alice  -> 1 failed attempt cleared\n" in out
    assert run("user", "status", "--org", "acme", "--user", "alice")["failed_attempts"] == 0
    # the lost phone was a real one: bob had MFA when he was reset
    assert "  -> bob's MFA was active; he sets it up again from the emailed link\n" in out
    resets = runner.invoke(cli_app, [*values, "audit", "list", "--action", "user.reset", "--json"])
    (event,) = json.loads(resets.stdout)
    assert event["user"] == "bob" and event["details"]["had_mfa"] == "active"
    # the mail hint runs as printed, from another folder, before any `export`
    (hint,) = [line for line in out.splitlines() if "the queue without bodies: " in line]
    command = shlex.split(hint.split("the queue without bodies: ", 1)[1])
    env = {k: v for k, v in os.environ.items() if k != "MFACTL_VALUES"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "acme/bob  bob@example.com  sent" in done.stdout
