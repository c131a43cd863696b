"""What the keys hold: `keys status`, and what the rolling key still seals (for `config check`)."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from mfactl.app import App
from mfactl.crypto import SecretStore
from mfactl.services.keys._tables import OUTBOX, SECRETS
from mfactl.services.keys.reports import KeyCounts, KeyStatus, RollingKeyUse


def status(app: App) -> KeyStatus:
    """How many secrets and outbox bodies each key holds, from the key ids alone."""
    store = app.secrets
    with app.uow() as uow:
        conn = uow.session.connection()
        secrets = _by_key(SECRETS.by_key_id(conn), store)
        outbox = _by_key(OUTBOX.by_key_id(conn), store)
    return KeyStatus(store.active_key_id, store.rolling_key_id, secrets, outbox)


def _by_key(counts: dict[str | None, int], store: SecretStore) -> KeyCounts:
    active = counts.get(store.active_key_id, 0)
    rolling = counts.get(store.rolling_key_id, 0) if store.rolling_key_id is not None else 0
    return KeyCounts(active, rolling, sum(counts.values()) - active - rolling)


def rolling_key_in_use(engine: Engine, rolling_key_id: str) -> RollingKeyUse:
    """The secrets and outbox bodies still sealed with the rolling key."""
    with engine.connect() as conn:
        secrets = SECRETS.by_key_id(conn).get(rolling_key_id, 0)
        outbox = OUTBOX.by_key_id(conn).get(rolling_key_id, 0)
    return RollingKeyUse(secrets, outbox)
