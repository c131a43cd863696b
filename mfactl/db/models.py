"""The tables of DESIGN.md, in SQLAlchemy 2.x declarative style.

Times are stored as naive UTC (portable across SQLite, PostgreSQL and MariaDB) and come back as
aware UTC datetimes through ``UtcDateTime``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from mfactl.errors import DamagedRow

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT ids that still autoincrement on SQLite (which only does so for INTEGER PRIMARY KEY)
BigId = BigInteger().with_variant(Integer(), "sqlite")
LongText = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, naive UTC stored, aware UTC out."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UtcDateTime column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        # SQLite keeps any text in any column, and the dialect's own parser meets it first
        parse = super().result_processor(dialect, coltype)
        if parse is None:
            return None

        def process(value: Any) -> datetime | None:
            try:
                return parse(value)
            except ValueError:
                raise DamagedRow(f"{str(value)[:40]!r} is not a time") from None

        return process

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite raw text, e.g. from a textual query
            value = datetime.fromisoformat(value)
        if not isinstance(value, datetime):
            raise DamagedRow(f"a {type(value).__name__} value is not a time")
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("organization_id", "handle"),
        UniqueConstraint("organization_id", "email"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uid: Mapped[str] = mapped_column(String(36), unique=True)
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    handle: Mapped[str] = mapped_column(String(64))
    email: Mapped[str] = mapped_column(String(254))
    display_name: Mapped[str] = mapped_column(String(200), default="")
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class MfaSecret(Base):
    __tablename__ = "mfa_secrets"
    __table_args__ = (Index("ix_mfa_secrets_key_id", "key_id"),)

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    state: Mapped[str] = mapped_column(String(16))  # pending | active
    ciphertext: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(String(16))
    algorithm: Mapped[str] = mapped_column(String(8))
    digits: Mapped[int] = mapped_column(Integer)
    period: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    confirmed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # -1 until a code has been accepted: "a code at or before the last accepted step" is a replay
    last_used_step: Mapped[int] = mapped_column(BigInteger, default=-1)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    locked: Mapped[bool] = mapped_column(Boolean, default=False)


class MfaFailure(Base):
    """One counted wrong code: the rolling 24-hour budget counts these (revision 0004).

    A row per failure rather than a counter, so the window slides: a slot frees exactly 24 hours
    after the failure that took it. Kept per user, not per secret, so a success, a new pending
    secret or its confirmation does not hand back the day's guesses; a reset or an unlock does.
    """

    __tablename__ = "mfa_failures"
    __table_args__ = (Index("ix_mfa_failures_user_id_at", "user_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UtcDateTime())


class ActionToken(Base):
    __tablename__ = "action_tokens"
    __table_args__ = (
        Index("ix_action_tokens_user_id_purpose", "user_id", "purpose"),
        Index("ix_action_tokens_held_by", "held_by"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(16))  # reset | enroll
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # set by the one opening a link allows (revision 0002); used_at by its confirmation
    opened_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # the browser that opened it on the setup page (revision 0003): a keyed hash of its session
    # secret, never the secret, and until when that browser alone may go on with it
    held_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    held_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class RememberToken(Base):
    __tablename__ = "remember_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class RecoveryCode(Base):
    """One single-use recovery code (revision 0005): only its keyed hash, bound to the user's uid.

    A set shares its ``created_at``; a new set replaces the old one; ``used_at`` is set once, by
    the one conditional UPDATE that accepts the code.
    """

    __tablename__ = "recovery_codes"
    __table_args__ = (Index("ix_recovery_codes_user_id_code_hash", "user_id", "code_hash"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class OutboxMessage(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_outbox_key_id", "key_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True
    )
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(300))
    body_ciphertext: Mapped[str | None] = mapped_column(LongText, nullable=True)
    key_id: Mapped[str | None] = mapped_column(String(16), nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_organization_user_handle", "organization", "user_handle"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64), index=True)
    organization: Mapped[str | None] = mapped_column(String(63), nullable=True)
    user_handle: Mapped[str | None] = mapped_column(String(64), nullable=True)
    outcome: Mapped[str] = mapped_column(String(32))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
