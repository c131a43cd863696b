"""`mfactl serve`: its settings and options, the templates override, and the background sender."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from mfactl.app import App
from mfactl.config import Smtp
from mfactl.services import outbox, reset
from mfactl.web.server import MailSender
from tests.conftest import FrozenClock
from tests.unit.helpers import people


def test_the_mail_sender_delivers_due_messages_with_the_outbox_rules(
    sqlite_app: App, clock: FrozenClock, tmp_path: Path
) -> None:
    app = sqlite_app
    people(app, "bob")
    nowhere = Smtp(host="127.0.0.1", port=1, security="none", timeout_seconds=1)
    app.settings = replace(app.settings, email=replace(app.settings.email, smtp=nowhere))
    assert reset.reset_user(app, "acme", "bob", "lost phone").email.status == "queued"
    mail = tmp_path / "mail"
    app.settings = replace(
        app.settings, email=replace(app.settings.email, transport="file", file_dir=str(mail))
    )
    app.__dict__.pop("mail_transport", None)
    sender = MailSender(app, interval=3600)
    sender.start()
    assert sender.round_done.wait(10)  # the first run: the message is not due yet
    assert not list(mail.glob("*.eml"))
    clock.advance(120)  # its retry is due now
    sender.round_done.clear()
    sender.stopping.set()  # wakes the sender from its wait, which ends it
    sender.join(10)
    assert not sender.is_alive()
    sender = MailSender(app, interval=3600)
    sender.start()
    assert sender.round_done.wait(10)
    sender.stop()
    assert not sender.is_alive()
    assert len(list(mail.glob("*.eml"))) == 1
    assert [row.status for row in outbox.list_messages(app)] == ["sent"]


def test_server_settings_from_the_values_file_and_the_environment(tmp_path: Path) -> None:
    import pytest

    from mfactl.config import load_settings
    from mfactl.errors import ConfigError

    (tmp_path / "pages").mkdir()
    values = tmp_path / "values.yaml"
    values.write_text(
        "server: {host: 0.0.0.0, port: 9090, sendMail: true, trustedProxies: [10.0.0.1],"
        " templatesDir: pages}\n"
    )
    server = load_settings(values, environ={}).server
    assert (server.host, server.port, server.send_mail) == ("0.0.0.0", 9090, True)
    assert server.trusted_proxies == ("10.0.0.1",)
    assert server.templates_dir == str(tmp_path / "pages")
    environ = {"MFACTL_SERVER_TRUSTEDPROXIES": "127.0.0.1, 10.0.0.0/8"}
    assert load_settings(values, environ=environ).server.trusted_proxies == (
        "127.0.0.1",
        "10.0.0.0/8",
    )
    assert load_settings(environ={}).server.trusted_proxies == ()  # nobody's by default
    values.write_text("server: {trustedProxies: [proxy.example], templatesDir: missing}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(values, environ={})
    assert caught.value.problems == [
        "server.trustedProxies: must be IP addresses or networks ('proxy.example' is not one)",
        f"server.templatesDir: folder {tmp_path / 'missing'} does not exist",
    ]


def test_templates_dir_overrides_a_page(sqlite_app: App, tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from mfactl.config import Server
    from mfactl.web.server import asgi
    from tests.web.conftest import new_link, with_links

    app = with_links(sqlite_app)
    people(app, "bob")
    (tmp_path / "link.html").write_text(
        '{% extends "base.html" %}{% block main %}<h1>Ours for {{ org_name }}</h1>'
        '<form method="post"><input type="hidden" name="csrf" value="{{ csrf }}">'
        "<button>Go</button></form>{% endblock %}"
    )
    web = asgi(app, Server(templates_dir=str(tmp_path)))
    with TestClient(web, base_url="http://testserver") as client:
        page = client.get(new_link(app))
    assert page.status_code == 200 and "<h1>Ours for Acme</h1>" in page.text
    assert "Example Platform" in page.text  # the packaged base.html still frames it


def test_serve_refuses_a_bad_forwarded_allow_ips(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mfactl.cli.app import app as cli_app

    result = CliRunner().invoke(cli_app, ["serve", "--forwarded-allow-ips", "nope"])
    assert result.exit_code == 2
    assert "--forwarded-allow-ips: must be IP addresses or networks" in result.stderr


def test_serve_runs_with_the_server_settings_and_the_options_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What it serves with is server.* itself (declared once, in config.py), each option given
    on the command line in place of its setting."""
    from typer.testing import CliRunner

    from mfactl.cli.app import app as cli_app
    from mfactl.config import Server
    from mfactl.crypto import generate_key
    from mfactl.web import server as web_server

    (tmp_path / "pages").mkdir()
    values = tmp_path / "values.yaml"
    values.write_text(
        f"database: {{url: 'sqlite:///{tmp_path / 'mfactl.db'}'}}\n"
        f"secretStore: {{activeKey: {generate_key()}}}\n"
        "server: {host: 0.0.0.0, port: 9090, trustedProxies: [10.0.0.1], templatesDir: pages}\n"
    )
    runner = CliRunner()
    assert runner.invoke(cli_app, ["--values", str(values), "init"]).exit_code == 0
    ran: list[object] = []
    monkeypatch.setattr(web_server, "serve", lambda app, options: ran.append(options))
    result = runner.invoke(cli_app, ["--values", str(values), "serve", "--port", "9191"])
    assert result.exit_code == 0, result.stderr
    assert ran == [
        Server(
            host="0.0.0.0",
            port=9191,
            send_mail=False,
            trusted_proxies=("10.0.0.1",),
            templates_dir=str(tmp_path / "pages"),
        )
    ]


