"""film: YouTube connections, pending OAuth states and resumable uploads

Revision ID: f003
Revises: f002
Create Date: 2026-12-12 12:00:00

Written by hand against apps/film/youtube_repository.py; plain CREATE TABLE / CREATE INDEX on both engines.
Tokens, PKCE verifiers and upload session URIs are stored sealed by the platform's secret box.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "f003"
down_revision = "f002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "film_youtube_connections",
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("refresh_token", sa.Text(), nullable=False),
        sa.Column("access_token", sa.Text(), nullable=True),
        sa.Column("access_expires_at", sa.Float(), nullable=True),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=True),
        sa.Column("channel_title", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_film_youtube_connections_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_film_youtube_connections")),
    )

    op.create_table(
        "film_youtube_states",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("code_verifier", sa.Text(), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_film_youtube_states_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_film_youtube_states")),
    )
    with op.batch_alter_table("film_youtube_states", schema=None) as batch_op:
        batch_op.create_index("ix_film_youtube_states_user", ["user_id", "created_at"], unique=False)
        batch_op.create_index("ix_film_youtube_states_expires", ["expires_at"], unique=False)

    op.create_table(
        "film_youtube_uploads",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("asset_id", sa.String(length=32), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("total_bytes", sa.BigInteger(), nullable=False),
        sa.Column("session_uri", sa.Text(), nullable=True),
        sa.Column("confirmed_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sessions", sa.Integer(), nullable=False),
        sa.Column("resumes", sa.Integer(), nullable=False),
        sa.Column("video_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_film_youtube_uploads_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_film_youtube_uploads")),
    )
    with op.batch_alter_table("film_youtube_uploads", schema=None) as batch_op:
        batch_op.create_index("ix_film_youtube_uploads_user", ["user_id", "created_at"], unique=False)


def downgrade() -> None:
    op.drop_table("film_youtube_uploads")
    op.drop_table("film_youtube_states")
    op.drop_table("film_youtube_connections")
