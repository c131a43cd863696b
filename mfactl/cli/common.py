"""What every command shares: the App from the global options, output, and error rendering."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import sys
from collections.abc import Collection, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from mfactl.errors import MfactlError, from_database

if TYPE_CHECKING:
    from rich.console import Console

    from mfactl.app import App

JSON_OPTION = typer.Option(False, "--json", help="Print one JSON document on stdout.")


def org_value(value: str | None) -> str | None:
    """An --org that is given must name one: "" (an unset $ORG in a script) is not "every
    organization"."""
    if value is not None and not value.strip():
        from mfactl.errors import InvalidInput

        raise InvalidInput("--org is empty: name an organization")
    return value


ORG_OPTION = typer.Option(..., "--org", help="Organization slug.", callback=org_value)
USER_OPTION = typer.Option(..., "--user", help="User handle or email.")


@dataclasses.dataclass
class Globals:
    values: str | None = None
    actor: str | None = None
    app: App | None = None


def get_app(ctx: typer.Context, *, creates_database: bool = False) -> App:
    """The App for this invocation, built once from the global options; only `init` may
    create a SQLite database file."""
    root = ctx.find_root()
    if root.obj is None:
        root.obj = Globals()
    globals_: Globals = root.obj
    if globals_.app is None:
        from mfactl.bootstrap import bootstrap

        globals_.app = bootstrap(globals_.values, actor=globals_.actor)
        globals_.app.creates_database = creates_database
        as_json = bool(root.meta.get("mfactl.json"))
        for warning in globals_.app.settings.warnings:
            if as_json:  # for a script reading stderr: every line of it one JSON document
                sys.stderr.write(dumps({"warning": warning}) + "\n")
            else:
                warn(warning)
        root.call_on_close(globals_.app.close)
    return globals_.app


# --- output --------------------------------------------------------------------------------------

# What a terminal would act on or reorder rather than show: C0 and C1 controls (ESC starts the
# sequences that retitle a window or clear the screen), DEL, and format characters (bidi
# embeddings, overrides and isolates, zero-width characters, line and paragraph separators).
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f"
    "\ufeff\ufff9-\ufffb]"
)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def for_terminal(text: str) -> str:
    """Text from the database, an SMTP server or a user, made safe for a terminal: every
    control or format character written as its escape (``\\x1b``), the rest as it is.
    JSON output keeps values exact; only what people read goes through this."""
    return _UNSAFE.sub(_escape, text) if _UNSAFE.search(text) else text


def iso(value: datetime | None) -> str | None:
    """ISO 8601 UTC with Z, or None."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_default(value: Any) -> Any:
    """The one way a result becomes JSON: its ``to_json()`` when it has one (the documented
    shape), else a dataclass's fields; times as ISO 8601 UTC with Z."""
    if isinstance(value, datetime):
        return iso(value)
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dumps(document: Any) -> str:
    return json.dumps(document, default=_json_default, ensure_ascii=False)


def print_json(document: Any) -> None:
    sys.stdout.write(dumps(document) + "\n")
    sys.stdout.flush()


_consoles: dict[str, Console] = {}


def console() -> Console:
    """Rich console on stdout for results; never interprets user data as markup."""
    from rich.console import Console

    if "out" not in _consoles or _consoles["out"].file is not sys.stdout:
        _consoles["out"] = Console(
            file=sys.stdout, markup=False, highlight=False, emoji=False, soft_wrap=False
        )
    return _consoles["out"]


def err_console() -> Console:
    """Rich console on stderr for status, warnings and progress."""
    from rich.console import Console

    if "err" not in _consoles or _consoles["err"].file is not sys.stderr:
        _consoles["err"] = Console(file=sys.stderr, markup=False, highlight=False, emoji=False)
    return _consoles["err"]


def info(message: str) -> None:
    """A status line for people, on stderr."""
    sys.stderr.write(for_terminal(message) + "\n")


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """``1 secret``, ``2 secrets``, ``0 outbox bodies``."""
    return f"{count} {singular if count == 1 else plural or singular + 's'}"


def warn(message: str) -> None:
    sys.stderr.write(f"warning: {for_terminal(message)}\n")


def print_fields(fields: Iterable[tuple[str, Any]]) -> None:
    """A "label: value" block on stdout."""
    rows = list(fields)
    width = max((len(label) for label, _ in rows), default=0)
    for label, value in rows:
        if isinstance(value, datetime):
            value = iso(value)
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        elif value is None:
            value = "-"
        sys.stdout.write(f"{label + ':':<{width + 1}} {for_terminal(str(value))}\n")


