"""`users reset` and `users enable --send-email`, and `user enable --send-email`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import Mfactl
from tests.conftest import FrozenClock
from tests.unit.helpers import phone_code


@pytest.fixture
def crowd(mfactl: Mfactl, tmp_path: Path) -> Mfactl:
    mfactl("org", "add", "acme")
    mfactl("org", "add", "beta")
    people = tmp_path / "people.csv"
    people.write_text(
        "handle,email,admin\n"
        + "".join(f"u{i:02d},u{i:02d}@example.com,{'yes' if i < 2 else 'no'}\n" for i in range(12))
    )
    assert mfactl("user", "import", str(people), "--org", "acme").exit_code == 0
    mfactl("user", "add", "--org", "beta", "--user", "zoe", "--email", "zoe@example.com")
    return mfactl


def mails(values_file: Path) -> list[str]:
    return sorted(p.read_text() for p in (values_file.parent / "mail").glob("*.eml"))


def test_users_reset_needs_reason_and_confirmation(crowd: Mfactl, values_file: Path) -> None:
    assert crowd("users", "reset", "--org", "acme", "--yes").exit_code == 2
    refused = crowd("users", "reset", "--org", "acme", "--reason", "breach")
    assert refused.exit_code == 2
    assert refused.stderr == (
        "error: users reset needs confirmation: add --yes (no terminal to ask on)\n"
    )
    assert crowd("users", "reset", "--org", "nope", "--reason", "x", "--yes").exit_code == 3
    assert (
        crowd(
            "users", "reset", "--org", "acme", "--mfa", "gone", "--reason", "x", "--yes"
        ).exit_code
        == 2
    )
    # bulk changes act on one organization: a forgotten --org is a usage error, not "all"
    everyone = crowd("users", "reset", "--reason", "x", "--yes")
    assert everyone.exit_code == 2 and "--org" in everyone.output
    assert crowd("users", "enable", "--send-email").exit_code == 2
    assert mails(values_file) == []


def test_users_reset_resets_the_selection_with_one_summary(
    crowd: Mfactl, values_file: Path
) -> None:
    result = crowd(
        "users", "reset", "--org", "acme", "--admins", "--reason", "breach", "--yes", "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "selected": 2,
        "changed": 2,
        "skipped": 0,
        "emails": {"sent": 2, "queued": 0, "no_address": 0, "error": None},
    }
    assert result.stderr == ""  # no terminal, no progress bar
    assert len(mails(values_file)) == 2
    resets = crowd.json("audit", "list", "--action", "user.reset")
    assert sorted(e["user"] for e in resets) == ["u00", "u01"]
    assert {e["details"]["reason"] for e in resets} == {"breach"}


def test_users_reset_asks_on_a_terminal(crowd: Mfactl, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mfactl.cli.interact.interactive", lambda: True)
    declined = crowd("users", "reset", "--org", "acme", "--reason", "breach", input="n\n")
    assert declined.exit_code == 10
    assert "Reset the MFA of 12 users in acme?" in declined.stderr
    assert "2 of them are SYSADMINS: acme/u00, acme/u01" in declined.stderr
    assert crowd.json("audit", "list", "--action", "user.reset") == []


def test_one_user_is_one_user(
    crowd: Mfactl, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = ("--org", "acme", "--search", "u01")
    with monkeypatch.context() as terminal:
        terminal.setattr("mfactl.cli.interact.interactive", lambda: True)
        declined = crowd("users", "reset", *one, "--reason", "breach", input="n\n")
        assert "Reset the MFA of 1 user in acme?" in declined.stderr
        assert "1 of them is a SYSADMIN: acme/u01" in declined.stderr
        declined = crowd("users", "enable", *one, "--send-email", input="n\n")
        assert "Mail an enrollment link to 1 user in acme?" in declined.stderr
    started = crowd.json("user", "enable", *one[:2], "--user", "u01", "--no-confirm")
    code = phone_code(started["otpauth_uri"], clock.now)
    assert crowd("user", "confirm", *one[:2], "--user", "u01", "--code", code).exit_code == 0
    invited = crowd("users", "enable", "--org", "acme", "--search", "u0", "--send-email", "--yes")
    assert invited.stderr.startswith("invited 9 users (1 already has MFA active); emails:")
    reset = crowd("users", "reset", *one, "--reason", "breach", "--yes")
    assert reset.stderr.startswith("reset the MFA of 1 user; emails: 1 sent")


def test_users_enable_mails_everyone_without_mfa(
    crowd: Mfactl, values_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert crowd("users", "enable", "--org", "acme").exit_code == 2
    crowd("user", "enable", "--org", "acme", "--user", "u03", "--no-confirm")
    invite = ("users", "enable", "--org", "acme", "--mfa", "none", "--send-email")
    unasked = crowd(*invite)  # mailing a crowd needs a yes, like a bulk reset
    assert unasked.exit_code == 2 and "add --yes" in unasked.stderr and not mails(values_file)
    with monkeypatch.context() as terminal:
        terminal.setattr("mfactl.cli.interact.interactive", lambda: True)
        declined = crowd(*invite, input="n\n")
    assert declined.exit_code == 10 and not mails(values_file)
    assert "Mail an enrollment link to 11 users in acme?" in declined.stderr
    result = crowd(*invite, "--yes", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["selected"], summary["changed"], summary["emails"]["sent"]) == (11, 11, 11)
    assert all("Subject: Set up MFA for acme" in m for m in mails(values_file))

    one = crowd("user", "enable", "--org", "acme", "--user", "u03", "--send-email", "--json")
    assert one.exit_code == 0, one.output
    assert json.loads(one.stdout) == {
        "org": "acme",
        "user": "u03",
        "state": "pending",
        "otpauth_uri": None,
        "email": {"status": "sent", "error": None},
    }
    assert "otpauth://" not in one.stdout + one.stderr
    human = crowd("enable", "--org", "acme", "--user", "u04", "--send-email")
    assert (human.exit_code, human.stdout) == (0, "")
    assert human.stderr == "made an enrollment link for acme/u04; the email was sent\n"
    both = crowd("user", "enable", "--org", "acme", "--user", "u03", "--send-email", "--code", "1")
    assert both.exit_code == 2
    qr = crowd("user", "enable", "--org", "acme", "--user", "u05", "--send-email", "--qr", "x.png")
    assert (qr.exit_code, qr.stderr) == (
        2,
        "error: --send-email cannot be used with --qr: the emailed link shows it\n",
    )
    assert not Path("x.png").exists()


def test_users_reset_with_the_server_down_queues_everything(crowd: Mfactl) -> None:
    from tests.integration.smtp_server import free_port

    env = {
        "MFACTL_EMAIL_TRANSPORT": "smtp",
        "MFACTL_EMAIL_SMTP_HOST": "127.0.0.1",
        "MFACTL_EMAIL_SMTP_PORT": str(free_port()),
        "MFACTL_EMAIL_SMTP_SECURITY": "none",
    }
    result = crowd(
        "users", "reset", "--org", "acme", "--reason", "breach", "--yes", "--json", env=env
    )
    assert result.exit_code == 9
    summary = json.loads(result.stdout)
    assert (summary["changed"], summary["emails"]["sent"], summary["emails"]["queued"]) == (
        12,
        0,
        12,
    )
    assert "is unavailable" in summary["emails"]["error"]
    assert json.loads(result.stderr)["error"]["message"].startswith(
        "12 emails could not be sent and wait in the outbox: "
    )
    assert [m["status"] for m in crowd.json("mail", "list")] == ["queued"] * 12
    tried = crowd.json("mail", "list", "--status", "failed")
    assert len(tried) == 1  # it stopped after the first
    still_down = crowd("mail", "retry", env=env)
    assert still_down.exit_code == 9
    assert "sent 0 emails; 12 wait in the outbox" in still_down.stderr


def test_progress_bar_only_on_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mfactl.cli.interact import ProgressBar

    with ProgressBar("sending setup links") as bar:
        bar.start(2)
        bar.advance(1)
    assert capsys.readouterr() == ("", "")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with ProgressBar("sending setup links") as bar:
        bar.start(2)
        bar.advance(2)
    drawn = capsys.readouterr()
    assert drawn.out == "" and "sending setup links" in drawn.err and "2/2" in drawn.err


@pytest.mark.parametrize("blank", ["", " "])
def test_an_empty_org_is_refused_not_read_as_every_organization(crowd: Mfactl, blank: str) -> None:
    for args in (
        ("users", "reset", "--org", blank, "--reason", "x", "--yes", "--no-email"),
        ("users", "enable", "--org", blank, "--send-email", "--yes"),
        ("users", "list", "--org", blank),
        ("audit", "list", "--org", blank),
        ("policy", "check", "--org", blank),
        ("keys", "migrate", "--org", blank),
    ):
        result = crowd(*args)
        assert (result.exit_code, result.stderr) == (
            2,
            "error: --org is empty: name an organization\n",
        ), args
    assert crowd.json("audit", "list", "--action", "user.reset") == []
    assert crowd.json("audit", "list", "--action", "user.enroll_email") == []
