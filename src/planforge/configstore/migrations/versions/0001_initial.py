"""The initial schema: versioned configurations, name counters, bucket history, presets and
their tags, and the audit log.

Revision ID: 0001
Revises:
Create Date: 2025-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# The first schema, table by table: long because it is a list of definitions, not logic.
def upgrade() -> None:
    op.create_table(
        "planner_configs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("toml", sa.Text(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["planner_configs.id"],
            name="fk_planner_configs_parent_id_planner_configs",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_planner_configs"),
        sa.UniqueConstraint("name", "version", name="uq_planner_configs_name_version"),
    )
    op.create_index(
        "ux_planner_configs_active_name",
        "planner_configs",
        ["name"],
        unique=True,
        sqlite_where=sa.text("is_active = 1"),
        postgresql_where=sa.text("is_active"),
    )
    op.create_index("ix_planner_configs_parent_id", "planner_configs", ["parent_id"])

    op.create_table(
        "config_name_counters",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("last_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_config_name_counters"),
    )

    op.create_table(
        "bucket_assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.String(200), nullable=False),
        sa.Column("config_id", sa.Integer(), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("assigned_by", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["config_id"],
            ["planner_configs.id"],
            name="fk_bucket_assignments_config_id_planner_configs",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_bucket_assignments"),
    )
    op.create_index("ix_bucket_assignments_bucket_id", "bucket_assignments", ["bucket", "id"])
    op.create_index(
        "ix_bucket_assignments_bucket_assigned_at",
        "bucket_assignments",
        ["bucket", "assigned_at"],
    )
    op.create_index("ix_bucket_assignments_config_id", "bucket_assignments", ["config_id"])

    op.create_table(
        "presets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("toml", sa.Text(), nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("downloads", sa.Integer(), nullable=False),
        sa.Column("rating_sum", sa.Integer(), nullable=False),
        sa.Column("rating_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_presets"),
        sa.UniqueConstraint("name", name="uq_presets_name"),
    )

    op.create_table(
        "preset_tags",
        sa.Column("preset_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(100), nullable=False),
        sa.ForeignKeyConstraint(
            ["preset_id"],
            ["presets.id"],
            name="fk_preset_tags_preset_id_presets",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("preset_id", "tag", name="pk_preset_tags"),
    )
    op.create_index("ix_preset_tags_tag", "preset_tags", ["tag"])

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("entity", sa.String(100), nullable=False),
        sa.Column("entity_id", sa.String(200), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_index("ix_preset_tags_tag", table_name="preset_tags")
    op.drop_table("preset_tags")
    op.drop_table("presets")
    op.drop_index("ix_bucket_assignments_config_id", table_name="bucket_assignments")
    op.drop_index("ix_bucket_assignments_bucket_assigned_at", table_name="bucket_assignments")
    op.drop_index("ix_bucket_assignments_bucket_id", table_name="bucket_assignments")
    op.drop_table("bucket_assignments")
    op.drop_table("config_name_counters")
    op.drop_index("ix_planner_configs_parent_id", table_name="planner_configs")
    op.drop_index("ux_planner_configs_active_name", table_name="planner_configs")
    op.drop_table("planner_configs")
