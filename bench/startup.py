"""Benchmark `mfactl --help` against a minimal Typer app with the same command groups.

    .venv/bin/python bench/startup.py [--runs 15]

The minimal app is generated from mfactl's own command tree (same groups, commands, help texts
and aliases, no options and no code), written to a temporary file and run as a subprocess like
mfactl; each side runs --runs times, interleaved, and the medians are compared.
Target: mfactl at most 1.3x the minimal app.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._setup import verdict


def minimal_app_source() -> str:
    """Python source of a Typer app with mfactl's command tree and nothing else."""
    from typer.main import get_command

    from mfactl.cli.app import app

    lines = [
        "import typer",
        "",
        "app = typer.Typer(name='mfactl', no_args_is_help=True, add_completion=False,",
        "                  context_settings={'help_option_names': ['-h', '--help']})",
    ]
    counter = 0

    def add(group: Any, variable: str) -> None:
        nonlocal counter
        for name, command in group.commands.items():
            counter += 1
            help_text = command.help or ""
            if hasattr(command, "commands"):
                child = f"group{counter}"
                lines.append(f"{child} = typer.Typer(help={help_text!r}, no_args_is_help=True)")
                add(command, child)
                lines.append(f"{variable}.add_typer({child}, name={name!r})")
            else:
                panel = getattr(command, "rich_help_panel", None)
                panel = panel if isinstance(panel, str) else None
                lines.append(
                    f"@{variable}.command({name!r}, help={help_text!r}, rich_help_panel={panel!r})"
                )
                lines.append(f"def command{counter}() -> None:\n    pass")

    add(get_command(app), "app")
    lines += ["", "@app.callback()", "def root() -> None:", "    'Administer TOTP MFA.'", ""]
    lines += ["app(prog_name='mfactl')"]
    return "\n".join(lines) + "\n"


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    script = Path(sys.executable).with_name("mfactl")
    mfactl = [str(script)] if script.exists() else [sys.executable, "-m", "mfactl"]
    with tempfile.TemporaryDirectory() as tmp:
        minimal = Path(tmp, "minimal_app.py")
        minimal.write_text(minimal_app_source(), encoding="utf-8")
        baseline = [sys.executable, str(minimal)]
        for argv in (mfactl, baseline):  # warm the file cache; both must work
            subprocess.run([*argv, "--help"], check=True, capture_output=True)
        mine: list[float] = []
        theirs: list[float] = []
        for _ in range(args.runs):
            mine.append(timed([*mfactl, "--help"]))
            theirs.append(timed([*baseline, "--help"]))
    mine_s, theirs_s = statistics.median(mine), statistics.median(theirs)
    print(f"`mfactl --help`, {args.runs} runs each")
    print(f"minimal Typer app: {theirs_s * 1000:7.1f} ms (median)")
    print(f"mfactl:            {mine_s * 1000:7.1f} ms (median)")
    print(f"ratio:             {mine_s / theirs_s:7.2f}x")
    verdict(
        "mfactl --help <= 1.3x the minimal Typer app",
        f"{mine_s / theirs_s:.2f}x",
        mine_s <= 1.3 * theirs_s,
    )


if __name__ == "__main__":
    main()
