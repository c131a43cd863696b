"""Importing users from a CSV file: all of them or none, each bad row reported by its line."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import cast

from sqlalchemy import Table, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mfactl import totp
from mfactl.app import App
from mfactl.db.models import MfaSecret, User
from mfactl.errors import Conflict, InvalidInput
from mfactl.input_files import CSV_MAX_BYTES, read_capped
from mfactl.services import audit, lookup, validation
from mfactl.totp import TotpParams

IMPORT_COLUMNS = (
    "handle",
    "email",
    "name",
    "admin",
    "totp_secret",
    "algorithm",
    "digits",
    "period",
)
TOTP_COLUMNS = ("algorithm", "digits", "period")
REQUIRED_COLUMNS = ("handle", "email")
MAX_REPORTED_PROBLEMS = 20
IMPORT_BATCH = 5000
# Core inserts of plain rows: bulk imports skip the ORM's per-row bookkeeping
_USERS_TABLE = cast(Table, User.__table__)
_SECRETS_TABLE = cast(Table, MfaSecret.__table__)
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"", "0", "false", "no", "n", "f"}


@dataclass(frozen=True)
class Lowercased:
    """A handle or email the file gave with capitals, and how it is kept."""

    line: int
    column: str  # "handle" or "email"
    typed: str
    kept: str


@dataclass(frozen=True)
class ImportResult:
    org: str
    imported: int
    lowercased: tuple[Lowercased, ...] = ()  # said, not done silently: `Joe` is `joe` now

    def to_json(self) -> dict[str, object]:
        return {"org": self.org, "imported": self.imported, "lowercased": len(self.lowercased)}


@dataclass(frozen=True)
class Row:
    """One data line of the file, its cells by column name."""

    line: int
    cells: dict[str, str]

    def get(self, column: str) -> str:
        """The cell of ``column``, empty when the file has no such column."""
        return self.cells.get(column, "")


@dataclass(frozen=True)
class RowProblem:
    """Why one line of the file cannot be imported."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class ImportedSecret:
    """A TOTP secret the file brings for a user, with the parameters it was made for."""

    secret: str
    params: TotpParams


@dataclass(frozen=True)
class _Person:
    handle: str
    email: str
    name: str
    admin: bool


def _read_text(path: Path) -> str:
    try:
        return read_capped(path, CSV_MAX_BYTES).decode("utf-8-sig")
    except FileNotFoundError:
        raise InvalidInput(f"file {path} does not exist") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None


def _check_header(header: list[str], line: int) -> None:
    unknown = [c for c in header if c not in IMPORT_COLUMNS]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    duplicated = list(dict.fromkeys(c for c in header if header.count(c) > 1))
    if unknown or missing or duplicated:
        raise InvalidInput(
            f"line {line}: the header row must name the columns "
            f"{', '.join(IMPORT_COLUMNS)} (handle and email required)"
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            + (f"; missing: {', '.join(missing)}" if missing else "")
            + (f"; duplicated: {', '.join(duplicated)}" if duplicated else "")
        )


