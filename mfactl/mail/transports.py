"""Mail transports: SMTP (STARTTLS, implicit TLS or plain; optional AUTH) and files (.eml).

A transport opens a connection once and sends many messages over it. Failures are ``SendError``:
``connection=True`` when the server cannot be reached or talked to (nothing more can be sent
now), ``False`` when only this message was refused (a bad recipient).
"""

from __future__ import annotations

import os
import re
import smtplib
import socket
import ssl
import tempfile
from email.message import Message
from pathlib import Path
from types import TracebackType
from typing import Protocol

from mfactl.config import Email, Smtp

# A server's reply may quote the message (a filter naming the "blocklisted URL" it found): the
# reason is stored in the outbox and printed, so links and anything shaped like a link token
# (43 url-safe base64 characters) are cut out of it first.
_LINK = re.compile(r"[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)
_TOKENISH = re.compile(r"[A-Za-z0-9_-]{32,}")


def redact(text: str) -> str:
    return _TOKENISH.sub("[removed]", _LINK.sub("[link removed]", text))


class SendError(Exception):
    def __init__(self, reason: str, *, connection: bool) -> None:
        reason = redact(reason)[:900]
        super().__init__(reason)
        self.reason = reason
        self.connection = connection


class Connection(Protocol):
    def send(self, envelope_from: str, recipient: str, message: Message) -> None: ...

    def close(self) -> None: ...


class Transport(Protocol):
    description: str

    def connect(self) -> Connection: ...


class _Opened:
    """``with transport.connect() as conn`` for any Connection."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def __enter__(self) -> Connection:
        return self.connection

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.connection.close()


def opened(transport: Transport) -> _Opened:
    return _Opened(transport.connect())


# --- SMTP ----------------------------------------------------------------------------------------


def ssl_context(settings: Smtp) -> ssl.SSLContext:
    """Verify the server's certificate against the system CAs, or email.smtp.caFile's."""
    try:
        return ssl.create_default_context(cafile=settings.ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise SendError(
            f"email.smtp.caFile {settings.ca_file} cannot be read: {exc}", connection=True
        ) from None


def _reply(exc: smtplib.SMTPResponseException) -> str:
    text = (
        exc.smtp_error.decode("utf-8", "replace")
        if isinstance(exc.smtp_error, bytes)
        else str(exc.smtp_error)
    )
    return f"{exc.smtp_code} {' '.join(text.split())}"


class SmtpTransport:
    def __init__(self, settings: Smtp) -> None:
        self.settings = settings
        self.description = f"SMTP server {settings.host}:{settings.port} ({settings.security})"

    def connect(self) -> SmtpConnection:
        s = self.settings
        where = f"the SMTP server {s.host}:{s.port}"
        client: smtplib.SMTP | None = None
        try:
            if s.security == "tls":
                client = smtplib.SMTP_SSL(
                    s.host, s.port, timeout=s.timeout_seconds, context=ssl_context(s)
                )
            else:
                client = smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds)
            client.ehlo_or_helo_if_needed()
            if s.security == "starttls":
                client.starttls(context=ssl_context(s))
                client.ehlo()
            if s.username:
                client.login(s.username, s.password)
        except smtplib.SMTPAuthenticationError as exc:
            _quietly_close(client)
            raise SendError(
                f"{where} refused the credentials of {s.username}: {_reply(exc)}", connection=True
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            _quietly_close(client)
            raise SendError(f"{where}: {exc}", connection=True) from None
        except smtplib.SMTPResponseException as exc:
            _quietly_close(client)
            raise SendError(f"{where} answered {_reply(exc)}", connection=True) from None
        except ssl.SSLError as exc:
            _quietly_close(client)
            reason = exc.reason or exc
            raise SendError(f"TLS with {where} failed: {reason}", connection=True) from None
        except (OSError, smtplib.SMTPException) as exc:
            _quietly_close(client)
            raise SendError(f"{where} is unavailable: {_os_reason(exc)}", connection=True) from None
        return SmtpConnection(client, where)


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def _quietly_close(client: smtplib.SMTP | None) -> None:
    if client is None:
        return
    try:
        client.quit()
    except (OSError, smtplib.SMTPException):
        client.close()


class SmtpConnection:
    def __init__(self, client: smtplib.SMTP, where: str) -> None:
        self.client = client
        self.where = where

    def send(self, envelope_from: str, recipient: str, message: Message) -> None:
        try:
            self.client.send_message(message, from_addr=envelope_from, to_addrs=[recipient])
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = exc.recipients.get(recipient, (0, b""))
            reply = f"{code} {' '.join(text.decode('utf-8', 'replace').split())}"
            raise SendError(
                f"{self.where} refused the recipient {recipient}: {reply}", connection=False
            ) from None
        except smtplib.SMTPServerDisconnected as exc:
            raise SendError(f"{self.where} closed the connection: {exc}", connection=True) from None
        except smtplib.SMTPResponseException as exc:
            # 4xx/5xx for this message (sender refused, data refused): the next may pass
            raise SendError(
                f"{self.where} refused the message: {_reply(exc)}", connection=False
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise SendError(
                f"{self.where} is unavailable: {_os_reason(exc)}", connection=True
            ) from None

    def close(self) -> None:
        _quietly_close(self.client)


# --- files (.eml), for the demo and for tests that read mail -------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class FileTransport:
    """One .eml file per message, named after its Message-ID: a retry rewrites the same file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.description = f"files in {folder}"

    def connect(self) -> FileConnection:
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise SendError(
                f"cannot create the mail folder {self.folder}: {exc.strerror}", connection=True
            ) from None
        return FileConnection(self.folder)


class FileConnection:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.written: list[Path] = []

    def path_for(self, message: Message) -> Path:
        name = _UNSAFE.sub("_", str(message["Message-ID"]).strip("<>")) or "message"
        return self.folder / f"{name}.eml"

    def send(self, envelope_from: str, recipient: str, message: Message) -> None:
        target = self.path_for(message)
        try:
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".eml")
            with os.fdopen(fd, "wb") as handle:  # mkstemp makes it 0600: the body holds a link
                handle.write(message.as_bytes())
            os.replace(tmp, target)
        except OSError as exc:
            raise SendError(f"cannot write {target}: {exc.strerror}", connection=True) from None
        self.written.append(target)

    def close(self) -> None:
        return None


def make_transport(settings: Email) -> Transport:
    if settings.transport == "file":
        return FileTransport(Path(settings.file_dir).expanduser())
    return SmtpTransport(settings.smtp)
