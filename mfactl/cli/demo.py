"""mfactl demo: the quick start on embedded SQLite."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

from mfactl.cli.common import err_console


def demo(
    ctx: typer.Context,
    directory: Path = typer.Option(
        Path("mfactl-demo"), "--dir", help="Folder to create for the demo (must not exist)."
    ),
) -> None:
    """Create a demo folder (values file, SQLite database, users) and walk through mfactl."""
    from mfactl.services.demo import run_demo

    console = err_console()
    for number, step in enumerate(run_demo(directory), start=1):
        console.print(f"\n[{number}] {step.title}", style="bold")
        for line in step.lines:
            sys.stdout.write(f"    {line}\n")
        sys.stdout.flush()
    values = shlex.quote(str((directory / "values.yaml").resolve()))
    console.print("\nThe demo is ready. Try it yourself:", style="bold")
    sys.stdout.write(
        f"    export MFACTL_VALUES={values}\n"
        "    mfactl user status --org acme --user alice\n"
        "    mfactl audit list\n"
    )
