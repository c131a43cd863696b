"""The command line: one module per command group, joined in cli/app.py.

Commands parse, call one service and render. Imports of the services (and so of SQLAlchemy,
cryptography and Jinja2) happen inside the commands, so `mfactl --help` stays fast.
"""
