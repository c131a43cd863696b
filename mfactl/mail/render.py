"""Render an email from its Jinja2 templates and build the MIME message (text + HTML).

Templates are looked up first in ``email.templatesDir`` (when set; the settings resolve a
relative one against the values file's folder), then in the packaged ``templates/email`` (the
``mfactl.templates`` package). Each kind of email has three files:
``<kind>.subject.txt``, ``<kind>.txt`` and ``<kind>.html``; only the HTML one is autoescaped.
Every template is rendered in the sandbox (``mfactl.templating``): a template cannot run code.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr, make_msgid, parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, TemplateNotFound, TemplateSyntaxError
from jinja2.exceptions import SecurityError

from mfactl.errors import ConfigError, InvalidInput
from mfactl.templating import sandboxed_environment

KINDS = ("reset", "enroll", "recovery_used")
PARTS = ("subject.txt", "txt", "html")  # <kind>.<part>, rendered in this order

# What each template is given, with values of the real shapes: `config check` renders every
# template with these, so a broken one is found before a reset needs it.
SAMPLE_CONTEXT: dict[str, Any] = {
    "org": "acme",
    "org_name": "Acme",
    "user": "alice",
    "name": "Alice Example",
    "link": "https://app.example.com/mfa/setup?org=acme&token=sample",
    "expires_at": "2026-11-04 09:00 UTC",
    "ttl_hours": 72,
    "issuer": "Example Platform",
    "remaining": 7,
    "used_at": "2026-11-01 09:00 UTC",
}


@lru_cache(maxsize=8)
def _environment(templates_dir: str | None) -> Environment:
    return sandboxed_environment(
        "email",
        templates_dir,
        "email.templatesDir",
        # autoescape the HTML part only: the subject and the text part are not markup
        autoescape=lambda name: bool(name and name.endswith(".html")),
    )


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def render(kind: str, context: dict[str, Any], templates_dir: str | None = None) -> Rendered:
    """The subject, text and HTML of one email; a broken template is a configuration error."""
    env = _environment(templates_dir)
    subject, text, html = (
        _render_one(env, templates_dir, f"{kind}.{part}", context) for part in PARTS
    )
    return Rendered(subject=check_header("subject", subject.strip()), text=text, html=html)


def _render_one(
    env: Environment, templates_dir: str | None, name: str, context: dict[str, Any]
) -> str:
    """One template rendered; any failure (a syntax error, an undefined name, a SecurityError
    from the sandbox, a division by zero) is a configuration error naming the template's file.
    """
    try:
        template = env.get_template(name)
    except TemplateNotFound as exc:
        raise ConfigError(f"email template {exc.name} is missing") from None
    except TemplateSyntaxError as exc:
        where = f"{exc.filename or name}, line {exc.lineno}"
        raise ConfigError(f"email template {where} cannot be read: {exc.message}") from None
    except Exception as exc:  # not UTF-8, unreadable: whatever the file holds, say which
        override = Path(templates_dir, name) if templates_dir else None
        where = str(override) if override is not None and override.exists() else name
        raise ConfigError(f"email template {where} cannot be read: {_reason(exc)}") from None
    try:
        return template.render(context)
    except SecurityError as exc:
        raise ConfigError(
            f"email template {template.filename or name} is refused by the sandbox: "
            f"{_reason(exc)}"
        ) from None
    except Exception as exc:  # the template is the administrator's code: any failure is theirs
        raise ConfigError(
            f"email template {template.filename or name} cannot be rendered: {_reason(exc)}"
        ) from None


def _reason(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(message).splitlines()[0][:300].rstrip(".")


def check_templates(templates_dir: str | None) -> list[str]:
    """Every email template rendered with sample values: why each one that fails does."""
    problems = []
    for kind in KINDS:
        try:
            render(kind, SAMPLE_CONTEXT, templates_dir)
        except (ConfigError, InvalidInput) as exc:
            problems.append(exc.message)
    return problems


def check_header(what: str, value: str) -> str:
    """Refuse a header value with a line break: it would let the value inject headers."""
    if "\r" in value or "\n" in value:
        raise InvalidInput(f"the email {what} {value[:60]!r} contains a line break; refused")
    return value


# The email package folds headers with str.splitlines(), which also breaks lines at VT, FF,
# U+001C..U+001E, NEL and U+2028/U+2029: a header holding one comes out split or not at all
_HEADER_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _sendable(what: str, value: str) -> str:
    """A header value the message can carry; one with a control character (written into the
    database past mfactl's checks) fails this message, with the reason."""
    check_header(what, value)
    if _HEADER_CONTROL.search(value):
        raise InvalidInput(
            f"the email {what} {value[:60]!r} cannot be sent: it holds a control character"
        )
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
    name, address = parseaddr(_sendable("sender", envelope.sender))
    message["From"] = formataddr((name, address), charset="utf-8") if name else address
    message["To"] = _sendable("recipient", recipient)
    message["Subject"] = _header(_sendable("subject", subject))
    message["Date"] = envelope.date
    message["Message-ID"] = envelope.message_id
    message["Auto-Submitted"] = "auto-generated"
    message.attach(_part(envelope.text, "plain"))
    message.attach(_part(envelope.html, "html"))
    return message
