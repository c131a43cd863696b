"""Email: render (Jinja2), transports (smtp, file) and the outbox."""

# Why a delivery run left messages untried after Ctrl-C (here, so the CLI can recognize it
# without importing the outbox and SQLAlchemy with it).
INTERRUPTED = "interrupted (Ctrl-C)"
