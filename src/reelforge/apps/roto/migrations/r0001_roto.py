"""roto: sessions, objects, prompts, prompted masks, propagated spans

Revision ID: r0001
Revises:
Create Date: 2026-12-06 00:00:00

Written by hand against apps/roto/repository.py; plain CREATE TABLE / CREATE INDEX on both engines. The
application's own branch (label "roto"), needing the core's users table (0001).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "r0001"
down_revision = None
branch_labels = ("roto",)
depends_on = "0001"

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _session_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["session_id"], ["roto_sessions.id"],
                                   name=op.f(f"fk_{table}_session_id_roto_sessions"), ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "roto_sessions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("asset_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("engine", sa.String(length=100), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("frame_count", sa.Integer(), nullable=False),
        sa.Column("fps", sa.Float(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("video", JSON, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("next_object_id", sa.Integer(), nullable=False),
        sa.Column("propagation", JSON, nullable=True),
        sa.Column("propagation_job_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_roto_sessions_owner_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roto_sessions")),
    )
    with op.batch_alter_table("roto_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_roto_sessions_owner_created", ["owner_id", "created_at"], unique=False)

    op.create_table(
        "roto_objects",
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        _session_fk("roto_objects"),
        sa.PrimaryKeyConstraint("session_id", "object_id", name=op.f("pk_roto_objects")),
    )

    op.create_table(
        "roto_prompts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.Integer(), nullable=False),
        sa.Column("frame", sa.Integer(), nullable=False),
        sa.Column("points", JSON, nullable=False),
        sa.Column("box", JSON, nullable=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        _session_fk("roto_prompts"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roto_prompts")),
    )
    with op.batch_alter_table("roto_prompts", schema=None) as batch_op:
        batch_op.create_index("ix_roto_prompts_session_frame", ["session_id", "frame"], unique=False)

    op.create_table(
        "roto_masks",
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("frame", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("object_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("prompt_key", sa.String(length=64), nullable=False),
        sa.Column("rle", JSON, nullable=False),
        sa.Column("area", sa.Integer(), nullable=False),
        sa.Column("bbox", JSON, nullable=True),
        sa.Column("engine", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        _session_fk("roto_masks"),
        sa.PrimaryKeyConstraint("session_id", "frame", "object_id", name=op.f("pk_roto_masks")),
    )

    op.create_table(
        "roto_spans",
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("start", sa.Integer(), nullable=False),
        sa.Column("stop", sa.Integer(), nullable=False),
        sa.Column("asset_id", sa.String(length=32), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        _session_fk("roto_spans"),
        sa.PrimaryKeyConstraint("session_id", "key", name=op.f("pk_roto_spans")),
    )


def downgrade() -> None:
    op.drop_table("roto_spans")
    op.drop_table("roto_masks")
    op.drop_table("roto_prompts")
    op.drop_table("roto_objects")
    op.drop_table("roto_sessions")
