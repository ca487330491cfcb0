"""film: projects and their read-only shares

Revision ID: f001
Revises:
Create Date: 2026-12-10 12:00:00

Written by hand against apps/film/repository.py; plain CREATE TABLE / CREATE INDEX on both engines.
The application's own branch (label "film"), depending on the core's first revision (users).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "f001"
down_revision = None
branch_labels = ("film",)
depends_on = "0001"

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "film_projects",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("script", sa.Text(), nullable=False),
        sa.Column("script_format", sa.String(length=16), nullable=False),
        sa.Column("script_bytes", sa.Integer(), nullable=False),
        sa.Column("characters", JSON, nullable=False),
        sa.Column("backgrounds", JSON, nullable=False),
        sa.Column("music", JSON, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("breakdown", JSON, nullable=True),
        sa.Column("analyzed_revision", sa.Integer(), nullable=True),
        sa.Column("analyzed_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_film_projects_owner_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_film_projects")),
    )
    with op.batch_alter_table("film_projects", schema=None) as batch_op:
        batch_op.create_index("ix_film_projects_owner_created", ["owner_id", "created_at"], unique=False)

    op.create_table(
        "film_project_shares",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["film_projects.id"],
                                name=op.f("fk_film_project_shares_project_id_film_projects"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_film_project_shares_owner_id_users"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_film_project_shares_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_film_project_shares")),
        sa.UniqueConstraint("project_id", "user_id", name="uq_film_project_shares_user"),
        sa.UniqueConstraint("project_id", "email", name="uq_film_project_shares_email"),
    )
    with op.batch_alter_table("film_project_shares", schema=None) as batch_op:
        batch_op.create_index("ix_film_project_shares_user", ["user_id"], unique=False)
        batch_op.create_index("ix_film_project_shares_email", ["email"], unique=False)


def downgrade() -> None:
    op.drop_table("film_project_shares")
    op.drop_table("film_projects")
