"""Hostile and careless input, one case a row: each must end with its documented exit code, one
sentence on stderr (no traceback, nothing "unexpected"), and every stored row as it was.

The cases run the real command line (CliRunner) on a copy of one seeded SQLite database:
command-line options of every group, values.yaml, CSV import files, rows corrupted in the
database behind mfactl's back, and SMTP servers that answer badly or not at all.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from mfactl.crypto import generate_key
from mfactl.services import orgs, remember, users
from tests.bad_input_helpers import Dump, columns, dump, one_sentence
from tests.cli.conftest import Mfactl, write_values
from tests.conftest import FrozenClock, make_app
from tests.integration.smtp_server import HostileSmtpServer
from tests.unit.helpers import enrolled, queued

KEY = generate_key()
OTHER_KEY = generate_key()


@dataclass(frozen=True)
class Case:
    """One bad input: the command line (``{tmp}`` is the case's folder), what to set up before
    it, and the exit code it must end with."""

    id: str
    args: tuple[str, ...]
    code: int
    values: str | None = None  # the whole values.yaml ({db}, {key}, {tmp} filled in)
    extra: str = ""  # YAML appended to the working values.yaml
    files: dict[str, str | bytes] = field(default_factory=dict)  # written into {tmp}
    sql: tuple[str, ...] = ()  # run on the database first: rows corrupted behind mfactl's back
    says: str = ""  # a piece of the error sentence
    status: tuple[str, ...] = ()  # the status lines the command prints before its error


# --- command-line options ------------------------------------------------------------------------

BAD_TEXT = {
    "escape": "a\x1b]0;owned\x07b",
    "newline": "a\nb",
    "tab": "a\tb",
    "delete": "a\x7fb",
    "c1": "a\x85b",
    "csi-c1": "a\x9bb",
    "bidi-override": "a\u202eb",
    "bidi-isolate": "a\u2066b",
    "rlm": "a\u200fb",
    "empty": "",
    "blank": "   ",
    "long": "x" * 5000,
}


def _text_cases() -> Iterator[Case]:
    for kind, bad in BAD_TEXT.items():
        if bad.strip():  # an empty name is no name: the slug or handle stands in
            yield Case(f"org-add-name-{kind}", ("org", "add", "newco", "--name", bad), 2)
            yield Case(
                f"user-add-name-{kind}",
                (
                    "user",
                    "add",
                    "--org",
                    "acme",
                    "--user",
                    "zed",
                    "--email",
                    "z@example.com",
                    "--name",
                    bad,
                ),
                2,
            )
        yield Case(
            f"user-reset-reason-{kind}",
            (
                "user",
                "reset",
                "--org",
                "acme",
                "--user",
                "alice",
                "--reason",
                bad,
                "--yes",
                "--no-email",
            ),
            2,
        )
        yield Case(
            f"users-reset-reason-{kind}",
            ("users", "reset", "--org", "acme", "--reason", bad, "--yes", "--no-email"),
            2,
        )
        yield Case(
            f"user-add-email-{kind}",
            ("user", "add", "--org", "acme", "--user", "zed", "--email", bad),
            2,
        )
        yield Case(
            f"user-add-handle-{kind}",
            ("user", "add", "--org", "acme", "--user", bad, "--email", "z@example.com"),
            2,
        )
        yield Case(f"org-add-slug-{kind}", ("org", "add", bad), 2)
        # a lookup finds nothing (3); only an --org that names nothing at all is a usage error
        yield Case(
            f"user-status-org-{kind}",
            ("user", "status", "--org", bad, "--user", "alice"),
            3 if bad.strip() else 2,
        )
        yield Case(
            f"user-status-user-{kind}", ("user", "status", "--org", "acme", "--user", bad), 3
        )


OPTION_CASES = [
    *(
        Case(f"audit-since-{name}", ("audit", "list", "--since", value), 2, says="--since")
        for name, value in {
            "word": "yesterday",
            "negative": "-5d",
            "unit": "24x",
            "month-13": "2026-13-01",
            "day-32": "2026-01-32",
            "huge-span": "99999999999999999999d",
            "float-span": "1.5h",
            "escape": "\x1b[2J",
            "spaces": "7 d",
        }.items()
    ),
    *(
        Case(f"audit-limit-{name}", ("audit", "list", "--limit", value), 2, says="--limit")
        for name, value in {
            "zero": "0",
            "negative": "-1",
            "word": "ten",
            "empty": "",
            "float": "1.5",
            "huge": "99999999999999999999999",
        }.items()
    ),
    *(
        Case(f"mail-status-{name}", ("mail", "list", "--status", value), 2, says="--status")
        for name, value in {"word": "bogus", "empty": "", "escape": "sent\x1b[2J"}.items()
    ),
    *(
        Case(f"users-mfa-{name}", ("users", "list", "--mfa", value), 2, says="--mfa")
        for name, value in {"word": "maybe", "empty": ""}.items()
    ),
    *(
        Case(f"keys-{command}-{option}-{value or 'empty'}", ("keys", command, option, value), 2)
        for command in ("migrate", "verify")
        for option in ("--batch-size", "--workers")
        for value in ("0", "-3", "many", "")
    ),
    *(
        Case(
            f"enable-qr-{name}",
            ("user", "enable", "--org", "acme", "--user", "bob", "--no-confirm", "--qr", target),
            2,
        )
        for name, target in {
            "word": "bogus",
            "gif": "{tmp}/qr.gif",
            "no-folder": "{tmp}/missing/qr.png",
            "folder": "{tmp}/",
        }.items()
    ),
    Case(
        "enable-code-and-no-confirm",
        ("user", "enable", "--org", "acme", "--user", "bob", "--code", "123456", "--no-confirm"),
        2,
    ),
    Case(
        "enable-send-email-and-qr",
        ("user", "enable", "--org", "acme", "--user", "bob", "--send-email", "--qr", "none"),
        2,
    ),
    Case("mail-retry-due-only-and-all", ("mail", "retry", "--due-only", "--all"), 2),
    Case("users-list-json-and-csv", ("users", "list", "--json", "--csv"), 2),
    Case("users-list-json-and-jsonl", ("users", "list", "--json", "--jsonl"), 2),
    Case("users-reset-without-yes", ("users", "reset", "--org", "acme", "--reason", "r"), 2),
    Case("user-reset-no-reason", ("user", "reset", "--org", "acme", "--user", "alice", "--yes"), 2),
    Case("user-add-no-email", ("user", "add", "--org", "acme", "--user", "zed"), 2),
    Case(
        "user-remember-revoke-id-zero",
        ("user", "remember", "revoke", "--org", "acme", "--user", "alice", "--id", "0"),
        3,
    ),
    Case(
        "user-remember-revoke-id-word",
        ("user", "remember", "revoke", "--org", "acme", "--user", "alice", "--id", "x"),
        2,
    ),
    Case(
        "user-confirm-not-pending",
        ("user", "confirm", "--org", "acme", "--user", "bob", "--code", "123456"),
        4,
    ),
    Case(
        "user-enable-already-active",
        ("user", "enable", "--org", "acme", "--user", "alice", "--no-confirm"),
        4,
    ),
    Case("org-add-existing", ("org", "add", "acme"), 4),
    Case(
        "user-add-existing",
        ("user", "add", "--org", "acme", "--user", "alice", "--email", "a2@example.com"),
        4,
    ),
    Case("user-status-unknown-org", ("user", "status", "--org", "nowhere", "--user", "alice"), 3),
    Case("users-list-unknown-org", ("users", "list", "--org", "nowhere"), 3),
    Case("policy-check-unknown-org", ("policy", "check", "--org", "nowhere"), 3),
    Case("keys-migrate-unknown-org", ("keys", "migrate", "--org", "nowhere"), 3),
    Case("users-list-empty-org", ("users", "list", "--org", ""), 2),
    Case("audit-list-empty-org", ("audit", "list", "--org", ""), 2),
    Case("values-missing-file", ("--values", "{tmp}/missing.yaml", "org", "list"), 5),
    Case("values-a-folder", ("--values", "{tmp}", "org", "list"), 5),
    Case("actor-escape", ("--actor", "root\x1b[2J", "org", "add", "newco"), 2),
    *(
        Case(f"unknown-subcommand-{'-'.join(group) or 'top'}", (*group, "frobnicate"), 2)
        for group in (
            (),
            ("user",),
            ("users",),
            ("keys",),
            ("mail",),
            ("audit",),
            ("policy",),
            ("org",),
            ("config",),
            ("user", "remember"),
        )
    ),
    Case("unknown-option", ("org", "list", "--frobnicate"), 2),
]


# --- values.yaml ---------------------------------------------------------------------------------


def _setting(path: str, value: str) -> str:
    """YAML that sets one dotted path to a value written as YAML."""
    parts = path.split(".")
    text = ""
    for depth, part in enumerate(parts[:-1]):
        text += "  " * depth + f"{part}:\n"
    return text + "  " * (len(parts) - 1) + f"{parts[-1]}: {value}\n"


BASE = (
    'database: {url: "{db}"}\n'
    'secretStore: {activeKey: "{key}"}\n'
    'email: {transport: file, fileDir: "{tmp}/mail"}\n'
)

VALUES_SETTINGS = {
    "digits-word": ("userLogin.mfa.digits", "six"),
    "digits-7": ("userLogin.mfa.digits", "7"),
    "digits-list": ("userLogin.mfa.digits", "[6, 8]"),
    "period-5": ("userLogin.mfa.period", "5"),
    "period-121": ("userLogin.mfa.period", "121"),
    "period-float": ("userLogin.mfa.period", "30.5"),
    "window-negative": ("userLogin.mfa.validWindow", "-1"),
    "window-11": ("userLogin.mfa.validWindow", "11"),
    "enabled-maybe": ("userLogin.mfa.enabled", "maybe"),
    "enabled-number": ("userLogin.mfa.enabled", "2"),
    "algorithm-md5": ("userLogin.mfa.algorithm", "MD5"),
    "issuer-empty": ("userLogin.mfa.issuer", '""'),
    "issuer-long": ("userLogin.mfa.issuer", "x" * 101),
    "issuer-mapping": ("userLogin.mfa.issuer", "{a: 1}"),
    "remember-days-0": ("userLogin.rememberMe.days", "0"),
    "remember-days-huge": ("userLogin.rememberMe.days", "99999"),
    "base-delay-negative": ("userLogin.mfa.throttle.baseDelaySeconds", "-1"),
    "lock-0": ("userLogin.mfa.throttle.lockAfterFailures", "0"),
    "lock-101": ("userLogin.mfa.throttle.lockAfterFailures", "101"),
    "per-day-0": ("userLogin.mfa.throttle.maxFailuresPerDay", "0"),
    "recovery-count-word": ("userLogin.mfa.recoveryCodes.count", "ten"),
    "mfa-a-list": ("userLogin.mfa", "[1, 2]"),
    "user-login-a-number": ("userLogin", "5"),
    "smtp-port-0": ("email.smtp.port", "0"),
    "smtp-port-70000": ("email.smtp.port", "70000"),
    "smtp-port-word": ("email.smtp.port", "smtp"),
    "smtp-timeout-0": ("email.smtp.timeoutSeconds", "0"),
    "smtp-security-ssl": ("email.smtp.security", "ssl"),
    "smtp-host-empty": ("email.smtp.host", '""'),
    "ttl-0": ("email.links.ttlHours", "0"),
    "reset-url-ftp": ("email.links.resetUrl", '"ftp://example.com/?t={token}"'),
    "reset-url-words": ("email.links.resetUrl", '"not a url"'),
    "reset-url-no-token": ("email.links.resetUrl", '"https://example.com/setup?org={org}"'),
    "reset-url-javascript": ("email.links.resetUrl", '"javascript:alert(1)//{token}"'),
    "enroll-url-bad-field": ("email.links.enrollUrl", '"https://example.com/?t={tokn}"'),
    "from-no-address": ("email.from", '"Example Platform"'),
    "from-header-injection": ("email.from", '"a@example.com\\nBcc: x@example.net"'),
    "from-empty": ("email.from", '""'),
    "from-escape": ("email.from", '"\\e]0;owned\\a <a@example.com>"'),
    "server-port-0": ("server.port", "0"),
    "server-proxies-word": ("server.trustedProxies", '["not-an-address"]'),
    "unknown-top": ("bogus", "1"),
    "unknown-leaf": ("userLogin.mfa.digts", "6"),
    "unknown-smtp": ("email.smtp.hots", "mail.example.com"),
    "rolling-bad": ("secretStore.rollingKey", '"not-a-key"'),
    "rolling-same": ("secretStore.rollingKey", '"{key}"'),
    "key-file-missing": ("secretStore.activeKeyFile", '"{tmp}/missing.key"'),
}


def _values_cases() -> Iterator[Case]:
    for name, (path, value) in VALUES_SETTINGS.items():
        if path.startswith("email."):  # the working file has an email: line; write it whole
            text = 'database: {url: "{db}"}\nsecretStore: {activeKey: "{key}"}\n'
            yield Case(f"values-{name}", ("org", "list"), 5, values=text + _setting(path, value))
        else:
            yield Case(f"values-{name}", ("org", "list"), 5, extra=_setting(path, value))
    for name, text in {
        "broken-flow": "database: {url: [\n",
        "broken-quote": "database:\n  url: 'sqlite:///x.db\n",
        "tab-indent": "database:\n\turl: x\n",
        "colon-soup": ": : :\n",
        "a-list": "- database\n- email\n",
        "a-number": "42\n",
        "a-string": "just some words\n",
        "duplicate-anchor-alias": "a: *nowhere\n",
        "python-tag": "database: !!python/object/apply:os.system ['id']\n",
        "binary": "\x00\x01\x02",
    }.items():
        yield Case(f"values-yaml-{name}", ("org", "list"), 5, values=text)
    for name, encoded in {
        "utf16": "database: {url: 'sqlite:///x.db'}\n".encode("utf-16"),
        "latin1": "userLogin: {mfa: {issuer: 'Société'}}\n".encode("latin-1"),
        "nul": b"database:\x00 {}\n",
    }.items():
        yield Case(f"values-yaml-{name}", ("org", "list"), 5, files={"values.yaml": encoded})
    for name, key in {
        "word": "not-a-key",
        "short": "AAAA",
        "16-bytes": "AAAAAAAAAAAAAAAAAAAAAA==",
        "two-keys": "{key} {key}",
        "trailing-junk": "{key}!",
        "escape": "\\e[2J",
    }.items():
        yield Case(
            f"values-active-key-{name}",
            ("org", "list"),
            5,
            values=BASE.replace('activeKey: "{key}"', f'activeKey: "{key}"'),
        )
    yield Case(
        "values-key-as-mapping-key",
        ("org", "list"),
        5,
        values=(
            'database: {url: "{db}"}\n'
            'secretStore:\n  activeKey: "{key}"\n  "{key}": 1\n'
            'email: {transport: file, fileDir: "{tmp}/mail"}\n'
        ),
        says="1 problem with the settings",
    )
    for name, url in {
        "empty": "",
        "unknown-dialect": "nosuch://x",
        "no-folder": "sqlite:///{tmp}/missing/m.db",
        "unknown-driver": "mysql+nosuchdriver://u@127.0.0.1/x",
        "words": "a database please",
    }.items():
        yield Case(
            f"values-database-{name}",
            ("org", "list"),
            5,
            values=BASE.replace('url: "{db}"', f'url: "{url}"'),
        )
    yield Case(
        "values-database-refused",
        ("org", "list"),
        7,
        values=BASE.replace('url: "{db}"', 'url: "postgresql+psycopg://u@127.0.0.1:1/x"'),
    )


# --- CSV import files ----------------------------------------------------------------------------

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"

CSV_FILES: dict[str, str | bytes] = {
    "empty": "",
    "no-email-column": "handle,name\nzed,Zed\n",
    "no-handle-column": "email,name\nz@example.com,Zed\n",
    "unknown-column": "handle,email,shoe_size\nzed,z@example.com,44\n",
    "column-twice": "handle,email,email\nzed,z@example.com,z@example.com\n",
    "blank-header": "handle,,email\nzed,,z@example.com\n",
    "bad-handle": "handle,email\nZed Zed,z@example.com\n",
    "bad-email": "handle,email\nzed,not-an-address\n",
    "email-line-break": 'handle,email\nzed,"z@example.com\nBcc: x@example.net"\n',
    "duplicate-handle": "handle,email\nzed,z@example.com\nzed,z2@example.com\n",
    "existing-handle": "handle,email\nalice,a2@example.com\n",
    "admin-maybe": "handle,email,admin\nzed,z@example.com,maybe\n",
    "name-escape": "handle,email,name\nzed,z@example.com,\x1b]0;owned\x07\n",
    "name-bidi": "handle,email,name\nzed,z@example.com,a\u202eb\n",
    "name-c1": "handle,email,name\nzed,z@example.com,a\x85b\n",
    "too-many-fields": "handle,email\nzed,z@example.com,extra\n",
    "too-few-fields": "handle,email\nzed\n",
    "unclosed-quote": 'handle,email\nzed,"z@example.com\n',
    "secret-not-base32": f"handle,email,totp_secret\nzed,z@example.com,{'!' * 32}\n",
    "secret-short": "handle,email,totp_secret\nzed,z@example.com,JBSWY3DP\n",
    "algorithm-md5": f"handle,email,totp_secret,algorithm\nzed,z@example.com,{SECRET},MD5\n",
    "digits-7": f"handle,email,totp_secret,digits\nzed,z@example.com,{SECRET},7\n",
    "digits-word": f"handle,email,totp_secret,digits\nzed,z@example.com,{SECRET},six\n",
    "period-5": f"handle,email,totp_secret,period\nzed,z@example.com,{SECRET},5\n",
    "period-121": f"handle,email,totp_secret,period\nzed,z@example.com,{SECRET},121\n",
    "period-negative": f"handle,email,totp_secret,period\nzed,z@example.com,{SECRET},-30\n",
    "algorithm-without-secret": "handle,email,algorithm\nzed,z@example.com,SHA256\n",
    "one-bad-row-of-two": "handle,email\nzed,z@example.com\nyan,nope\n",
    "utf16": "handle,email\nzed,z@example.com\n".encode("utf-16"),
    "latin1": "handle,email,name\nzed,z@example.com,Zoë\n".encode("latin-1"),
    "nul-byte": b"handle,email\nzed,z@exa\x00mple.com\n",
}


def _csv_cases() -> Iterator[Case]:
    for name, content in CSV_FILES.items():
        yield Case(
            f"csv-{name}",
            ("user", "import", "{tmp}/users.csv", "--org", "acme"),
            2,
            files={"users.csv": content},
        )
    yield Case("csv-missing-file", ("user", "import", "{tmp}/missing.csv", "--org", "acme"), 2)
    yield Case("csv-a-folder", ("user", "import", "{tmp}", "--org", "acme"), 2)
    yield Case(
        "csv-unknown-org",
        ("user", "import", "{tmp}/users.csv", "--org", "nowhere"),
        3,
        files={"users.csv": "handle,email\nzed,z@example.com\n"},
    )


# --- rows corrupted behind mfactl's back ---------------------------------------------------------

ALICE = "(SELECT id FROM users WHERE handle = 'alice')"
BOB = "(SELECT id FROM users WHERE handle = 'bob')"
FOREIGN = Fernet(OTHER_KEY.encode()).encrypt(b"anything").decode()


def _row_cases() -> Iterator[Case]:
    verify_alice = ("user", "verify", "--org", "acme", "--user", "alice", "--code", "123456")
    for name, statement in {
        "ciphertext-garbage": (
            f"UPDATE mfa_secrets SET ciphertext = 'garbage' WHERE user_id = {ALICE}"
        ),
        "ciphertext-empty": f"UPDATE mfa_secrets SET ciphertext = '' WHERE user_id = {ALICE}",
        "ciphertext-other-key": (
            f"UPDATE mfa_secrets SET ciphertext = '{FOREIGN}' WHERE user_id = {ALICE}"
        ),
    }.items():
        yield Case(f"row-{name}-verify", verify_alice, 6, sql=(statement,))
        yield Case(
            f"row-{name}-keys-verify",
            ("keys", "verify"),
            6,
            sql=(statement,),
            status=("checked 1 secret and 1 outbox body",),
            says="cannot be opened",
        )
    unknown_key = "key_id = '000000000000'"  # a key no setting names
    for name, statement in {
        "garbage": f"UPDATE mfa_secrets SET ciphertext = 'garbage', {unknown_key}",
        "other-key": f"UPDATE mfa_secrets SET ciphertext = '{FOREIGN}', {unknown_key}",
    }.items():
        for json_ in ((), ("--json",)):
            yield Case(
                f"row-{name}-unknown-key-id-migrate{''.join(json_)}",
                ("keys", "migrate", *json_),
                6,
                sql=(statement,),
                says="not configured",
            )
    # the campaign's damaged rows: each names its user, 6 for a secret and 5 otherwise
    status_alice = ("user", "status", "--org", "acme", "--user", "alice")
    for name, (statement, args, code) in {
        "period-0": (f"UPDATE mfa_secrets SET period = 0 WHERE user_id = {ALICE}", verify_alice, 6),
        "period-negative": (
            f"UPDATE mfa_secrets SET period = -30 WHERE user_id = {ALICE}",
            verify_alice,
            6,
        ),
        "algorithm-md5": (
            f"UPDATE mfa_secrets SET algorithm = 'MD5' WHERE user_id = {ALICE}",
            verify_alice,
            6,
        ),
        "last-failed-at-text": (
            f"UPDATE mfa_secrets SET last_failed_at = 'soon' WHERE user_id = {ALICE}",
            verify_alice,
            6,
        ),
        "failed-attempts-text": (
            f"UPDATE mfa_secrets SET failed_attempts = 'abc' WHERE user_id = {ALICE}",
            verify_alice,
            6,
        ),
        "last-used-step-text": (
            f"UPDATE mfa_secrets SET last_used_step = 'abc' WHERE user_id = {ALICE}",
            verify_alice,
            6,
        ),
        "ciphertext-blob": (
            f"UPDATE mfa_secrets SET ciphertext = X'00ff' WHERE user_id = {ALICE}",
            verify_alice,
            6,
        ),
        "uid-blob": ("UPDATE users SET uid = X'00ff' WHERE handle = 'alice'", verify_alice, 6),
        "uid-non-ascii": (
            "UPDATE users SET uid = 'caf\u00e9' WHERE handle = 'alice'",
            verify_alice,
            6,
        ),
        "created-at-text": (
            "UPDATE users SET created_at = 'yesterday' WHERE handle = 'alice'",
            status_alice,
            5,
        ),
        "name-blob-users-list": (
            "UPDATE users SET display_name = X'00ff' WHERE handle = 'alice'",
            ("users", "list"),
            5,
        ),
        "name-blob-user-status": (
            "UPDATE users SET display_name = X'00ff' WHERE handle = 'alice'",
            status_alice,
            5,
        ),
        "name-blob-user-status--json": (
            "UPDATE users SET display_name = X'00ff' WHERE handle = 'alice'",
            (*status_alice, "--json"),
            5,
        ),
        "email-blob-user-status": (
            "UPDATE users SET email = X'00ff' WHERE handle = 'alice'",
            status_alice,
            5,
        ),
        "audit-details-not-json": (
            "UPDATE audit_events SET details = '{not json' WHERE id = 1",
            ("audit", "list"),
            5,
        ),
    }.items():
        # a damaged audit event is named by its id; every other row by its user
        says = "id 1" if name.startswith("audit") else "acme/alice"
        yield Case(f"row-{name}", args, code, sql=(statement,), says=says)
    yield Case(
        "row-ciphertext-garbage-verify--json",
        (*verify_alice, "--json"),
        6,
        sql=(f"UPDATE mfa_secrets SET ciphertext = 'garbage' WHERE user_id = {ALICE}",),
    )
    yield Case(
        "row-ciphertext-truncated-verify",
        verify_alice,
        6,
        sql=(
            "UPDATE mfa_secrets SET ciphertext = substr(ciphertext, 1, 30) "
            f"WHERE user_id = {ALICE}",
        ),
    )
    new_uid = "UPDATE users SET uid = '00000000-0000-0000-0000-000000000000' WHERE handle = 'alice'"
    yield Case("row-uid-changed-verify", verify_alice, 6, sql=(new_uid,), says="bound to another")
    yield Case(
        "row-uid-changed-keys-verify",
        ("keys", "verify"),
        6,
        sql=(new_uid,),
        status=("checked 1 secret and 1 outbox body",),
    )
    yield Case(
        "row-secret-moved-to-another-user",
        ("user", "verify", "--org", "acme", "--user", "bob", "--code", "123456"),
        6,
        sql=(f"UPDATE mfa_secrets SET user_id = {BOB}",),
        says="bound to another",
    )
    yield Case(
        "row-outbox-body-garbage-keys-verify",
        ("keys", "verify"),
        6,
        sql=("UPDATE outbox SET body_ciphertext = 'garbage'",),
        status=("checked 1 secret and 1 outbox body",),
        says="cannot be opened",
    )
    yield Case(
        "row-pending-ciphertext-of-another-user",
        ("user", "confirm", "--org", "acme", "--user", "bob", "--code", "123456"),
        6,
        sql=(
            "INSERT INTO mfa_secrets (user_id, state, ciphertext, key_id, algorithm, digits, "
            "period, created_at, last_used_step, failed_attempts, locked) "
            f"SELECT {BOB}, 'pending', ciphertext, key_id, algorithm, digits, period, created_at, "
            f"last_used_step, 0, 0 FROM mfa_secrets WHERE user_id = {ALICE}",
        ),
    )
    yield Case(
        "row-ciphertext-of-another-user",
        ("user", "verify", "--org", "acme", "--user", "bob", "--code", "123456"),
        6,
        sql=(
            "INSERT INTO mfa_secrets (user_id, state, ciphertext, key_id, algorithm, digits, "
            "period, created_at, confirmed_at, last_used_step, failed_attempts, locked) "
            f"SELECT {BOB}, state, ciphertext, key_id, algorithm, digits, period, created_at, "
            f"confirmed_at, last_used_step, 0, 0 FROM mfa_secrets WHERE user_id = {ALICE}",
        ),
    )


# --- SMTP servers that answer badly --------------------------------------------------------------

OWNED = "\x1b]0;owned\x07\x1b[2J"
# what a terminal would act on: C0 (but the line break), DEL, C1 and the bidi controls
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
SMTP_CASES: dict[str, tuple[dict[str, str | None], int]] = {
    "greeting-554-escapes": ({"CONNECT": f"554 go away {OWNED}"}, 7),
    "greeting-drops": ({"CONNECT": None}, 7),
    "greeting-never": ({"CONNECT": ""}, 7),
    "greeting-garbage": ({"CONNECT": f"hello {OWNED}"}, 7),
    "ehlo-550-escapes": ({"EHLO": f"550 no {OWNED}", "HELO": f"550 no {OWNED}"}, 7),
    "ehlo-drops": ({"EHLO": None}, 7),
    "ehlo-never": ({"EHLO": ""}, 7),
}
RETRY_CASES: dict[str, dict[str, str | None]] = {
    "rcpt-550-escapes": {"RCPT": f"550 5.1.1 nobody {OWNED}"},
    "data-554-escapes": {"END": f"554 5.7.1 spam {OWNED}"},
    "mail-drops": {"MAIL": None},
    "data-never": {"DATA": ""},
    "greeting-421-bidi": {"CONNECT": "421 busy \u202egnissap\u202c \x85"},
}


def _smtp_values(port: int) -> str:
    return (
        'database: {url: "{db}"}\nsecretStore: {activeKey: "{key}"}\n'
        "email:\n  transport: smtp\n"
        f"  smtp: {{host: 127.0.0.1, port: {port}, security: none, timeoutSeconds: 0.5}}\n"
    )


CASES = [
    *_text_cases(),
    *OPTION_CASES,
    *_values_cases(),
    *_csv_cases(),
    *_row_cases(),
]


# --- running a case ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One database for every case: acme with alice (MFA active, a remember-me token), bob (a
    sysadmin without MFA) and carol (reset, her email waiting in the outbox); and beta."""
    folder = tmp_path_factory.mktemp("seed")
    path = folder / "mfactl.db"
    from mfactl.db.engine import make_engine, upgrade_schema

    engine = make_engine(f"sqlite:///{path}")
    upgrade_schema(engine)
    engine.dispose()
    app = make_app(f"sqlite:///{path}", FrozenClock(), KEY)
    email = replace(app.settings.email, transport="file", file_dir=str(folder / "mail"))
    app.settings = replace(app.settings, email=email)
    orgs.add_org(app, "acme", "Acme")
    orgs.add_org(app, "beta", "Beta")
    users.add_user(app, "acme", "alice", "alice@example.com", name="Alice")
    users.add_user(app, "acme", "bob", "bob@example.com", admin=True)
    users.add_user(app, "acme", "carol", "carol@example.com")
    enrolled(app, "alice")
    remember.issue(app, "acme", "alice")
    queued(app, "carol")
    app.close()
    return path


@dataclass
class Ran:
    exit_code: int
    stdout: str
    stderr: str
    before: Dump
    after: Dump


def run(
    case: Case,
    folder: Path,
    seeded: Path,
    monkeypatch: pytest.MonkeyPatch,
    values: str | None = None,
) -> Ran:
    db = folder / "mfactl.db"
    shutil.copy(seeded, db)
    fill = {"db": f"sqlite:///{db}", "key": KEY, "tmp": str(folder)}
    values_path = folder / "values.yaml"
    text = values if values is not None else case.values
    if text is None:
        write_values(values_path, fill["db"], KEY, case.extra)
    else:
        for name, value in fill.items():
            text = text.replace("{" + name + "}", value)
        values_path.write_text(text, encoding="utf-8")
        values_path.chmod(0o600)
    for name, content in case.files.items():
        target = folder / name
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
    if case.sql:
        connection = sqlite3.connect(db)
        with connection:
            for statement in case.sql:
                connection.execute(statement)
        connection.close()
    before = dump(db)
    monkeypatch.setattr("mfactl.bootstrap.system_clock", FrozenClock())
    monkeypatch.chdir(folder)
    args = [argument.replace("{tmp}", str(folder)) for argument in case.args]
    result = Mfactl(values_path)(*args)
    return Ran(result.exit_code, result.stdout, result.stderr, before, dump(db))


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(
    case: Case, tmp_path: Path, seeded: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = run(case, tmp_path, seeded, monkeypatch)
    sentence = one_sentence(ran.stderr, status=case.status)
    assert ran.exit_code == case.code, ran.stderr
    assert case.says in sentence
    assert KEY not in ran.stderr and KEY not in ran.stdout  # a key is never repeated
    assert ran.after == ran.before


def test_the_table_is_big_enough_and_its_ids_unique() -> None:
    ids = [case.id for case in CASES]
    assert len(set(ids)) == len(ids)
    assert len(ids) + len(SMTP_CASES) + len(RETRY_CASES) >= 150


@pytest.mark.parametrize("name", list(SMTP_CASES))
def test_config_check_against_a_bad_smtp_server(
    name: str, tmp_path: Path, seeded: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    replies, code = SMTP_CASES[name]
    server = HostileSmtpServer(replies).start()
    try:
        ran = run(
            Case(name, ("config", "check"), code),
            tmp_path,
            seeded,
            monkeypatch,
            values=_smtp_values(server.port),
        )
    finally:
        server.stop()
    # config check's answer is its report, on stdout: one line for the server, made safe
    assert (ran.exit_code, ran.stderr) == (code, ""), ran.stdout
    [line] = [line for line in ran.stdout.splitlines() if line.startswith("smtp: ")]
    assert line.endswith(")") and " does not answer (" in line, line
    assert not UNSAFE.search(ran.stdout), ran.stdout
    assert ran.after == ran.before


DELIVERY_COLUMNS = {
    "status",
    "attempts",
    "last_error",
    "next_attempt_at",
    "lease_until",
    "claimed_until",
    "sent_at",
}


@pytest.mark.parametrize("name", list(RETRY_CASES))
def test_mail_retry_against_a_bad_smtp_server(
    name: str, tmp_path: Path, seeded: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = HostileSmtpServer(RETRY_CASES[name]).start()
    try:
        ran = run(
            Case(name, ("mail", "retry"), 9),
            tmp_path,
            seeded,
            monkeypatch,
            values=_smtp_values(server.port),
        )
    finally:
        server.stop()
    assert ran.exit_code == 9, ran.stderr
    one_sentence(ran.stderr, status=("sent 0 emails; 1 waits in the outbox",))
    assert not UNSAFE.search(ran.stderr), ran.stderr
    # only the message's delivery bookkeeping moved: its attempt counted, its reason kept
    names = columns(tmp_path / "mfactl.db", "outbox")
    kept = [i for i, column in enumerate(names) if column not in DELIVERY_COLUMNS]
    assert {k: v for k, v in ran.after.items() if k != "outbox"} == {
        k: v for k, v in ran.before.items() if k != "outbox"
    }
    assert [[row[i] for i in kept] for row in ran.after["outbox"]] == [
        [row[i] for i in kept] for row in ran.before["outbox"]
    ]
    [row] = ran.after["outbox"]
    assert row[names.index("attempts")] == ran.before["outbox"][0][names.index("attempts")] + 1
