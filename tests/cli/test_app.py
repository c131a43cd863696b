"""The CLI frame: start-up imports, help everywhere, version, errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command

from mfactl import __version__
from mfactl.cli.app import app as cli_app
from mfactl.cli.common import hoist_global_options
from mfactl.crypto import generate_key
from tests.cli.conftest import Mfactl, write_values
from tests.conftest import FrozenClock


def test_help_does_not_import_heavy_modules() -> None:
    code = (
        "import sys\n"
        "sys.argv = ['mfactl', '--help']\n"
        "from mfactl.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('sqlalchemy', 'cryptography', 'jinja2', 'alembic', 'yaml', 'pyotp',"
        " 'pydantic', 'starlette') if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in proc.stderr
    assert "Commands" in proc.stdout


def test_python_dash_m_and_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mfactl", "--version"], capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == f"mfactl {__version__}"


def _commands(group: object, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    out = []
    for name, command in getattr(group, "commands", {}).items():
        out.append(((*prefix, name), command))
        out.extend(_commands(command, (*prefix, name)))
    return out


def test_every_command_has_help_text() -> None:
    root = get_command(cli_app)
    commands = _commands(root)
    assert len(commands) > 8
    for path, command in commands:
        assert getattr(command, "help", None) or getattr(command, "short_help", None), path


def test_every_commands_summary_is_one_line() -> None:
    """A group's command list shows the first paragraph as written: a line break in it breaks
    the table's row."""
    for path, command in _commands(get_command(cli_app)):
        summary = (command.help or "").strip().split("\n\n")[0]
        assert "\n" not in summary, path


def test_every_command_help_ends_with_real_examples() -> None:
    """Each `--help` shows how it is used (`$ mfactl …`), and each example is one mfactl takes:
    its options exist (the example, asked for its help, parses)."""
    import shlex

    from typer.testing import CliRunner

    runner = CliRunner()
    for path, command in _commands(get_command(cli_app)):
        if hasattr(command, "commands"):  # a group: its commands show theirs
            continue
        examples = [
            line.strip()[2:]
            for line in (command.help or "").splitlines()
            if line.strip().startswith("$ mfactl")
        ]
        assert examples, f"mfactl {' '.join(path)} --help shows no example"
        for example in examples:
            words = shlex.split(example.split(" | ")[0].split(" > ")[0])[1:]
            parsed = runner.invoke(cli_app, [*words, "--help"])
            assert parsed.exit_code == 0, (example, parsed.output)


def test_flags_do_not_look_like_they_take_a_value(mfactl: Mfactl) -> None:
    result = mfactl("user", "enable", "--help")
    assert result.exit_code == 0
    line = next(line for line in result.stdout.splitlines() if "--no-confirm  " in line)
    assert "<bool>" not in result.stdout and line.split()[1:3] == ["--no-confirm", "Leave"]


def test_usage_errors_are_json_for_json_readers(mfactl: Mfactl) -> None:
    for args, message in (
        (("users", "reset", "--reason", "x", "--json"), "Missing option '--org'."),
        (("audit", "list", "--limit", "0", "--json"), "Invalid value for '--limit': "),
    ):
        result = mfactl(*args)
        assert result.exit_code == 2
        error = json.loads(result.stderr)["error"]
        assert error["code"] == "usage" and error["message"].startswith(message)


def test_an_actor_is_one_line_so_nobody_forges_audit_lines(mfactl: Mfactl) -> None:
    forged = "admin\n2026-11-22T07:00:00Z  root  user.reset  acme/bob  ok"
    for args, env, message in (
        (("--actor", forged), {}, "--actor 'admin\\n2026-11-22T07:00:00Z  root  user.reset"),
        ((), {"MFACTL_ACTOR": forged}, "MFACTL_ACTOR 'admin\\n2026"),
        (("--actor", " "), {}, "--actor is empty: name who is acting"),
        (("--actor", "root\u202e"), {}, "--actor 'root\\u202e' contains a bidirectional"),
        (("--actor", "x" * 201), {}, "--actor is longer than 200 characters"),
    ):
        result = mfactl.runner.invoke(
            cli_app,
            ["--values", str(mfactl.values), *args, "org", "add", "forged"],
            env={"NO_COLOR": "1", **env},
        )
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith(f"error: {message}")
    assert mfactl.json("audit", "list") == []


def test_odd_input_is_one_sentence_never_a_traceback(mfactl: Mfactl, tmp_path: Path) -> None:
    a_file = tmp_path / "taken"
    a_file.write_text("")
    demo = mfactl("demo", "--dir", str(a_file))
    assert (demo.exit_code, demo.stderr) == (2, f"error: --dir {a_file} is a file, not a folder\n")
    not_a_db = tmp_path / "notes.db"
    not_a_db.write_text("shopping list\n")
    other = Mfactl(write_values(tmp_path / "other.yaml", f"sqlite:///{not_a_db}", generate_key()))
    for command in (("init",), ("org", "list")):
        result = other(*command)
        assert (result.exit_code, result.stderr) == (
            5,
            f"error: database.url: sqlite:///{not_a_db} is not an SQLite database file\n",
        )
    # bytes from a Latin-1 terminal: sys.argv holds them as surrogates
    latin1 = subprocess.run(
        [
            sys.executable,
            "-m",
            "mfactl",
            "org",
            "add",
            b"caf\xe9".decode("utf-8", "surrogateescape"),
        ],
        capture_output=True,
        text=True,
    )
    assert latin1.returncode == 2
    assert latin1.stderr == "error: argument 3 ('caf\ufffd') is not valid UTF-8\n"


