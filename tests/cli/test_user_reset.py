"""`user reset`, `user send-reset-email` and their aliases, the email sent or queued."""

from __future__ import annotations

import email
import json
from email import policy
from pathlib import Path

import pytest

from tests.cli.conftest import Mfactl
from tests.integration.smtp_server import free_port


@pytest.fixture
def acme(mfactl: Mfactl) -> Mfactl:
    assert mfactl("org", "add", "acme").exit_code == 0
    for handle, admin in (("alice", ["--admin"]), ("bob", [])):
        added = mfactl(
            "user",
            "add",
            "--org",
            "acme",
            "--user",
            handle,
            "--email",
            f"{handle}@example.com",
            *admin,
        )
        assert added.exit_code == 0
    return mfactl


def eml_files(values_file: Path) -> list[Path]:
    return sorted((values_file.parent / "mail").glob("*.eml"))


def test_reset_needs_yes_without_a_terminal(acme: Mfactl, values_file: Path) -> None:
    result = acme("user", "reset", "--org", "acme", "--user", "bob", "--reason", "lost phone")
    assert result.exit_code == 2
    assert (
        result.stderr == "error: user reset needs confirmation: add --yes (no terminal to ask on)\n"
    )
    assert eml_files(values_file) == []
    assert [e["action"] for e in acme.json("audit", "list")] == ["org.add", "user.add", "user.add"]


def test_reset_json_and_the_email_file(acme: Mfactl, values_file: Path) -> None:
    document = acme.json(
        "user", "reset", "--org", "acme", "--user", "bob", "--reason", "lost phone", "--yes"
    )
    assert document == {
        "org": "acme",
        "user": "bob",
        "reset": True,
        "email": {"status": "sent", "error": None},
    }
    [path] = eml_files(values_file)
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert message["Subject"] == "Your MFA has been reset for acme"
    assert acme.json("user", "status", "--org", "acme", "--user", "bob")["open_links"] == 1
    no_mail = acme.json(
        "user",
        "reset",
        "--org",
        "acme",
        "--user",
        "bob",
        "--reason",
        "again",
        "--yes",
        "--no-email",
    )
    assert no_mail["email"] == {"status": "not_requested", "error": None}
    assert acme.json("user", "status", "--org", "acme", "--user", "bob")["open_links"] == 0


