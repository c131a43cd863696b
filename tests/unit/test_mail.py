"""Rendering (autoescape, header injection, overrides) and the file transport."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from mfactl.errors import ConfigError, InvalidInput
from mfactl.mail.render import (
    KINDS,
    Envelope,
    build_message,
    check_templates,
    new_envelope,
    render,
)
from mfactl.mail.transports import FileTransport, SendError

NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def context(**overrides: Any) -> dict[str, Any]:
    return {
        "org": "acme",
        "org_name": "Acme",
        "user": "alice",
        "name": "Alice",
        "link": "https://app.example.com/setup?org=acme&token=abc",
        "expires_at": "2026-11-04 09:00 UTC",
        "ttl_hours": 72,
        "issuer": "Example Platform",
        **overrides,
    }


def test_every_kind_is_packaged_with_three_parts() -> None:
    folder = files("mfactl.templates") / "email"
    for kind in KINDS:
        for part in (f"{kind}.subject.txt", f"{kind}.txt", f"{kind}.html"):
            assert (folder / part).is_file(), part
    assert render("reset", context()).subject == "Your MFA has been reset for acme"
    assert render("enroll", context()).subject == "Set up MFA for acme"


def test_html_is_autoescaped_and_text_is_not() -> None:
    rendered = render("reset", context(name="<b>Al & ice</b>"))
    assert "&lt;b&gt;Al &amp; ice&lt;/b&gt;" in rendered.html
    assert 'href="https://app.example.com/setup?org=acme&amp;token=abc"' in rendered.html
    assert "Hello <b>Al & ice</b>," in rendered.text


def test_the_message_is_multipart_alternative_with_id_and_date() -> None:
    envelope = new_envelope("Platform <no-reply@example.com>", render("reset", context()), NOW, "x")
    again = Envelope.from_json(envelope.to_json().decode())
    message = build_message(again, "alice@example.com", "Your MFA has been reset for acme")
    parsed = email.message_from_bytes(message.as_bytes(), policy=policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    assert parsed["Date"] == "Sun, 01 Nov 2026 09:00:00 +0000"
    assert parsed["Message-ID"].startswith("<") and parsed["Message-ID"].endswith("@example.com>")
    assert parsed["From"] == "Platform <no-reply@example.com>"


@pytest.mark.parametrize(
    ("recipient", "subject"),
    [("alice@example.com\r\nBcc: all@example.com", "Hi"), ("a@example.com", "Hi\nBcc: x")],
)
def test_a_line_break_in_a_recipient_or_subject_is_refused(recipient: str, subject: str) -> None:
    envelope = new_envelope("a@example.com", render("reset", context()), NOW, "x")
    with pytest.raises(InvalidInput, match="contains a line break; refused"):
        build_message(envelope, recipient, subject)


@pytest.mark.parametrize(
    "recipient",
    ["bob\x0b@example.com", "bob@example.com\x0bBcc: all@example.com", "bob\u2028@example.com"],
)
def test_a_recipient_the_email_package_would_split_is_refused(recipient: str) -> None:
    envelope = new_envelope("a@example.com", render("reset", context()), NOW, "x")
    with pytest.raises(InvalidInput, match="cannot be sent: it holds a control character"):
        build_message(envelope, recipient, "Hi")


def test_templates_dir_overrides_some_templates(tmp_path: Path) -> None:
    (tmp_path / "reset.subject.txt").write_text("Reset for {{ org }}, {{ name }}\n")
    rendered = render("reset", context(), str(tmp_path))
    assert rendered.subject == "Reset for acme, Alice"
    assert "Set up MFA again" in rendered.html  # the packaged HTML still applies
    with pytest.raises(InvalidInput, match="line break"):
        render("reset", context(name="Al\r\nBcc: x@example.com"), str(tmp_path))
    with pytest.raises(ConfigError, match="is not a folder"):
        render("reset", context(), str(tmp_path / "missing"))
    (tmp_path / "enroll.txt").write_text("{{ nope }}")
    with pytest.raises(ConfigError, match="cannot be rendered: 'nope' is undefined"):
        render("enroll", context(), str(tmp_path))


def test_file_transport_writes_one_private_eml_per_message(tmp_path: Path) -> None:
    envelope = new_envelope("a@example.com", render("reset", context()), NOW, "mfactl.7")
    message = build_message(envelope, "alice@example.com", "Subject")
    connection = FileTransport(tmp_path / "mail").connect()
    connection.send("a@example.com", "alice@example.com", message)
    connection.send("a@example.com", "alice@example.com", message)  # a retry: the same file
    [path] = (tmp_path / "mail").glob("*.eml")
    assert path.stat().st_mode & 0o077 == 0
    assert email.message_from_bytes(path.read_bytes())["To"] == "alice@example.com"
    (tmp_path / "blocked").write_text("")
    with pytest.raises(SendError) as failed:
        FileTransport(tmp_path / "blocked" / "mail").connect()
    assert failed.value.connection and "cannot create the mail folder" in failed.value.reason


def test_send_errors_never_carry_a_link_or_a_token() -> None:
    import secrets

    from mfactl.mail.transports import SendError

    token = secrets.token_urlsafe(32)
    error = SendError(
        f"mail.example.com refused the message: 554 URL https://app.example.com/s?t={token} "
        f"and token {token} blocked; see https://mail.example.com/why",
        connection=False,
    )
    assert token not in error.reason and token not in str(error)
    assert error.reason == (
        "mail.example.com refused the message: 554 URL [link removed] and token [removed] "
        "blocked; see [link removed]"
    )


def test_a_template_cannot_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "reset.txt").write_text(
        f"{{{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}}}\n"
    )
    with pytest.raises(ConfigError) as refused:
        render("reset", context(), str(tmp_path))
    assert refused.value.message == (
        f"email template {tmp_path / 'reset.txt'} is refused by the sandbox: "
        "access to attribute '__init__' of 'type' object is unsafe"
    )
    assert not marker.exists()


def test_a_template_cannot_change_what_it_is_given(tmp_path: Path) -> None:
    # the immutable sandbox: a list method that changes the list is refused too
    (tmp_path / "enroll.html").write_text("{% set seen = [] %}{{ seen.append(name) }}")
    with pytest.raises(ConfigError, match=r"enroll\.html is refused by the sandbox: "):
        render("enroll", context(), str(tmp_path))


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{{ 1 / 0 }}", "cannot be rendered: division by zero"),
        ("{{ ttl_hours + 'h' }}", "cannot be rendered: unsupported operand type(s)"),
        ("{% if %}", "cannot be read: Expected an expression, got 'end of statement block'"),
    ],
)
def test_a_template_that_does_not_render_names_its_file(
    tmp_path: Path, source: str, reason: str
) -> None:
    (tmp_path / "reset.subject.txt").write_text(source)
    with pytest.raises(ConfigError) as failed:
        render("reset", context(), str(tmp_path))
    assert failed.value.message.startswith(f"email template {tmp_path / 'reset.subject.txt'}")
    assert reason in failed.value.message


def test_a_latin_1_template_is_a_configuration_error_naming_its_file(tmp_path: Path) -> None:
    (tmp_path / "reset.txt").write_bytes("Caf\u00e9 {{ org }}".encode("latin-1"))
    with pytest.raises(ConfigError) as failed:
        render("reset", context(), str(tmp_path))
    assert failed.value.message.startswith(
        f"email template {tmp_path / 'reset.txt'} cannot be read"
    )
    assert "'utf-8' codec can't decode byte 0xe9" in failed.value.message


def test_check_templates_renders_every_template_with_sample_values(tmp_path: Path) -> None:
    assert check_templates(None) == []
    (tmp_path / "empty").mkdir()
    assert check_templates(str(tmp_path / "empty")) == []  # the packaged ones apply
    (tmp_path / "enroll.txt").write_text("{{ link.__class__ }}")
    (tmp_path / "reset.html").write_text("{{ 10 // 0 }}")
    assert check_templates(str(tmp_path)) == [
        f"email template {tmp_path / 'reset.html'} cannot be rendered: "
        "integer division or modulo by zero",
        f"email template {tmp_path / 'enroll.txt'} is refused by the sandbox: "
        "access to attribute '__class__' of 'str' object is unsafe",
    ]
