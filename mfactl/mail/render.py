"""Render an email from its Jinja2 templates and build the MIME message (text + HTML).

Templates are looked up first in ``email.templatesDir`` (when set; the settings resolve a
relative one against the values file's folder), then in the packaged ``templates/email`` (the
``mfactl.templates`` package). Each kind of email has three files:
``<kind>.subject.txt``, ``<kind>.txt`` and ``<kind>.html``; only the HTML one is autoescaped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr, make_msgid, parseaddr
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
)

from mfactl.errors import ConfigError, InvalidInput

KINDS = ("reset", "enroll")


class _PackagedLoader(BaseLoader):
    """The templates shipped in the mfactl.templates package (works from a wheel or a checkout)."""

    def get_source(self, environment: Environment, template: str) -> tuple[str, None, Any]:
        resource = files("mfactl.templates") / "email" / template
        if not resource.is_file():
            raise TemplateNotFound(template)
        return resource.read_text(encoding="utf-8"), None, lambda: True


@lru_cache(maxsize=8)
def _environment(templates_dir: str | None) -> Environment:
    loaders: list[BaseLoader] = [_PackagedLoader()]
    if templates_dir:
        if not Path(templates_dir).is_dir():
            raise ConfigError(f"email.templatesDir: {templates_dir} is not a folder")
        loaders.insert(0, FileSystemLoader(templates_dir))
    return Environment(
        loader=ChoiceLoader(loaders),
        # autoescape the HTML part only: the subject and the text part are not markup
        autoescape=lambda name: bool(name and name.endswith(".html")),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def render(kind: str, context: dict[str, Any], templates_dir: str | None = None) -> Rendered:
    """The subject, text and HTML of one email; a broken template is a configuration error."""
    env = _environment(templates_dir)
    try:
        subject = env.get_template(f"{kind}.subject.txt").render(context).strip()
        text = env.get_template(f"{kind}.txt").render(context)
        html = env.get_template(f"{kind}.html").render(context)
    except TemplateNotFound as exc:
        raise ConfigError(f"email template {exc.name} is missing") from None
    except TemplateError as exc:
        raise ConfigError(f"the {kind} email template cannot be rendered: {exc.message}") from None
    return Rendered(subject=check_header("subject", subject), text=text, html=html)


def check_header(what: str, value: str) -> str:
    """Refuse a header value with a line break: it would let the value inject headers."""
    if "\r" in value or "\n" in value:
        raise InvalidInput(f"the email {what} {value[:60]!r} contains a line break; refused")
    return value


@dataclass(frozen=True)
class Envelope:
    """What the outbox seals: everything needed to build the same message on every attempt."""

    sender: str
    message_id: str
    date: str
    text: str
    html: str
    link_hash: str | None = None  # the stored hash of the link's token: still worth sending?
    # sealed with the body, so a recipient changed in the database afterwards is found out; None
    # in envelopes sealed before recipients were
    recipient: str | None = None
    link_token: str | None = None  # to hash the link again under the active key when it is sent

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, data: str) -> Envelope:
        return cls(**json.loads(data))


def new_envelope(
    sender: str,
    rendered: Rendered,
    now: datetime,
    idstring: str,
    link_hash: str | None = None,
    recipient: str | None = None,
    link_token: str | None = None,
) -> Envelope:
    domain = parseaddr(sender)[1].rpartition("@")[2] or "mfactl.invalid"
    return Envelope(
        sender=check_header("sender", sender),
        message_id=make_msgid(idstring=idstring, domain=domain),
        date=format_datetime(now),
        text=rendered.text,
        html=rendered.html,
        link_hash=link_hash,
        recipient=None if recipient is None else check_header("recipient", recipient),
        link_token=link_token,
    )


def _part(text: str, subtype: str) -> MIMEText:
    """7-bit when the text is ASCII (readable in a .eml), else UTF-8 quoted-printable."""
    if text.isascii():
        return MIMEText(text, subtype, "us-ascii")
    charset = Charset("utf-8")
    charset.body_encoding = QP
    return MIMEText(text, subtype, charset)  # type: ignore[arg-type]


def _header(value: str) -> str:
    """RFC 2047-encoded when not ASCII."""
    return value if value.isascii() else Header(value, "utf-8").encode()


def build_message(envelope: Envelope, recipient: str, subject: str) -> Message:
    """multipart/alternative: the plain text first, the HTML second (preferred by readers).

    Built with the compat32 classes: the modern EmailMessage API is ~10x slower, which shows
    when a bulk reset sends ten thousand messages.
    """
    message = MIMEMultipart("alternative")
    name, address = parseaddr(check_header("sender", envelope.sender))
    message["From"] = formataddr((name, address), charset="utf-8") if name else address
    message["To"] = check_header("recipient", recipient)
    message["Subject"] = _header(check_header("subject", subject))
    message["Date"] = envelope.date
    message["Message-ID"] = envelope.message_id
    message["Auto-Submitted"] = "auto-generated"
    message.attach(_part(envelope.text, "plain"))
    message.attach(_part(envelope.html, "html"))
    return message
