"""mfactl serve: the setup page behind the emailed links."""

from __future__ import annotations

import typer

from mfactl.cli.common import get_app, info


def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="Port to listen on."),
    send_mail: bool = typer.Option(
        False, "--send-mail", help="Also deliver due outbox emails in the background."
    ),
    forwarded_allow_ips: str = typer.Option(
        "",
        "--forwarded-allow-ips",
        metavar="IPS",
        help="Comma-separated proxy addresses whose X-Forwarded-For/-Proto headers count.",
    ),
) -> None:
    """Serve the setup page at the paths of email.links.resetUrl and enrollUrl."""
    from mfactl.services import schema
    from mfactl.web.server import ServeOptions
    from mfactl.web.server import serve as run

    app = get_app(ctx)
    schema.require_usable(app)
    options = ServeOptions(
        host=host,
        port=port,
        send_mail=send_mail,
        trusted_proxies=tuple(p.strip() for p in forwarded_allow_ips.split(",") if p.strip()),
    )
    info(f"serving the setup page on http://{host}:{port} (stop with Ctrl-C or SIGTERM)")
    run(app, options)
