"""`mfactl serve --send-mail`: the background sender delivers what is due, then stops."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

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