def test_with_json_every_line_of_stderr_is_a_json_document(tmp_path: Path, active_key: str) -> None:
    values = write_values(tmp_path / "v.yaml", f"sqlite:///{tmp_path / 'x.db'}", active_key)
    values.chmod(0o644)  # holds a key: a warning
    cli = Mfactl(values)
    cli("init")
    result = cli("user", "status", "--org", "nope", "--user", "bob", "--json")
    assert result.exit_code == 3
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert lines == [
        {
            "warning": f"{values} holds secret keys and is readable by other users; "
            f"run: chmod 600 {values}"
        },
        {"error": {"code": "not_found", "message": "organization 'nope' does not exist"}},
    ]
    plain = cli("org", "list")
    assert plain.stderr.startswith(f"warning: {values} holds secret keys")


def test_errors_are_one_sentence_on_stderr_with_the_exit_code(mfactl: Mfactl) -> None:
    result = mfactl("user", "status", "--org", "nope", "--user", "alice")
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr == "error: organization 'nope' does not exist\n"


def test_json_errors(mfactl: Mfactl) -> None:
    result = mfactl("user", "status", "--org", "nope", "--user", "alice", "--json")
    assert result.exit_code == 3
    assert json.loads(result.stderr) == {
        "error": {"code": "not_found", "message": "organization 'nope' does not exist"}
    }


def test_missing_schema_is_exit_5(tmp_path: Path, active_key: str) -> None:
    from tests.cli.conftest import write_values

    fresh = tmp_path / "fresh.db"
    values = write_values(tmp_path / "v.yaml", f"sqlite:///{fresh}", active_key)
    result = Mfactl(values)("org", "list")
    assert (result.exit_code, result.stderr) == (
        5,
        f"error: the database at sqlite:///{fresh} does not exist; "
        "run `mfactl init` to create it\n",
    )
    assert not fresh.exists()  # no stray empty database left behind a mistyped path
    fresh.touch()  # a file, but no schema in it
    result = Mfactl(values)("org", "list")
    assert result.exit_code == 5
    assert "has no mfactl schema; run `mfactl init` first" in result.stderr


def test_usage_error_is_exit_2(mfactl: Mfactl) -> None:
    assert mfactl("user", "add", "--org", "acme").exit_code == 2


def test_unexpected_errors_hide_the_traceback_unless_debugging(
    mfactl: Mfactl, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr("mfactl.services.orgs.list_orgs", boom)
    result = mfactl("org", "list")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: unexpected error: RuntimeError: kaboom\n")
    assert "Traceback" not in result.stderr
    debug = mfactl("org", "list", env={"MFACTL_DEBUG": "1"})
    assert isinstance(debug.exception, RuntimeError)


def test_broken_values_file_is_exit_5_with_paths(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("userLogin:\n  mfa:\n    digits: 9\ndatabase: {url: 'oracle://x'}\n")
    result = Mfactl(values)("org", "list")
    assert result.exit_code == 5
    assert "userLogin.mfa.digits: must be 6 or 8" in result.stderr
    assert "database.url: must start with" in result.stderr
    assert "Traceback" not in result.stderr


def test_jsonl_readers_get_json_errors_too(mfactl: Mfactl) -> None:
    result = mfactl("users", "list", "--org", "nope", "--jsonl")
    assert result.exit_code == 3
    assert json.loads(result.stderr)["error"]["code"] == "not_found"


def test_values_and_actor_are_taken_anywhere_on_the_line(
    values_file: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    monkeypatch.setattr("mfactl.bootstrap.system_clock", clock)
    runner = CliRunner()
    env = {"NO_COLOR": "1", "COLUMNS": "100"}
    added = runner.invoke(
        cli_app, ["org", "add", "acme", "--values", str(values_file), "--actor=ops"], env=env
    )
    assert added.exit_code == 0, added.output
    listed = runner.invoke(
        cli_app, ["org", "list", "--json", "--values", str(values_file)], env=env
    )
    assert [o["org"] for o in json.loads(listed.stdout)] == ["acme"]
    events = runner.invoke(
        cli_app, ["audit", "--actor", "x", "list", "--values", str(values_file), "--json"], env=env
    )
    assert [e["actor"] for e in json.loads(events.stdout)] == ["ops"]
    # after `--` an option is a value like any other
    assert hoist_global_options(["a", "--", "--values", "F"]) == ["a", "--", "--values", "F"]


def test_help_names_the_import_columns_and_verify_writes_nothing(mfactl: Mfactl) -> None:
    imports = " ".join(mfactl("user", "import", "--help").stdout.split())
    for column in ("totp_secret", "algorithm", "digits", "period"):
        assert column in imports, column
    verify = mfactl("keys", "verify", "--help").stdout
    assert "commit" not in verify and "encryption" not in verify
    assert "nothing is written" in " ".join(verify.split())


def test_completion_scripts_and_the_answers_they_ask_for(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from typer.testing import CliRunner

    for shell in ("bash", "zsh", "fish"):
        result = CliRunner().invoke(cli_app, ["completion", shell])
        assert result.exit_code == 0, result.output
        assert "_MFACTL_COMPLETE=complete_" + shell in result.stdout, shell
    # what the bash script asks mfactl, answered by the installed script
    script = Path(sys.executable).parent / "mfactl"
    env = {**os.environ, "_MFACTL_COMPLETE": "complete_bash"}
    env.update(COMP_WORDS="mfactl user st", COMP_CWORD="2")
    done = subprocess.run([str(script)], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.stdout.split() == ["status"], done.stderr
