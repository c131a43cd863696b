"""Email: render (Jinja2), transports (smtp, file) and the outbox."""