def test_serve_on_a_port_in_use_is_unavailable_with_the_reason(tmp_path: Path) -> None:
    """uvicorn's own exit (3, which is "not found" here) becomes exit 7 with one sentence."""
    import socket
    import subprocess
    import sys

    from tests.web.test_browser import prepare

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        app, values = prepare(tmp_path, f"sqlite:///{tmp_path / 'web.db'}", port)
        app.close()
        command = [sys.executable, "-m", "mfactl", "--values", str(values), "serve"]
        result = subprocess.run(
            [*command, "--port", str(port)], capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 7, result.stderr
    assert (
        f"error: the server could not listen on 127.0.0.1:{port} "
        "(in use, or not an address of this machine)\n"
    ) in result.stderr


@pytest.mark.parametrize("switch", ["--send-mail", "server.sendMail"])
def test_serve_sends_the_due_mail_when_told(tmp_path: Path, switch: str) -> None:
    """`mfactl serve --send-mail`, or `server.sendMail: true`, delivers what `mail retry
    --due-only` would, with no other command run; without either, it sends nothing."""
    import time

    from sqlalchemy import update

    from mfactl.db.models import OutboxMessage
    from tests.web.test_browser import Server, free_port, prepare

    port = free_port()
    app, values = prepare(tmp_path, f"sqlite:///{tmp_path / 'web.db'}", port)
    mail = tmp_path / "mail"
    try:
        # queued by a failed send, then due
        nowhere = Smtp(host="127.0.0.1", port=1, security="none", timeout_seconds=1)
        file_settings = app.settings
        email = replace(app.settings.email, transport="smtp", smtp=nowhere)
        app.settings = replace(app.settings, email=email)
        app.__dict__.pop("mail_transport", None)
        assert reset.reset_user(app, "acme", "bob", "lost phone").email.status == "queued"
        app.settings = file_settings
        with app.uow() as uow:
            uow.session.execute(update(OutboxMessage).values(next_attempt_at=app.now()))
            uow.commit()

        quiet = Server(values, port, tmp_path / "quiet.log")  # neither: nothing is sent
        assert quiet.stop() == 0 and not list(mail.glob("*.eml"))
        options = ["--send-mail"] if switch == "--send-mail" else []
        if switch == "server.sendMail":
            values.write_text(values.read_text() + "server: {sendMail: true}\n")
        server = Server(values, port, tmp_path / "serve.log", *options)
        try:
            deadline = time.monotonic() + 30
            while not list(mail.glob("*.eml")):
                assert time.monotonic() < deadline, server.log.read_text()
                time.sleep(0.1)
        finally:
            assert server.stop() == 0
        assert [row.status for row in outbox.list_messages(app)] == ["sent"]
        assert "mail: 1 sent" in server.log.read_text()
    finally:
        app.close()
