"""mfactl demo: the quick start on embedded SQLite."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

from mfactl.cli.common import console


def demo(
    ctx: typer.Context,
    directory: Path = typer.Option(
        Path("mfactl-demo"), "--dir", help="Folder to create for the demo (must not exist)."
    ),
) -> None:
    """Create a demo folder (values file, SQLite database, users) and walk through mfactl.

    $ mfactl demo

    $ mfactl demo --dir /tmp/try-mfactl
    """
    from mfactl.bootstrap import bootstrap
    from mfactl.services.demo import prepare_folder, run_demo

    values_file = prepare_folder(directory)
    app = bootstrap(values_file, actor="demo")
    me = _how_to_run_me()
    # headings and details both on stdout, so a pipe keeps them in order
    out = console()
    setup_link = None
    try:
        for number, step in enumerate(run_demo(app, directory, values_file, me), start=1):
            setup_link = step.setup_link or setup_link
            out.print(f"\n[{number}] {step.title}", style="bold")
            for line in step.lines:
                sys.stdout.write(f"    {line}\n")
            sys.stdout.flush()
    finally:
        app.close()
    values = shlex.quote(str((directory / "values.yaml").resolve()))
    out.print("\nThe demo is ready. Try it yourself:", style="bold")
    sys.stdout.write(
        f"    export MFACTL_VALUES={values}\n"
        f"    {me} user status --org acme --user alice\n"
        f"    {me} audit list\n"
    )
    if setup_link:
        out.print(
            "\nFinish bob's reset as he would: serve the setup page, open his link in a "
            "browser and scan the QR code with an authenticator app:",
            style="bold",
        )
        sys.stdout.write(f"    {me} --values {values} serve\n    {setup_link}\n")
    sys.stdout.flush()


def _how_to_run_me() -> str:
    """`mfactl` when that is on the PATH and is this one; else the way to this one
    (`.venv/bin/mfactl` right after the Quick start, with the venv not activated)."""
    import os
    import shutil

    script = sys.argv[0]
    if os.path.basename(script) != "mfactl":  # python -m mfactl
        return f"{shlex.quote(sys.executable)} -m mfactl"
    found = shutil.which("mfactl")
    if found and os.path.realpath(found) == os.path.realpath(script):
        return "mfactl"
    relative = os.path.relpath(script)
    return shlex.quote(relative if not relative.startswith("..") else os.path.abspath(script))
