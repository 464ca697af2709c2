"""Plan runs: one row per run from admission to its end, so every replica of the service
reads the same runs and a restart loses none. Existing tables are untouched.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = {
    "ix_runs_user_created_at": ["user", "created_at"],
    "ix_runs_bucket_created_at": ["bucket", "created_at"],
    "ix_runs_status_created_at": ["status", "created_at"],
    "ix_runs_status_lease_expires_at": ["status", "lease_expires_at"],
    "ix_runs_created_at": ["created_at"],
    "ix_runs_finished_at": ["finished_at"],
}


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(128), nullable=False),
        sa.Column("user", sa.String(128), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("objective", sa.Text(), nullable=False),
        sa.Column("planner", sa.String(200), nullable=True),
        sa.Column("planner_version", sa.String(100), nullable=True),
        sa.Column("bucket", sa.String(200), nullable=True),
        sa.Column("config_id", sa.Integer(), nullable=True),
        sa.Column("config_version", sa.Integer(), nullable=True),
        sa.Column("config_digest", sa.String(64), nullable=True),
        sa.Column("context_kind", sa.String(100), nullable=True),
        sa.Column("context_digest", sa.String(64), nullable=False),
        sa.Column("context", sa.LargeBinary(), nullable=False),
        sa.Column("timeout_s", sa.Float(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("plan", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", name="pk_runs"),
    )
    for name, columns in _INDEXES.items():
        op.create_index(name, "runs", columns)


def downgrade() -> None:
    for name in reversed(_INDEXES):
        op.drop_index(name, table_name="runs")
    op.drop_table("runs")
