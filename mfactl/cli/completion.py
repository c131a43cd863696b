"""mfactl completion: the shell script that completes mfactl's commands and options."""

from __future__ import annotations

import sys
from enum import StrEnum

import typer

COMPLETE_VAR = "_MFACTL_COMPLETE"


class Shell(StrEnum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


def completion(
    ctx: typer.Context, shell: Shell = typer.Argument(..., help="bash, zsh or fish.")
) -> None:
    """Print the shell script that completes mfactl's commands and options.

    Load it in the shell's startup file, e.g. for bash in ~/.bashrc:

        eval "$(mfactl completion bash)"

    $ mfactl completion zsh > ~/.zfunc/_mfactl
    """
    # typer's own script (it vendors click): it calls mfactl back with _MFACTL_COMPLETE set,
    # which main() answers through typer
    from typer._completion_shared import get_completion_script

    script = get_completion_script(prog_name="mfactl", complete_var=COMPLETE_VAR, shell=shell.value)
    sys.stdout.write(script + "\n")
