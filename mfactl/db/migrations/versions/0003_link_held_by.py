"""action_tokens.held_by, held_until: the browser that opened a link on the setup page

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import mfactl.db.models

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("action_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("held_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("held_until", mfactl.db.models.UtcDateTime(), nullable=True))
        batch_op.create_index("ix_action_tokens_held_by", ["held_by"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("action_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_action_tokens_held_by")
        batch_op.drop_column("held_until")
        batch_op.drop_column("held_by")
