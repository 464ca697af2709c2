"""API tokens can be revoked and rotated: when a user was revoked and last used, and the
auth epoch that every revocation or rotation bumps (servers drop cached token lookups when it
moves). Existing users stay active, with no last use recorded.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # nullable columns: both backends add them in place, without copying the table
    op.add_column("api_users", sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("api_users", sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    epoch = op.create_table(
        "auth_epoch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_auth_epoch"),
    )
    op.bulk_insert(epoch, [{"id": 1, "epoch": 0}])


def downgrade() -> None:
    op.drop_table("auth_epoch")
    with op.batch_alter_table("api_users") as batch:
        batch.drop_column("last_used_at")
        batch.drop_column("revoked_at")