def print_table(
    columns: list[str],
    rows: Iterable[Iterable[Any]],
    *,
    wrap: Collection[str] = (),
    title: str | None = None,
    empty: str | None = None,
) -> None:
    """A table on stdout. Only the ``wrap`` columns (free text) may wrap when space runs out;
    identifiers, addresses and times stay whole on one line. With no rows and an ``empty``
    sentence, that sentence goes to stderr instead and stdout stays empty."""
    from rich.table import Table

    rows = iter(rows)
    first = next(rows, None)
    if first is None and empty is not None:
        info(empty)
        return
    rows = itertools.chain([first], rows) if first is not None else rows

    table = Table(title=title, show_edge=False, pad_edge=False, box=None, header_style="bold")
    for column in columns:
        free = column in wrap
        table.add_column(
            column.upper(), overflow="fold", no_wrap=not free, ratio=1 if free else None
        )
    for row in rows:
        table.add_row(
            *(
                "-"
                if v is None
                else iso(v)
                if isinstance(v, datetime)
                else ("yes" if v else "no")
                if isinstance(v, bool)
                else for_terminal(str(v))
                for v in row
            )
        )
    console().print(table)


# --- errors --------------------------------------------------------------------------------------


def render_error(exc: MfactlError, *, as_json: bool) -> None:
    from mfactl.errors import Declined

    if as_json:
        payload: dict[str, Any] = {"code": exc.code, "message": exc.message}
        if exc.problems:
            payload["problems"] = exc.problems
        if exc.hint:
            payload["hint"] = exc.hint
        sys.stderr.write(dumps({"error": payload}) + "\n")
        return
    # a "no" at the prompt is the person's decision, not an error of mfactl's
    message = for_terminal(exc.message)
    lines = [message if isinstance(exc, Declined) else f"error: {message}"]
    lines += [f"  - {for_terminal(problem)}" for problem in exc.problems]
    if exc.hint:
        lines.append(f"hint: {for_terminal(exc.hint)}")
    sys.stderr.write("\n".join(lines) + "\n")


GLOBAL_OPTIONS = ("--values", "--actor")  # taken anywhere on the line, not only before the command


def hoist_global_options(args: list[str]) -> list[str]:
    """``mfactl org list --values F`` as ``mfactl --values F org list``: the global options,
    wherever they stand (before a ``--``), moved in front of the command."""
    front: list[str] = []
    rest: list[str] = []
    position = 0
    while position < len(args):
        argument = args[position]
        if argument == "--":
            rest += args[position:]
            break
        if argument in GLOBAL_OPTIONS and position + 1 < len(args):
            front += args[position : position + 2]
            position += 2
            continue
        if argument.startswith(tuple(f"{name}=" for name in GLOBAL_OPTIONS)):
            front.append(argument)
        else:
            rest.append(argument)
        position += 1
    return front + rest


class MfactlGroup(TyperGroup):
    """The root group: turns MfactlError into one sentence and its exit code."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        ctx.meta["mfactl.json"] = "--json" in args or "--jsonl" in args  # machine readers
        return super().parse_args(ctx, hoist_global_options(args))

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except MfactlError as exc:
            render_error(exc, as_json=bool(ctx.meta.get("mfactl.json")))
            ctx.exit(exc.exit_code)
        except typer.TyperException as exc:
            if exc.exit_code == 2 and ctx.meta.get("mfactl.json"):  # a usage error, for a script
                from mfactl.errors import UsageError

                render_error(UsageError(exc.format_message()), as_json=True)
                ctx.exit(2)
            raise
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            if os.environ.get("MFACTL_DEBUG") == "1":
                raise
            if isinstance(exc, BrokenPipeError):
                raise
            translated = from_database(exc)
            if translated is not None:
                render_error(translated, as_json=bool(ctx.meta.get("mfactl.json")))
                ctx.exit(translated.exit_code)
            unexpected(exc, as_json=bool(ctx.meta.get("mfactl.json")))
            ctx.exit(1)


def unexpected(exc: BaseException, *, as_json: bool) -> None:
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    message = f"unexpected error: {type(exc).__name__}" + (f": {first}" if first else "")
    error = MfactlError(message, hint="run again with MFACTL_DEBUG=1 for the traceback")
    render_error(error, as_json=as_json)
