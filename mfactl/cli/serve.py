"""mfactl serve: the setup page behind the emailed links."""

from __future__ import annotations

import typer

from mfactl.cli.common import get_app, info


def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(
        None, "--host", help="Address to listen on (default: server.host, 127.0.0.1)."
    ),
    port: int | None = typer.Option(
        None, "--port", min=1, max=65535, help="Port to listen on (default: server.port, 8080)."
    ),
    send_mail: bool | None = typer.Option(
        None,
        "--send-mail/--no-send-mail",
        help="Also deliver due outbox emails in the background (default: server.sendMail).",
    ),
    forwarded_allow_ips: str | None = typer.Option(
        None,
        "--forwarded-allow-ips",
        metavar="IPS",
        help="Comma-separated proxy addresses whose X-Forwarded-For/-Proto headers count "
        "(default: server.trustedProxies, none).",
    ),
) -> None:
    """Serve the setup page behind the emailed links, and the HTTP API (/api/v1).

    The setup page answers at the paths of email.links.resetUrl and enrollUrl; the HTTP API
    when server.apiKeys holds a key.

    $ mfactl serve

    $ mfactl serve --host 0.0.0.0 --port 8080 --send-mail
    """
    import dataclasses

    from mfactl.config_types import Invalid, addresses
    from mfactl.errors import InvalidInput
    from mfactl.services import schema
    from mfactl.web.server import serve as run

    app = get_app(ctx)
    server = app.settings.server
    trusted = server.trusted_proxies
    if forwarded_allow_ips is not None:
        try:
            trusted = addresses(forwarded_allow_ips)
        except Invalid as exc:
            raise InvalidInput(f"--forwarded-allow-ips: {exc}") from None
    # server.* as loaded, with what the command line gives instead
    options = dataclasses.replace(
        server,
        host=host if host is not None else server.host,
        port=port if port is not None else server.port,
        send_mail=send_mail if send_mail is not None else server.send_mail,
        trusted_proxies=trusted,
    )
    schema.require_usable(app)
    api = " and the HTTP API (/api/v1)" if options.api_keys else ""
    info(
        f"serving the setup page{api} on http://{options.host}:{options.port} "
        "(stop with Ctrl-C or SIGTERM)"
    )
    run(app, options)
