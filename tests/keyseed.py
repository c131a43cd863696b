"""Test helper: MFA secret rows made directly (Core, executemany), sealed with a given store."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from mfactl import totp
from mfactl.crypto import SecretStore
from mfactl.db.models import MfaSecret, Organization, User

MOMENT = datetime(2026, 11, 1, 9, 0, 0, tzinfo=UTC)
PARAMS = totp.TotpParams("SHA1", 6, 30)


@dataclass(frozen=True)
class Seeded:
    user_id: int
    uid: str
    handle: str
    secret: str

    def code(self) -> str:
        return totp.code_at(self.secret, MOMENT, PARAMS)


def org_id(engine: Engine, slug: str) -> int:
    with engine.begin() as conn:
        found = conn.scalar(select(Organization.id).where(Organization.slug == slug))
        if found is not None:
            return int(found)
        return int(
            conn.execute(
                insert(Organization).values(slug=slug, name=slug, created_at=MOMENT)
            ).inserted_primary_key[0]
        )


def seed_secrets(
    engine: Engine, store: SecretStore, count: int, *, org: str = "acme", prefix: str = "u"
) -> list[Seeded]:
    """``count`` users of ``org``, each with an active MFA secret sealed by ``store``."""
    oid = org_id(engine, org)
    users = [
        {
            "uid": str(uuid.uuid4()),
            "organization_id": oid,
            "handle": f"{prefix}{i}",
            "email": f"{prefix}{i}@example.com",
            "display_name": "",
            "is_admin": False,
            "created_at": MOMENT,
        }
        for i in range(count)
    ]
    with engine.begin() as conn:
        conn.execute(insert(User), users)
        query = select(User.handle, User.id).where(
            User.organization_id == oid, User.handle.startswith(prefix)
        )
        ids = {handle: user_id for handle, user_id in conn.execute(query)}
        seeded = [Seeded(ids[u["handle"]], u["uid"], u["handle"], totp.new_secret()) for u in users]
        rows = []
        for s in seeded:
            sealed = store.seal_secret(s.uid, s.secret)
            rows.append(
                {
                    "user_id": s.user_id,
                    "state": "active",
                    "ciphertext": sealed.ciphertext,
                    "key_id": sealed.key_id,
                    "algorithm": "SHA1",
                    "digits": 6,
                    "period": 30,
                    "created_at": MOMENT,
                    "confirmed_at": MOMENT,
                    "last_used_step": -1,
                    "failed_attempts": 0,
                    "locked": False,
                }
            )
        conn.execute(insert(MfaSecret), rows)
    return seeded


def stored(engine: Engine) -> dict[int, tuple[str, str]]:
    """user_id -> (ciphertext, key_id) of every secret row."""
    with engine.connect() as conn:
        query = select(MfaSecret.user_id, MfaSecret.ciphertext, MfaSecret.key_id)
        return {uid: (ct, kid) for uid, ct, kid in conn.execute(query)}


def assert_all_open(engine: Engine, store: SecretStore, seeded: list[Seeded]) -> None:
    """Every seeded secret is under the active key, bound to its user, with the same codes."""
    rows = stored(engine)
    for s in seeded:
        ciphertext, kid = rows[s.user_id]
        assert kid == store.active_key_id, s.handle
        opened = store.open_secret(s.uid, ciphertext, s.handle)
        assert opened.key_id == store.active_key_id
        assert totp.code_at(opened.plaintext, MOMENT, PARAMS) == s.code()
