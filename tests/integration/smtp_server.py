"""A real SMTP server for tests: aiosmtpd on a free loopback port, plain, STARTTLS or implicit TLS,
with optional AUTH; and a self-signed certificate made with the cryptography package."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import socket
import ssl
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, ClassVar

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mfactl test SMTP")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class _Handler:
    received: list[Received] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    # a content filter: refuses every message with this reply, "{link}" replaced by the first
    # link of its text (as filters that name the URL they blocked do)
    refuse_data: str | None = None

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        if self.refuse_data is not None:
            text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
            link = re.search(r"https?://\S+", text)
            return self.refuse_data.replace("{link}", link[0] if link else "")
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


class SmtpServer:
    """``security``: none | starttls | tls; ``users``: {login: password} turns AUTH on."""

    def __init__(
        self,
        folder: Path,
        *,
        security: str = "none",
        users: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.security = security
        self.users = users or {}
        self.port = port or free_port()
        self.handler = _Handler()
        self.cert, self.key = self_signed_cert(folder) if security != "none" else (None, None)
        self.controller: Controller | None = None

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and self.users.get(auth_data.login.decode()) == auth_data.password.decode()
        )
        return AuthResult(success=ok, handled=False)  # False: aiosmtpd answers 535

    def start(self) -> SmtpServer:
        kwargs: dict[str, Any] = {}
        if self.security != "none":
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(self.cert), str(self.key))
            if self.security == "starttls":
                kwargs.update(tls_context=context, require_starttls=True)
            else:
                kwargs["ssl_context"] = context
        if self.users:
            kwargs.update(
                authenticator=self._authenticate,
                auth_required=True,
                auth_require_tls=self.security != "none",
            )
        self.controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, ready_timeout=10, **kwargs
        )
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """email.smtp settings (as Smtp() keyword arguments) that reach this server."""
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "security": self.security,
            "timeout_seconds": 5.0,
            "ca_file": str(self.cert) if self.cert else None,
        }
        if self.users:
            login, password = next(iter(self.users.items()))
            values.update(username=login, password=password)
        values.update(overrides)
        return values


class HostileSmtpServer:
    """A raw SMTP server on a free loopback port that answers as a broken or hostile one would.

    ``replies`` maps a verb (``CONNECT`` for the greeting, ``END`` for the end of the message
    data) to the line it answers: a reply overrides the polite default, ``None`` hangs up, and
    ``""`` never answers at all (the client must time out).
    """

    _POLITE: ClassVar[dict[str, str]] = {
        "CONNECT": "220 hostile ESMTP",
        "EHLO": "250 hostile",
        "HELO": "250 hostile",
        "MAIL": "250 ok",
        "RCPT": "250 ok",
        "DATA": "354 go on",
        "END": "250 queued",
        "RSET": "250 ok",
        "NOOP": "250 ok",
        "QUIT": "221 bye",
    }

    def __init__(self, replies: dict[str, str | None]) -> None:
        self.replies = {**self._POLITE, **replies}
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.settimeout(0.05)  # closing a socket does not wake a thread in accept()
        self.port = int(self.listener.getsockname()[1])
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def start(self) -> HostileSmtpServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.listener.close()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by stop()
                return
            connection.settimeout(None)
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket, verb: str) -> bool:
        """Send the reply to ``verb``; False once the conversation is over."""
        reply = self.replies.get(verb, "502 command not implemented")
        if reply is None:
            connection.close()
            return False
        if reply == "":
            self.stopped.wait(30)  # hold the line, silent, until the test ends
            connection.close()
            return False
        connection.sendall(reply.encode("utf-8", "surrogateescape") + b"\r\n")
        return verb != "QUIT"

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            if not self._answer(connection, "CONNECT"):
                return
            lines = connection.makefile("rb")
            in_data = False
            for raw in lines:
                line = raw.rstrip(b"\r\n")
                if in_data:
                    if line == b".":
                        in_data = False
                        if not self._answer(connection, "END"):
                            return
                    continue
                verb = line.split(b" ", 1)[0].decode("ascii", "replace").upper()
                if not self._answer(connection, verb):
                    return
                in_data = verb == "DATA" and (self.replies["DATA"] or "").startswith("354")