def _records(text: str, path: Path) -> Iterator[Row | RowProblem]:
    """The file's data lines, each a Row or, when it cannot even be split into the header's
    columns, a RowProblem; a file without a usable header row is refused outright."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    for record in reader:
        line = reader.line_num
        if not record or all(not cell.strip() for cell in record):
            continue
        if header is None:
            first = record[0]
            if len(record) == 1 and "," not in first and (";" in first or "\t" in first):
                separator = max(";\t", key=first.count)  # a spreadsheet's "CSV" export, or TSV
                raise InvalidInput(
                    f"{path} looks separated by {separator!r}: "
                    "mfactl reads comma-separated files (RFC 4180)"
                )
            header = [cell.strip().lower() for cell in record]
            _check_header(header, line)
            continue
        if len(record) != len(header):
            yield RowProblem(line, f"expected {len(header)} fields, found {len(record)}")
            continue
        yield Row(line, dict(zip(header, record, strict=True)))
    if header is None:
        raise InvalidInput("the CSV file is empty; it needs a header row, at least: handle,email")


def _admin(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise InvalidInput(f"admin {validation.brief(value)} must be true or false")


def _person(row: Row) -> _Person:
    return _Person(
        handle=validation.handle(row.cells["handle"]),
        email=validation.email(row.cells["email"]),
        name=validation.display_name(row.get("name")),
        admin=_admin(row.get("admin")),
    )


def _imported_secret(app: App, row: Row) -> ImportedSecret | None:
    """The row's TOTP secret and parameters (defaults from values.yaml), or None without one.

    Messages never repeat the secret.
    """
    secret = totp.normalize_secret(row.get("totp_secret").strip())
    given = [c for c in TOTP_COLUMNS if row.get(c).strip()]
    if not secret:
        if given:
            raise InvalidInput(f"{', '.join(given)} given without totp_secret")
        return None
    if not totp.is_valid_secret(secret):
        raise InvalidInput("totp_secret is not base32 of at least 112 bits")
    mfa = app.settings.user_login.mfa
    algorithm = row.get("algorithm").strip().upper() or mfa.algorithm
    if algorithm not in totp.DIGESTS:
        raise InvalidInput(
            f"algorithm {validation.brief(row.get('algorithm'))} must be SHA1, SHA256 or SHA512"
        )
    digits, period = row.get("digits").strip(), row.get("period").strip()
    if digits and digits not in ("6", "8"):
        raise InvalidInput(f"digits {validation.brief(digits)} must be 6 or 8")
    if period and not (period.isdigit() and 10 <= int(period) <= 120):
        raise InvalidInput(f"period {validation.brief(period)} must be 10 to 120 seconds")
    return ImportedSecret(
        secret,
        TotpParams(
            algorithm, int(digits) if digits else mfa.digits, int(period) if period else mfa.period
        ),
    )


class _Claims:
    """The handles and emails the organization has, and those earlier lines of the file claim."""

    def __init__(self, org_slug: str, handles: set[str], emails: set[str]) -> None:
        self.org_slug = org_slug
        self.taken_handles = handles
        self.taken_emails = emails
        self.handle_lines: dict[str, int] = {}
        self.email_lines: dict[str, int] = {}

    def check(self, person: _Person) -> None:
        """Refuse a handle or an email already in the organization or on an earlier line."""
        if person.handle in self.taken_handles:
            raise InvalidInput(
                f"user {person.handle} already exists in organization {self.org_slug}"
            )
        if person.email in self.taken_emails:
            raise InvalidInput(
                f"email {person.email} already belongs to a user of {self.org_slug}"
            )
        if person.handle in self.handle_lines:
            raise InvalidInput(
                f"user {person.handle} is already on line {self.handle_lines[person.handle]}"
            )
        if person.email in self.email_lines:
            raise InvalidInput(
                f"email {person.email} is already on line {self.email_lines[person.email]}"
            )

    def claim(self, person: _Person, line: int) -> None:
        self.handle_lines[person.handle] = line
        self.email_lines[person.email] = line


class _Problems:
    """The bad rows found: every one counted, the first MAX_REPORTED_PROBLEMS kept to show."""

    def __init__(self) -> None:
        self.total = 0
        self.shown: list[RowProblem] = []

    def add(self, problem: RowProblem) -> None:
        self.total += 1
        if len(self.shown) < MAX_REPORTED_PROBLEMS:
            self.shown.append(problem)

    def refuse(self, path: Path) -> None:
        """Refuse the whole file when any row of it is bad."""
        if not self.total:
            return
        listed = [str(problem) for problem in self.shown]
        if self.total > len(self.shown):
            listed.append(f"... and {self.total - len(self.shown)} more")
        raise InvalidInput(
            f"{path} has {self.total} bad row{'s' if self.total > 1 else ''}; "
            "nothing was imported",
            problems=listed,
        )


def _insert_secrets(
    session: Session,
    app: App,
    organization_id: int,
    secrets_by_uid: dict[str, ImportedSecret],
    now: datetime,
) -> None:
    """Seal each imported secret under the active key, bound to its user; insert them as active."""
    store = app.secrets
    query = select(User.uid, User.id).where(User.organization_id == organization_id)
    ids = {uid: user_id for uid, user_id in session.execute(query)}
    rows: list[dict[str, object]] = []
    for uid, imported in secrets_by_uid.items():
        sealed = store.seal_secret(uid, imported.secret)
        rows.append(
            {
                "user_id": ids[uid],
                "state": "active",
                "ciphertext": sealed.ciphertext,
                "key_id": sealed.key_id,
                "algorithm": imported.params.algorithm,
                "digits": imported.params.digits,
                "period": imported.params.period,
                "created_at": now,
                "confirmed_at": now,
                "last_used_step": -1,
                "failed_attempts": 0,
                "locked": False,
            }
        )
        if len(rows) == IMPORT_BATCH:
            session.execute(insert(_SECRETS_TABLE), rows)
            rows = []
    if rows:
        session.execute(insert(_SECRETS_TABLE), rows)


def import_users(app: App, org: str, path: Path) -> ImportResult:
    """Add every user of the CSV file, or none: any bad row aborts the whole import."""
    text = _read_text(path)
    problems = _Problems()
    new_rows: list[dict[str, object]] = []
    lowercased: list[Lowercased] = []
    secrets_by_uid: dict[str, ImportedSecret] = {}
    now = app.now()
    with app.uow() as uow:
        organization = lookup.get_org(uow.session, org)
        existing = uow.session.execute(
            select(User.handle, User.email).where(User.organization_id == organization.id)
        ).all()
        claims = _Claims(
            organization.slug, {u.handle for u in existing}, {u.email for u in existing}
        )
        try:
            records = list(_records(text, path))
        except csv.Error as exc:
            raise InvalidInput(f"{path} is not valid CSV: {exc}") from None
        for record in records:
            if isinstance(record, RowProblem):
                problems.add(record)
                continue
            try:
                person = _person(record)
                claims.check(person)
                imported = _imported_secret(app, record)
            except InvalidInput as exc:
                problems.add(RowProblem(record.line, exc.message))
                continue
            claims.claim(person, record.line)
            for column, kept in (("handle", person.handle), ("email", person.email)):
                typed = record.cells[column].strip()
                if typed != kept:
                    lowercased.append(Lowercased(record.line, column, typed, kept))
            uid = str(uuid.uuid4())
            if imported is not None:
                secrets_by_uid[uid] = imported
            new_rows.append(
                {
                    "uid": uid,
                    "organization_id": organization.id,
                    "handle": person.handle,
                    "email": person.email,
                    "display_name": person.name,
                    "is_admin": person.admin,
                    "created_at": now,
                }
            )
        problems.refuse(path)
        for start in range(0, len(new_rows), IMPORT_BATCH):
            uow.session.execute(insert(_USERS_TABLE), new_rows[start : start + IMPORT_BATCH])
        if secrets_by_uid:
            _insert_secrets(uow.session, app, organization.id, secrets_by_uid, now)
        audit.record(
            uow.session,
            app,
            "user.import",
            org=organization.slug,
            details={"file": path.name, "imported": len(new_rows)}
            | ({"enrolled": len(secrets_by_uid)} if secrets_by_uid else {}),
        )
        try:
            uow.commit()
        except IntegrityError:
            raise Conflict(
                "another process added some of these users meanwhile; nothing was imported"
            ) from None
        return ImportResult(organization.slug, len(new_rows), tuple(lowercased))
