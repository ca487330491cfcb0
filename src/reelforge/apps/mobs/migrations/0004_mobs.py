"""mobs: videos, mobs, mob events, re-cluster runs

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 21:00:00

Written by hand against apps/mobs/repository.py; plain CREATE TABLE / CREATE INDEX on both engines.
The application's own branch (label "mobs") off the core's 0003: core migrations never chain on it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = ("mobs",)
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "videos",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("upload_id", sa.String(length=32), nullable=True),
        sa.Column("asset_id", sa.String(length=32), nullable=True),
        sa.Column("caption", sa.Text(), nullable=False),
        sa.Column("filename", sa.String(length=500), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("visibility", sa.String(length=16), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("scores", JSON, nullable=True),
        sa.Column("analysis", JSON, nullable=True),
        sa.Column("embedding", sa.LargeBinary(), nullable=True),
        sa.Column("raw_features", sa.LargeBinary(), nullable=True),
        sa.Column("thumbnail_asset_id", sa.String(length=32), nullable=True),
        sa.Column("mob_id", sa.String(length=32), nullable=True),
        sa.Column("job_id", sa.String(length=32), nullable=True),
        sa.Column("participation_model", sa.String(length=100), nullable=True),
        sa.Column("embed_model", sa.String(length=100), nullable=True),
        sa.Column("embed_model_version", sa.String(length=100), nullable=True),
        sa.Column("error_code", sa.String(length=100), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("analyzed_job_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("analyzed_at", sa.Float(), nullable=True),
        sa.Column("validated_at", sa.Float(), nullable=True),
        sa.Column("deleted_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_videos_owner_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_videos")),
        sa.UniqueConstraint("upload_id", name=op.f("uq_videos_upload_id")),
    )
    with op.batch_alter_table("videos", schema=None) as batch_op:
        batch_op.create_index("ix_videos_owner_created", ["owner_id", "created_at"], unique=False)
        batch_op.create_index("ix_videos_feed_new", ["status", "visibility", "validated_at"], unique=False)
        batch_op.create_index("ix_videos_feed_score", ["status", "visibility", "score"], unique=False)
        batch_op.create_index("ix_videos_mob", ["mob_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_videos_job_id"), ["job_id"], unique=False)

    op.create_table(
        "mobs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("top_terms", JSON, nullable=False),
        sa.Column("term_counts", JSON, nullable=False),
        sa.Column("centroid", sa.LargeBinary(), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("merged_into", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mobs")),
    )
    with op.batch_alter_table("mobs", schema=None) as batch_op:
        batch_op.create_index("ix_mobs_status", ["status"], unique=False)

    op.create_table(
        "mob_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("mob_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("details", JSON, nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mob_events")),
    )
    with op.batch_alter_table("mob_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mob_events_run_id"), ["run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_mob_events_mob_id"), ["mob_id"], unique=False)

    op.create_table(
        "recluster_runs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("runner", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("videos", sa.Integer(), nullable=False),
        sa.Column("k", sa.Integer(), nullable=True),
        sa.Column("criterion", sa.String(length=64), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("model_version", sa.String(length=100), nullable=False),
        sa.Column("details", JSON, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recluster_runs")),
    )
    with op.batch_alter_table("recluster_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_recluster_runs_started_at"), ["started_at"], unique=False)


def downgrade() -> None:
    op.drop_table("recluster_runs")
    op.drop_table("mob_events")
    op.drop_table("mobs")
    op.drop_table("videos")
