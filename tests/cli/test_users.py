"""mfactl users list / list-status: the output contract scripts depend on, and the table."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mfactl.app import App
from mfactl.services import user_import, users
from tests.cli.conftest import Mfactl
from tests.unit.test_listing import seed

# The stable contract of README "users list": field names, in order, and their types.
CONTRACT = {
    "org": str,
    "user": str,
    "email": str,
    "name": str,
    "admin": bool,
    "mfa": str,
    "mfa_key_active": (bool, type(None)),
    "enrolled_at": (str, type(None)),
    "last_used_at": (str, type(None)),
    "locked": bool,
    "remember_tokens": int,
    "compliant": bool,
    "recovery_codes": (int, type(None)),
}
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture
def seeded(sqlite_app: App) -> App:
    seed(sqlite_app)
    return sqlite_app


def test_json_is_one_array_that_keeps_the_contract(mfactl: Mfactl, seeded: App) -> None:
    result = mfactl("users", "list", "--json")
    assert result.exit_code == 0
    assert result.stderr == ""
    rows = json.loads(result.stdout)
    assert [f"{r['org']}/{r['user']}" for r in rows] == [
        "acme/alice",
        "acme/bob",
        "acme/carol",
        "beta/dave",
        "beta/erin",
    ]
    for row in rows:
        assert list(row) == list(CONTRACT)
        for field, kind in CONTRACT.items():
            assert isinstance(row[field], kind), (field, row[field])
        assert row["mfa"] in ("active", "pending", "none")
        for field in ("enrolled_at", "last_used_at"):
            assert row[field] is None or ISO_Z.match(row[field])
    assert rows[0]["enrolled_at"] == "2026-10-01T08:30:15Z"
    assert rows[0]["remember_tokens"] == 2


def test_jsonl_is_one_object_a_line(mfactl: Mfactl, seeded: App) -> None:
    array = mfactl.json("users", "list")
    result = mfactl("users", "list", "--jsonl")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert [json.loads(line) for line in lines] == array
    assert result.stdout.endswith("}\n")


def test_csv_is_rfc_4180_with_a_header(mfactl: Mfactl, seeded: App) -> None:
    result = mfactl("users", "list", "--csv", "--org", "acme")
    assert result.exit_code == 0
    raw = result.stdout_bytes.decode()  # (.stdout turns CRLF into LF)
    assert raw.count("\r\n") == 4 and "\n" not in raw.replace("\r\n", "")  # CRLF line ends
    rows = list(csv.DictReader(io.StringIO(raw, newline="")))
    assert list(rows[0]) == list(CONTRACT)
    assert rows[0] == {
        "org": "acme",
        "user": "alice",
        "email": "alice@acme.test",
        "name": "Alice Liddell",
        "admin": "true",
        "mfa": "active",
        "mfa_key_active": "true",
        "enrolled_at": "2026-10-01T08:30:15Z",
        "last_used_at": "2026-10-31T23:59:59Z",
        "locked": "false",
        "remember_tokens": "2",
        "compliant": "true",
        "recovery_codes": "",
    }
    assert rows[2]["mfa_key_active"] == "" and rows[2]["enrolled_at"] == ""


def test_awkward_values_are_quoted_in_csv(mfactl: Mfactl, seeded: App) -> None:
    users.add_user(seeded, "acme", "zed", "zed@acme.test", name='Zed "Z", Jr.')
    result = mfactl("users", "list", "--csv", "--search", "zed")
    assert '"Zed ""Z"", Jr."' in result.stdout
    assert next(csv.DictReader(io.StringIO(result.stdout)))["name"] == 'Zed "Z", Jr.'


def test_csv_cells_never_run_as_spreadsheet_formulas(mfactl: Mfactl, seeded: App) -> None:
    formula = '=HYPERLINK("http://evil","click")'
    users.add_user(seeded, "acme", "zed", "zed@acme.test", name=formula)
    users.add_user(seeded, "acme", "zoe", "-2+3@acme.test", name="@SUM(1)")
    users.add_user(seeded, "acme", "zia", "+zia@acme.test", name="Zia - the 2nd")
    result = mfactl("users", "list", "--csv", "--search", "z")
    rows = {r["user"]: r for r in csv.DictReader(io.StringIO(result.stdout))}
    assert rows["zed"]["name"] == "'" + formula
    assert (rows["zoe"]["name"], rows["zoe"]["email"]) == ("'@SUM(1)", "'-2+3@acme.test")
    assert (rows["zia"]["name"], rows["zia"]["email"]) == ("Zia - the 2nd", "'+zia@acme.test")
    assert rows["zed"]["remember_tokens"] == "0"
    # scripts read JSON as it is
    listed = {r["user"]: r for r in mfactl.json("users", "list", "--search", "z")}
    assert (listed["zed"]["name"], listed["zoe"]["email"]) == (formula, "-2+3@acme.test")


def test_non_ascii_is_written_as_utf8(mfactl: Mfactl, seeded: App) -> None:
    users.add_user(seeded, "acme", "zoe", "zoe@acme.test", name="Zoë 山田")
    jsonl = mfactl("users", "list", "--jsonl", "--search", "zoe").stdout_bytes
    assert "Zoë 山田".encode() in jsonl
    assert json.loads(jsonl)["name"] == "Zoë 山田"
    table = mfactl("users", "list", "--search", "zoe", env={"COLUMNS": "160"}).stdout
    header, row = table.splitlines()
    assert "Zoë 山田" in row
    # 山 and 田 take two terminal cells each: the email column still lines up on screen
    assert row.index("zoe@") + 2 == header.index("EMAIL")


def test_a_search_longer_than_any_value_is_a_usage_error(mfactl: Mfactl, seeded: App) -> None:
    result = mfactl("users", "list", "--search", "a" * 50_001)
    assert result.exit_code == 2
    assert result.stderr == (
        "error: the search text is 50001 characters long; at most 320 are accepted\n"
    )
    assert mfactl("users", "list", "--search", "a" * 320).exit_code == 0


def test_a_blob_display_name_is_named_by_its_user(mfactl: Mfactl, sqlite_url: str) -> None:
    from tests.cli.test_user_mfa import damage

    mfactl("org", "add", "acme")
    for handle in ("alice", "bob"):
        mfactl("user", "add", "--org", "acme", "--user", handle, "--email", f"{handle}@ex.com")
    damage(sqlite_url, "UPDATE users SET display_name = X'01ff' WHERE handle = 'bob'")
    for output in ((), ("--json",), ("--csv",)):
        result = mfactl("users", "list", *output)
        assert result.exit_code == 5, result.output
        assert "the row of the user acme/bob is damaged: its name is bytes, not text" in (
            result.stderr
        )
    assert mfactl("users", "list", "--search", "alice").exit_code == 0


def test_an_empty_result_is_still_a_document(mfactl: Mfactl) -> None:
    empty = mfactl("users", "list", "--json")
    assert (empty.exit_code, empty.stdout) == (0, "[]\n")
    assert mfactl("users", "list", "--jsonl").stdout == ""
    header = mfactl("users", "list", "--csv").stdout_bytes
    assert header == (",".join(CONTRACT) + "\r\n").encode()
    table = mfactl("users", "list")
    assert (table.exit_code, table.stderr) == (0, "0 users\n")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--org", "beta", "--mfa", "active", "--stale-key", "--locked"], ["erin"]),
        (["--admins", "--mfa", "none"], ["dave"]),
        (["--search", "Liddell"], ["alice"]),
        (["--mfa", "pending"], ["bob"]),
        (["--noncompliant"], []),
    ],
)
def test_filters(mfactl: Mfactl, seeded: App, args: list[str], expected: list[str]) -> None:
    assert [r["user"] for r in mfactl.json("users", "list", *args)] == expected


def test_noncompliant_under_a_mandatory_policy(
    mfactl: Mfactl, seeded: App, values_file: Path
) -> None:
    with values_file.open("a") as values:
        values.write("userLogin:\n  mfa: {mandatory: true}\n")
    rows = mfactl.json("users", "list", "--noncompliant")
    assert [(r["user"], r["compliant"]) for r in rows] == [
        ("bob", False),
        ("carol", False),
        ("dave", False),
    ]


def test_list_status_is_the_same_command(mfactl: Mfactl, seeded: App) -> None:
    for args in (["--json"], ["--csv", "--org", "acme"], ["--mfa", "none"], []):
        canonical = mfactl("users", "list", *args)
        alias = mfactl("list-status", *args)
        assert (alias.exit_code, alias.stdout, alias.stderr) == (
            canonical.exit_code,
            canonical.stdout,
            canonical.stderr,
        )
    assert "Alias of `users list`" in mfactl("--help").stdout


def test_usage_errors_are_exit_2(mfactl: Mfactl, seeded: App) -> None:
    both = mfactl("users", "list", "--json", "--csv")
    assert both.exit_code == 2
    assert json.loads(both.stderr) == {
        "error": {"code": "usage", "message": "choose one of --json, --jsonl and --csv"}
    }
    assert both.stdout == ""
    assert mfactl("users", "list", "--jsonl", "--csv").exit_code == 2
    bad = mfactl("users", "list", "--mfa", "maybe")
    assert bad.exit_code == 2
    assert "'maybe' is not one of 'active', 'pending', 'none'" in bad.stderr


def test_an_unknown_organization_is_exit_3(mfactl: Mfactl, seeded: App) -> None:
    result = mfactl("users", "list", "--org", "nope", "--json")
    assert result.exit_code == 3
    assert result.stdout == ""
    assert json.loads(result.stderr) == {
        "error": {"code": "not_found", "message": "organization 'nope' does not exist"}
    }


def test_no_secret_in_any_format(mfactl: Mfactl, seeded: App) -> None:
    from sqlalchemy import select

    from mfactl.db.models import MfaSecret

    with seeded.uow() as uow:
        ciphertexts = list(uow.session.scalars(select(MfaSecret.ciphertext)))
    for args in (["--json"], ["--jsonl"], ["--csv"], []):
        output = mfactl("users", "list", *args).stdout
        assert "JBSWY3DPEHPK3PXP" not in output
        assert not any(ct in output for ct in ciphertexts)


def test_the_table_fits_80_columns(mfactl: Mfactl, seeded: App) -> None:
    result = mfactl("users", "list", env={"COLUMNS": "80"})
    assert result.exit_code == 0
    assert result.stderr == "5 users\n"
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert lines[0].split() == ["USER", "EMAIL", "MFA", "KEY", "LAST", "USED", "NOTES"]
    assert lines[1].split() == [
        "acme/alice", "alice@acme.test", "active", "active", "2026-10-31", "admin,", "2",
        "remembered",
    ]  # fmt: skip
    assert "beta/erin" in result.stdout and "stale" in result.stdout and "locked" in result.stdout


def test_a_wider_table_shows_more(mfactl: Mfactl, seeded: App) -> None:
    normal = mfactl("users", "list", env={"COLUMNS": "120"}).stdout.splitlines()
    assert normal[0].split()[:3] == ["ORG", "USER", "EMAIL"]
    assert "ENROLLED" in normal[0]
    wide = mfactl("users", "list", env={"COLUMNS": "160"}).stdout.splitlines()
    assert wide[0].split()[:3] == ["ORG", "USER", "NAME"]
    assert "Alice Liddell" in wide[1]
    assert all(line == line.rstrip() for line in wide)


def test_a_long_table_is_printed_in_aligned_chunks(
    mfactl: Mfactl, seeded: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mfactl.cli.users.TABLE_CHUNK", 2)
    lines = mfactl("users", "list", env={"COLUMNS": "120"}).stdout.splitlines()
    assert len(lines) == 6 and lines[0].startswith("ORG")  # one header, five users
    email_at = lines[0].index("EMAIL")
    mfa_at = lines[0].index("MFA")
    for line, handle in zip(lines[1:], ["alice", "bob", "carol", "dave", "erin"], strict=True):
        assert line.index(f"{handle}@") == email_at
        assert line[mfa_at:].split()[0] in ("active", "pending", "none")


# --- real processes: start-up imports and broken pipes ----------------------------------------


def _run_in_subprocess(values: Path, *args: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys\n"
        f"sys.argv = ['mfactl', '--values', {str(values)!r}, *{list(args)!r}]\n"
        "from mfactl.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    code = exit.code\n"
        "heavy = [m for m in ('cryptography', 'jinja2', 'alembic', 'pyotp', 'segno', 'pydantic')"
        " if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_users_list_json_imports_only_what_it_needs(values_file: Path, seeded: App) -> None:
    proc = _run_in_subprocess(values_file, "users", "list", "--json")
    assert proc.stderr == "HEAVY []\n"
    assert len(json.loads(proc.stdout)) == 5


@pytest.fixture
def many_users(values_file: Path, seeded: App, tmp_path: Path) -> Path:
    """Enough users that the output outgrows a pipe's buffer."""
    rows = "".join(f"user{i:04d},user{i:04d}@acme.test,User {i},no\n" for i in range(2000))
    csv_file = tmp_path / "many.csv"
    csv_file.write_text("handle,email,name,admin\n" + rows, encoding="utf-8")
    user_import.import_users(seeded, "acme", csv_file)
    return values_file


@pytest.mark.parametrize("output", ["--jsonl", "--json", "--csv", "table"])
def test_a_closed_pipe_ends_quietly(many_users: Path, output: str) -> None:
    args = [] if output == "table" else [output]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mfactl", "--values", str(many_users), "users", "list", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline()  # like `| head -n 1`: read a line, then go away
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert stderr == ""


def test_a_shell_pipe_into_head(many_users: Path) -> None:
    mfactl = f"{sys.executable} -m mfactl --values {many_users}"
    proc = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"{mfactl} users list --jsonl | head -n 2"],
        capture_output=True,
        text=True,
    )
    assert proc.stderr == ""
    assert [json.loads(line)["user"] for line in proc.stdout.splitlines()] == ["alice", "bob"]
    assert proc.returncode == 141
