"""The two tables whose values the secret store seals, MFA secrets and outbox bodies: how a batch
of them is read, counted by key id and written back with a compare-and-swap, and who a row that
fails belongs to.

Core statements with executemany (or one unnest UPDATE on PostgreSQL): no ORM object per row.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, ClassVar, NamedTuple, cast

from sqlalchemy import (
    Column,
    ColumnElement,
    FromClause,
    Select,
    Table,
    bindparam,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Dialect

from mfactl.crypto import SecretStore, outbox_label
from mfactl.db.models import MfaSecret, Organization, OutboxMessage, User
from mfactl.errors import SecretStoreError
from mfactl.services.keys.reports import Failure

_SECRETS = cast(Table, MfaSecret.__table__)
_USERS = cast(Table, User.__table__)
_ORGS = cast(Table, Organization.__table__)
_OUTBOX = cast(Table, OutboxMessage.__table__)


class Read(NamedTuple):
    """A sealed value as read for re-encryption."""

    pk: int
    key_id: str | None  # the key the row names: only a hint, tried first
    ciphertext: str
    binding: str  # what it is sealed to: the user's uid, or the outbox message's label


class Change(NamedTuple):
    """A compare-and-swap write: ``new`` replaces the row's ciphertext only if it is still
    ``old``."""

    pk: int
    old: str
    new: str


class Backlog(NamedTuple):
    already_active: int  # rows the active key sealed
    pending: int  # rows another key sealed (or none)


# writes a batch's changes under the active key id; -> rows written
CasWriter = Callable[[Connection, list[Change], str], int]


@dataclass(frozen=True)
class SealedTable(ABC):
    """A table of sealed values, its columns, and the joins that name their owners."""

    blobs: ClassVar[bool]  # sealed with seal_blob (to a label), not seal_secret (to a uid)
    table: Table
    pk: Column[int]
    key_id: Column[str | None]
    ciphertext: Column[str | None]
    base: FromClause  # the table, joined to what its binding needs
    scoped: FromClause  # the same, joined to users and organizations, for --org

    @abstractmethod
    def _columns(self) -> tuple[ColumnElement[Any], ...]:
        """pk, key id, ciphertext, and what the binding is made from."""

    @abstractmethod
    def _reads(self, rows: Iterable[Sequence[Any]]) -> list[Read]: ...

    @abstractmethod
    def _holds(self) -> tuple[ColumnElement[bool], ...]:
        """What a row needs to hold anything sealed."""

    def _bounds(self, after: ColumnElement[int]) -> tuple[ColumnElement[bool], ...]:
        """Lower bounds on joined columns equal to ``pk``, beside ``pk > after``."""
        return ()

    @abstractmethod
    def explain(self, conn: Connection, store: SecretStore, row: Read) -> Failure | None:
        """Who a failed row belongs to and why it failed, in the words of the secret store;
        None when the row is gone meanwhile (the user or the sent email was deleted)."""

    def select_rows(
        self, *, limit: int, org: str | None, pending_for: str | None, lock: bool
    ) -> Select[Any]:
        """The batch after the bound parameter ``after``: built once, executed per batch.

        ``pending_for``: only the rows not sealed by this key id; None: every row.
        """
        after = bindparam("after", type_=self.pk.type)
        query = (
            select(*self._columns())
            .select_from(self.scoped if org is not None else self.base)
            .where(self.pk > after, *self._bounds(after), *self._holds())
            .order_by(self.pk)
            .limit(limit)
        )
        if pending_for is not None:
            query = query.where(or_(self.key_id.is_(None), self.key_id != pending_for))
        if org is not None:
            query = query.where(_ORGS.c.slug == org)
        if lock:
            query = query.with_for_update(of=self.table, skip_locked=True)
        return query

    def read(self, conn: Connection, query: Select[Any], after: int) -> list[Read]:
        return self._reads(conn.execute(query, {"after": after}))

    def by_key_id(self, conn: Connection, *, org: str | None = None) -> dict[str | None, int]:
        """How many rows each key id seals, within scope."""
        # GROUP BY key_id: read from the key_id index alone, not from the ciphertexts
        query = (
            select(self.key_id, func.count())
            .select_from(self.scoped if org is not None else self.table)
            .where(*self._holds())
            .group_by(self.key_id)
        )
        if org is not None:
            query = query.where(_ORGS.c.slug == org)
        return {kid: int(n) for kid, n in conn.execute(query)}

    def backlog(self, conn: Connection, *, org: str | None, active: str) -> Backlog:
        counts = self.by_key_id(conn, org=org)
        done = counts.get(active, 0)
        return Backlog(already_active=done, pending=sum(counts.values()) - done)

    def cas_writer(self, dialect: Dialect) -> CasWriter:
        """The compare-and-swap UPDATE of a batch, as lean as the driver allows."""
        if dialect.name == "postgresql":
            # one statement for the whole batch; PostgreSQL re-checks "ciphertext = old" on a
            # row another transaction changed meanwhile, so the compare-and-swap still holds
            table = self.table.name
            pk, ct, kid = self.pk.name, self.ciphertext.name, self.key_id.name
            sql = (
                f"UPDATE {table} AS t SET {ct} = v.new, {kid} = %(kid)s "
                "FROM unnest(%(pks)b::bigint[], %(olds)b::text[], %(news)b::text[]) "
                f"AS v(pk, old, new) WHERE t.{pk} = v.pk AND t.{ct} = v.old"
            )

            def unnest(conn: Connection, changes: list[Change], active: str) -> int:
                pks, olds, news = (list(column) for column in zip(*changes, strict=True))
                params = {"kid": active, "pks": pks, "olds": olds, "news": news}
                return int(conn.exec_driver_sql(sql, params).rowcount)

            return unnest
        stmt = (
            update(self.table)
            .where(self.pk == bindparam("b_pk"), self.ciphertext == bindparam("b_old"))
            .values({self.ciphertext.key: bindparam("b_new"), self.key_id.key: bindparam("b_kid")})
        )
        compiled = stmt.compile(dialect=dialect)
        statement = str(compiled)
        order = tuple(compiled.positiontup or ()) if compiled.positional else None

        positions = {"b_pk": 0, "b_old": 1, "b_new": 2, "b_kid": 3}
        pick = itemgetter(*(positions[name] for name in order)) if order else None

        def executemany(conn: Connection, changes: list[Change], active: str) -> int:
            # straight to the driver: no per-row parameter processing in SQLAlchemy
            params: list[Any] = (
                [{"b_pk": c.pk, "b_old": c.old, "b_new": c.new, "b_kid": active} for c in changes]
                if pick is None
                else [pick((*c, active)) for c in changes]
            )
            if conn.dialect.supports_sane_multi_rowcount:
                return int(conn.exec_driver_sql(statement, params).rowcount)
            return sum(int(conn.exec_driver_sql(statement, p).rowcount) for p in params)

        return executemany


@dataclass(frozen=True)
class _SecretTable(SealedTable):
    blobs: ClassVar[bool] = False
    uid: Column[str]  # the binding
    # the joined column equal to pk (users.id): bounded too, or a merge join would scan the
    # users from the first one at every batch
    pk_twin: Column[int]

    def _columns(self) -> tuple[ColumnElement[Any], ...]:
        return (self.pk, self.key_id, self.ciphertext, self.uid)

    def _reads(self, rows: Iterable[Sequence[Any]]) -> list[Read]:
        return [Read(pk, kid, ct, uid) for pk, kid, ct, uid in rows]

    def _holds(self) -> tuple[ColumnElement[bool], ...]:
        return ()  # a secret row always holds its ciphertext

    def _bounds(self, after: ColumnElement[int]) -> tuple[ColumnElement[bool], ...]:
        return (self.pk_twin > after,)

    def explain(self, conn: Connection, store: SecretStore, row: Read) -> Failure | None:
        query = (
            select(_ORGS.c.slug, _USERS.c.handle)
            .select_from(_USERS.join(_ORGS, _ORGS.c.id == _USERS.c.organization_id))
            .where(_USERS.c.id == row.pk)
        )
        found = conn.execute(query).first()
        if found is None:
            return None
        org, user = found
        try:
            store.open_secret(row.binding, row.ciphertext, f"{org}/{user}", key_id=row.key_id)
        except SecretStoreError as exc:
            return Failure(org, user, exc.message)
        return Failure(org, user, f"the MFA secret of {org}/{user} changed while it was read")


_OUTBOX_WHO = _OUTBOX.outerjoin(_USERS, _USERS.c.id == _OUTBOX.c.user_id).outerjoin(
    _ORGS, _ORGS.c.id == _USERS.c.organization_id
)


@dataclass(frozen=True)
class _OutboxTable(SealedTable):
    blobs: ClassVar[bool] = True

    def _columns(self) -> tuple[ColumnElement[Any], ...]:
        return (self.pk, self.key_id, self.ciphertext)

    def _reads(self, rows: Iterable[Sequence[Any]]) -> list[Read]:
        return [Read(pk, kid, ct, outbox_label(pk)) for pk, kid, ct in rows]

    def _holds(self) -> tuple[ColumnElement[bool], ...]:
        return (self.ciphertext.is_not(None),)  # a sent message's body is gone

    def explain(self, conn: Connection, store: SecretStore, row: Read) -> Failure | None:
        query = (
            select(_ORGS.c.slug, _USERS.c.handle, _OUTBOX.c.recipient)
            .select_from(_OUTBOX_WHO)
            .where(_OUTBOX.c.id == row.pk)
        )
        message = conn.execute(query).first()
        if message is None:
            return None
        org, user, recipient = message
        what = f"the body of outbox message {row.pk}"
        try:
            store.open_blob(row.binding, row.ciphertext, what, key_id=row.key_id)
        except SecretStoreError as exc:
            return Failure(org, user or recipient, exc.message, outbox=True)
        return Failure(org, user or recipient, f"{what} changed while it was read", outbox=True)


_SECRET_USERS = _SECRETS.join(_USERS, _USERS.c.id == _SECRETS.c.user_id)
SECRETS: SealedTable = _SecretTable(
    table=_SECRETS,
    pk=_SECRETS.c.user_id,
    key_id=_SECRETS.c.key_id,
    ciphertext=_SECRETS.c.ciphertext,
    base=_SECRET_USERS,
    scoped=_SECRET_USERS.join(_ORGS, _ORGS.c.id == _USERS.c.organization_id),
    uid=_USERS.c.uid,
    pk_twin=_USERS.c.id,
)
OUTBOX: SealedTable = _OutboxTable(
    table=_OUTBOX,
    pk=_OUTBOX.c.id,
    key_id=_OUTBOX.c.key_id,
    ciphertext=_OUTBOX.c.body_ciphertext,
    base=_OUTBOX,
    scoped=_OUTBOX.join(_USERS, _USERS.c.id == _OUTBOX.c.user_id).join(
        _ORGS, _ORGS.c.id == _USERS.c.organization_id
    ),
)