def test_reset_asks_on_a_terminal_and_warns_about_sysadmins(
    acme: Mfactl, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mfactl.cli.interact.interactive", lambda: True)
    args = ("user", "reset", "--org", "acme", "--user", "alice", "--reason", "lost phone")
    declined = acme(*args, input="n\n")
    assert declined.exit_code == 10
    assert "acme/alice is a SYSADMIN" in declined.stderr
    assert "Reset the MFA of acme/alice <alice@example.com> (MFA: none)?" in declined.stderr
    assert declined.stderr.endswith("aborted: nothing was changed\n")
    assert "error" not in declined.stderr  # the person decided: nothing went wrong
    assert "user.reset" not in [e["action"] for e in acme.json("audit", "list")]
    accepted = acme(*args, input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert "reset the MFA of acme/alice; the email was sent" in accepted.stderr
    assert acme("user", "reset", "--org", "acme", "--user", "bob", "--reason", " ").exit_code == 2


@pytest.mark.parametrize(
    ("alias", "grouped"),
    [(["reset"], ["user", "reset"]), (["send-reset-email"], ["user", "send-reset-email"])],
)
def test_aliases_behave_like_the_grouped_commands(
    acme: Mfactl, alias: list[str], grouped: list[str]
) -> None:
    extra = ["--reason", "lost phone", "--yes"] if alias == ["reset"] else []
    outputs = []
    for command in (alias, grouped):
        if alias == ["send-reset-email"]:
            acme("user", "reset", "--org", "acme", "--user", "bob", "--reason", "x", "--yes")
        result = acme(*command, "--org", "acme", "--user", "bob", *extra, "--json")
        outputs.append((result.exit_code, result.stdout, result.stderr))
    assert outputs[0] == outputs[1]
    assert outputs[0][0] == 0
    missing = [acme(*c, "--org", "acme", "--user", "zed", *extra) for c in (alias, grouped)]
    assert [(r.exit_code, r.stderr) for r in missing] == [
        (3, "error: user 'zed' does not exist in organization acme\n")
    ] * 2


def test_reset_with_the_server_down_queues_the_email_and_exits_9(acme: Mfactl) -> None:
    port = free_port()
    env = {
        "MFACTL_EMAIL_TRANSPORT": "smtp",
        "MFACTL_EMAIL_SMTP_HOST": "127.0.0.1",
        "MFACTL_EMAIL_SMTP_PORT": str(port),
        "MFACTL_EMAIL_SMTP_SECURITY": "none",
        "MFACTL_EMAIL_SMTP_TIMEOUTSECONDS": "3",
    }
    args = ("user", "reset", "--org", "acme", "--user", "bob", "--reason", "lost phone", "--yes")
    down = acme(*args, "--json", env=env)
    assert down.exit_code == 9
    result = json.loads(down.stdout)
    assert result["reset"] is True and result["email"]["status"] == "queued"
    assert f"the SMTP server 127.0.0.1:{port} is unavailable" in result["email"]["error"]
    error = json.loads(down.stderr)["error"]
    assert error["code"] == "email_queued"
    assert error["hint"] == "run `mfactl mail retry` once the mail server answers"
    assert acme.json("user", "status", "--org", "acme", "--user", "bob")["mfa"] == "none"


def test_send_reset_email_makes_a_new_link(acme: Mfactl) -> None:
    reset = ("user", "reset", "--org", "acme", "--user", "bob", "--reason", "r", "--yes")
    assert acme(*reset, "--no-email").exit_code == 0
    first = acme("send-reset-email", "--org", "acme", "--user", "bob")
    assert (first.exit_code, first.stderr) == (
        0,
        "made a new reset link for acme/bob; the email was sent\n",  # there was none before
    )
    again = acme("send-reset-email", "--org", "acme", "--user", "bob")
    assert again.stderr == (
        "made a new reset link for acme/bob (the previous one no longer works); "
        "the email was sent\n"
    )


def test_send_reset_email_to_a_user_never_reset_claims_no_reset(acme: Mfactl) -> None:
    result = acme("send-reset-email", "--org", "acme", "--user", "bob")
    assert (result.exit_code, result.stderr) == (
        4,
        "error: acme/bob was never reset, so there is no reset to send a link for\n"
        "hint: to invite them to set up MFA: mfactl user enable --org acme --user bob "
        "--send-email\n",
    )
    assert acme.json("mail", "list") == []
    invited = acme("user", "enable", "--org", "acme", "--user", "bob", "--send-email")
    assert invited.exit_code == 0  # the hint, followed literally, works


def test_demo_resets_bob_and_shows_where_the_email_is(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mfactl.cli.app import app as cli_app

    folder = tmp_path / "demo"
    result = CliRunner().invoke(cli_app, ["demo", "--dir", str(folder)], env={"NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert 'user reset --org acme --user bob --reason "lost phone" --yes' in result.stdout
    [line] = [x for x in result.stdout.splitlines() if "the email is in " in x]
    path = Path(line.split("the email is in ", 1)[1])
    assert path.parent == (folder / "mail").resolve()
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert (message["To"], message["Subject"]) == (
        "bob@example.com",
        "Your MFA has been reset for acme",
    )


def test_a_template_that_runs_code_is_refused_and_the_reset_not_made(
    acme: Mfactl, values_file: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "reset.txt").write_text("{{ cycler.__init__.__globals__.os.popen('id').read() }}")
    with values_file.open("a") as values:
        values.write(f'  templatesDir: "{folder}"\n')
    before = acme.json("audit", "list")
    result = acme("user", "reset", "--org", "acme", "--user", "bob", "--reason", "r", "--yes")
    assert result.exit_code == 5
    assert result.stderr == (
        f"error: email template {folder / 'reset.txt'} is refused by the sandbox: "
        "access to attribute '__init__' of 'type' object is unsafe\n"
    )
    assert acme.json("audit", "list") == before and eml_files(values_file) == []
    assert acme.json("mail", "list") == []
