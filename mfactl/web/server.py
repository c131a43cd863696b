"""Running the setup page: uvicorn, logging to stderr, a clean stop, and the mail sender.

SIGTERM (or Ctrl-C) stops accepting, lets the requests in flight finish (a few seconds at
most) and exits 0. With ``send_mail``, a background thread delivers due outbox messages with
the same claim and lease rules as `mfactl mail retry`, so two servers never send one message.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import TYPE_CHECKING

from mfactl.app import App
from mfactl.config import Server

if TYPE_CHECKING:
    from starlette.types import ASGIApp

MAIL_INTERVAL_SECONDS = 30.0
GRACE_SECONDS = 3
LOG = logging.getLogger("mfactl.web")


class MailSender(threading.Thread):
    """Deliver what is due every ``interval`` seconds until stopped."""

    def __init__(self, app: App, interval: float = MAIL_INTERVAL_SECONDS) -> None:
        super().__init__(name="mfactl-mail", daemon=True)
        self.app = app
        self.interval = interval
        self.stopping = threading.Event()
        self.round_done = threading.Event()  # set after each delivery run, for whoever watches

    def run(self) -> None:
        from mfactl.services import delivery

        while not self.stopping.is_set():
            try:
                report = delivery.deliver(self.app)
                if report.sent or report.queued or report.cancelled:
                    LOG.info(
                        "mail: %d sent, %d queued for retry, %d cancelled, %d waiting",
                        len(report.sent),
                        report.queued,
                        len(report.cancelled),
                        report.waiting,
                    )
            except Exception as exc:  # the next round tries again; the reason's type only
                LOG.error("mail: delivery run failed (%s)", type(exc).__name__)
            self.round_done.set()
            self.stopping.wait(self.interval)

    def stop(self, timeout: float = GRACE_SECONDS) -> None:
        self.stopping.set()
        self.join(timeout)


def _logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    # named loggers only: the root at INFO would turn on SQLAlchemy's statement log
    for name in ("mfactl", "uvicorn"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False


def asgi(app: App, options: Server) -> ASGIApp:
    """The application as served: behind trusted proxies, their X-Forwarded-For and -Proto
    give the client's address and scheme (https: Secure cookies); nobody else's count."""
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    from mfactl.web.site import build

    web = build(app, options.templates_dir, options.api_keys)
    if not options.trusted_proxies:
        return web
    # uvicorn's typing of ASGI apps is narrower than Starlette's; both are plain ASGI
    proxied: ASGIApp = ProxyHeadersMiddleware(web, trusted_hosts=list(options.trusted_proxies))  # type: ignore[arg-type,assignment]
    return proxied


def serve(app: App, options: Server) -> None:
    """Serve until SIGTERM or Ctrl-C; returns when stopped (for an exit status of 0)."""
    import uvicorn

    _logging()
    config = uvicorn.Config(
        asgi(app, options),
        host=options.host,
        port=options.port,
        # the proxies are asgi()'s to trust (uvicorn's own default would trust 127.0.0.1, or
        # $FORWARDED_ALLOW_IPS)
        proxy_headers=False,
        access_log=False,  # ours (security.Guard) redacts query strings and tokens
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=GRACE_SECONDS,
    )
    server = uvicorn.Server(config)
    sender = MailSender(app) if options.send_mail else None
    # uvicorn raises the stopping signal again once it has shut down; these handlers take it
    # so a requested stop ends with status 0
    previous = {sig: signal.signal(sig, _stopped) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if sender is not None:
            sender.start()
        server.run()
    except SystemExit:
        # uvicorn exits 3 when it cannot listen: here that is "unavailable", said in a sentence
        if server.started:
            raise
        raise _not_started(options) from None
    finally:
        if sender is not None:
            sender.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        raise _not_started(options)


def _stopped(signum: int, frame: object) -> None:
    LOG.info("stopped by signal %d", signum)


def _not_started(options: Server) -> Exception:
    from mfactl.errors import Unavailable

    return Unavailable(
        f"the server could not listen on {options.host}:{options.port} "
        "(in use, or not an address of this machine)"
    )
