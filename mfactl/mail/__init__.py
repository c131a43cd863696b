"""Email without state or a database: render (Jinja2) and transports (smtp, file)."""
