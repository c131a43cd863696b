"""What the keys hold: `keys status`, and (for `config check`) what each configured key seals and
what no configured key opens."""

from __future__ import annotations

from sqlalchemy.engine import Connection, Engine

from mfactl.app import App
from mfactl.services.keys._tables import OUTBOX, SECRETS
from mfactl.services.keys.reports import KeyCounts, KeyHoldings, KeyStatus


def status(app: App) -> KeyStatus:
    """How many secrets and outbox bodies each key holds, from the key ids alone."""
    store = app.secrets
    with app.uow() as uow:
        conn = uow.session.connection()
        held = _held(conn, store.active_key_id, store.rolling_key_id)
    return KeyStatus(store.active_key_id, store.rolling_key_id, held.secrets, held.outbox)


def held_by_key(
    engine: Engine, active_key_id: str | None, rolling_key_id: str | None
) -> KeyHoldings:
    """What the configured keys seal, and what none of them opens, from the key ids alone: it
    needs no key (`config check` asks it with the active key missing, too)."""
    with engine.connect() as conn:
        return _held(conn, active_key_id, rolling_key_id)


def _held(conn: Connection, active_key_id: str | None, rolling_key_id: str | None) -> KeyHoldings:
    return KeyHoldings(
        _by_key(SECRETS.by_key_id(conn), active_key_id, rolling_key_id),
        _by_key(OUTBOX.by_key_id(conn), active_key_id, rolling_key_id),
    )


def _by_key(
    counts: dict[str | None, int], active_id: str | None, rolling_id: str | None
) -> KeyCounts:
    active = counts.get(active_id, 0) if active_id is not None else 0
    rolling = counts.get(rolling_id, 0) if rolling_id is not None else 0
    return KeyCounts(active, rolling, sum(counts.values()) - active - rolling)
