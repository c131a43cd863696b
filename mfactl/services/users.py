"""Users: add one, import many from CSV (all or nothing), and report a user's status."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import cast

from sqlalchemy import Table, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mfactl import totp
from mfactl.app import App
from mfactl.db.models import ActionToken, MfaSecret, RememberToken, User
from mfactl.errors import Conflict, InvalidInput, MfactlError
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
class UserInfo:
    org: str
    user: str
    email: str
    name: str
    admin: bool
    uid: str
    created_at: datetime


def _info(org_slug: str, user: User) -> UserInfo:
    return UserInfo(
        org_slug,
        user.handle,
        user.email,
        user.display_name,
        user.is_admin,
        user.uid,
        user.created_at,
    )


def add_user(
    app: App,
    org: str,
    handle: str,
    email: str,
    *,
    name: str | None = None,
    admin: bool = False,
) -> UserInfo:
    handle = validation.handle(handle)
    email = validation.email(email)
    name = validation.display_name(name)
    with app.uow() as uow:
        organization = lookup.get_org(uow.session, org)
        clash = uow.session.scalars(
            select(User).where(
                User.organization_id == organization.id,
                (User.handle == handle) | (User.email == email),
            )
        ).first()
        if clash is not None:
            what = f"handle {handle}" if clash.handle == handle else f"email {email}"
            raise Conflict(f"a user with {what} already exists in organization {organization.slug}")
        user = User(
            uid=str(uuid.uuid4()),
            organization_id=organization.id,
            handle=handle,
            email=email,
            display_name=name,
            is_admin=admin,
            created_at=app.now(),
        )
        uow.session.add(user)
        audit.record(
            uow.session,
            app,
            "user.add",
            org=organization.slug,
            user=handle,
            details={"email": email, "admin": admin},
        )
        try:
            uow.commit()
        except IntegrityError:
            raise Conflict(
                f"user {handle} or email {email} already exists in organization {organization.slug}"
            ) from None
        return _info(organization.slug, user)


# --- CSV import --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportResult:
    org: str
    imported: int


def _parse_bool(value: str) -> bool | None:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return None


def _rows(text: str, path: Path) -> Iterable[tuple[int, dict[str, str]]]:
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
            continue
        if len(record) != len(header):
            yield line, {"__error__": f"expected {len(header)} fields, found {len(record)}"}
            continue
        yield line, dict(zip(header, record, strict=True))
    if header is None:
        raise InvalidInput("the CSV file is empty; it needs a header row, at least: handle,email")


def _imported_totp(app: App, row: dict[str, str]) -> tuple[str, TotpParams] | None:
    """The row's TOTP secret and parameters (defaults from values.yaml), or None without one.

    Messages never repeat the secret.
    """
    secret = totp.normalize_secret(row.get("totp_secret", "").strip())
    given = [c for c in TOTP_COLUMNS if row.get(c, "").strip()]
    if not secret:
        if given:
            raise InvalidInput(f"{', '.join(given)} given without totp_secret")
        return None
    if not totp.is_valid_secret(secret):
        raise InvalidInput("totp_secret is not base32 of at least 112 bits")
    mfa = app.settings.user_login.mfa
    algorithm = row.get("algorithm", "").strip().upper() or mfa.algorithm
    if algorithm not in totp.DIGESTS:
        raise InvalidInput(
            f"algorithm {validation.brief(row['algorithm'])} must be SHA1, SHA256 or SHA512"
        )
    digits, period = row.get("digits", "").strip(), row.get("period", "").strip()
    if digits and digits not in ("6", "8"):
        raise InvalidInput(f"digits {validation.brief(digits)} must be 6 or 8")
    if period and not (period.isdigit() and 10 <= int(period) <= 120):
        raise InvalidInput(f"period {validation.brief(period)} must be 10 to 120 seconds")
    return secret, TotpParams(
        algorithm, int(digits) if digits else mfa.digits, int(period) if period else mfa.period
    )


def _insert_secrets(
    session: Session,
    app: App,
    organization_id: int,
    secrets_by_uid: dict[str, tuple[str, TotpParams]],
    now: datetime,
) -> None:
    """Seal each imported secret under the active key, bound to its user; insert them as active."""
    store = app.secrets
    query = select(User.uid, User.id).where(User.organization_id == organization_id)
    ids = {uid: user_id for uid, user_id in session.execute(query)}
    rows: list[dict[str, object]] = []
    for uid, (secret, params) in secrets_by_uid.items():
        sealed = store.seal_secret(uid, secret)
        rows.append(
            {
                "user_id": ids[uid],
                "state": "active",
                "ciphertext": sealed.ciphertext,
                "key_id": sealed.key_id,
                "algorithm": params.algorithm,
                "digits": params.digits,
                "period": params.period,
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


def read_import_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InvalidInput(f"file {path} does not exist") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None


def import_users(app: App, org: str, path: Path) -> ImportResult:
    """Add every user of the CSV file, or none: any bad row aborts the whole import."""
    text = read_import_file(path)
    problems: list[str] = []
    total_problems = 0
    new_rows: list[dict[str, object]] = []
    seen_handles: dict[str, int] = {}
    seen_emails: dict[str, int] = {}
    secrets_by_uid: dict[str, tuple[str, TotpParams]] = {}
    now = app.now()

    def problem(line: int, message: str) -> None:
        nonlocal total_problems
        total_problems += 1
        if len(problems) < MAX_REPORTED_PROBLEMS:
            problems.append(f"line {line}: {message}")

    with app.uow() as uow:
        organization = lookup.get_org(uow.session, org)
        existing = uow.session.execute(
            select(User.handle, User.email).where(User.organization_id == organization.id)
        ).all()
        taken_handles = {h for h, _ in existing}
        taken_emails = {e for _, e in existing}
        try:
            rows = list(_rows(text, path))
        except csv.Error as exc:
            raise InvalidInput(f"{path} is not valid CSV: {exc}") from None
        for line, row in rows:
            if "__error__" in row:
                problem(line, row["__error__"])
                continue
            try:
                handle = validation.handle(row["handle"])
                email = validation.email(row["email"])
                name = validation.display_name(row.get("name"))
            except MfactlError as exc:
                problem(line, exc.message)
                continue
            admin = _parse_bool(row.get("admin", ""))
            if admin is None:
                problem(line, f"admin {validation.brief(row['admin'])} must be true or false")
                continue
            if handle in taken_handles:
                problem(line, f"user {handle} already exists in organization {organization.slug}")
                continue
            if email in taken_emails:
                problem(line, f"email {email} already belongs to a user of {organization.slug}")
                continue
            if handle in seen_handles:
                problem(line, f"user {handle} is already on line {seen_handles[handle]}")
                continue
            if email in seen_emails:
                problem(line, f"email {email} is already on line {seen_emails[email]}")
                continue
            try:
                totp_params = _imported_totp(app, row)
            except InvalidInput as exc:
                problem(line, exc.message)
                continue
            seen_handles[handle] = line
            seen_emails[email] = line
            uid = str(uuid.uuid4())
            if totp_params is not None:
                secrets_by_uid[uid] = totp_params
            new_rows.append(
                {
                    "uid": uid,
                    "organization_id": organization.id,
                    "handle": handle,
                    "email": email,
                    "display_name": name,
                    "is_admin": admin,
                    "created_at": now,
                }
            )
        if total_problems:
            more = total_problems - len(problems)
            if more:
                problems.append(f"... and {more} more")
            raise InvalidInput(
                f"{path} has {total_problems} bad row{'s' if total_problems > 1 else ''}; "
                "nothing was imported",
                problems=problems,
            )
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
        return ImportResult(organization.slug, len(new_rows))


# --- status ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserStatus:
    org: str
    user: str
    email: str
    name: str
    admin: bool
    created_at: datetime
    mfa: str  # active | pending | none
    mfa_key_active: bool | None  # ciphertext under the active key (None: no secret)
    key_id: str | None
    algorithm: str | None
    digits: int | None
    period: int | None
    enrolled_at: datetime | None
    last_used_at: datetime | None
    failed_attempts: int
    last_failed_at: datetime | None
    locked: bool
    remember_tokens: int
    open_links: int


def user_status(app: App, org: str, user_ref: str) -> UserStatus:
    with app.uow() as uow:
        organization, user = lookup.get_org_user(uow.session, org, user_ref)
        now = app.now()
        secret = uow.session.get(MfaSecret, user.id)
        remember = (
            uow.session.scalar(
                select(func.count())
                .select_from(RememberToken)
                .where(
                    RememberToken.user_id == user.id,
                    RememberToken.revoked_at.is_(None),
                    RememberToken.expires_at > now,
                )
            )
            or 0
        )
        links = (
            uow.session.scalar(
                select(func.count())
                .select_from(ActionToken)
                .where(
                    ActionToken.user_id == user.id,
                    ActionToken.used_at.is_(None),
                    ActionToken.expires_at > now,
                )
            )
            or 0
        )
        active_key_id = _active_key_id(app)
        return UserStatus(
            org=organization.slug,
            user=user.handle,
            email=user.email,
            name=user.display_name,
            admin=user.is_admin,
            created_at=user.created_at,
            mfa=secret.state if secret else "none",
            mfa_key_active=(secret.key_id == active_key_id) if secret else None,
            key_id=secret.key_id if secret else None,
            algorithm=secret.algorithm if secret else None,
            digits=secret.digits if secret else None,
            period=secret.period if secret else None,
            enrolled_at=secret.confirmed_at if secret else None,
            last_used_at=secret.last_used_at if secret else None,
            failed_attempts=secret.failed_attempts if secret else 0,
            last_failed_at=secret.last_failed_at if secret else None,
            locked=bool(secret.locked) if secret else False,
            remember_tokens=int(remember),
            open_links=int(links),
        )


def _active_key_id(app: App) -> str | None:
    """The active key's id from the settings, without building the secret store."""
    from mfactl.config import key_id

    key = app.settings.secret_store.active_key
    return key_id(key) if key else None
