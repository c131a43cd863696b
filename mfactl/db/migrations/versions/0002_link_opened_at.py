"""action_tokens.opened_at: a link opens exactly once

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 03:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import mfactl.db.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("action_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("opened_at", mfactl.db.models.UtcDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("action_tokens", schema=None) as batch_op:
        batch_op.drop_column("opened_at")
