"""Bucket contexts: the context each bucket is planned with by a batch. Existing tables are
untouched.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bucket_contexts",
        sa.Column("bucket", sa.String(200), nullable=False),
        sa.Column("context_digest", sa.String(64), nullable=False),
        sa.Column("context", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("bucket", name="pk_bucket_contexts"),
    )


def downgrade() -> None:
    op.drop_table("bucket_contexts")
