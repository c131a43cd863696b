"""mfactl users: many users at once, selected by the filters of services/selection.py."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Many users at once: list, bulk reset, bulk enrollment invitations.", no_args_is_help=True
)


# --- users list (issue 5) ------------------------------------------------------------------------


# --- users reset, users enable (issue 4) ---------------------------------------------------------
