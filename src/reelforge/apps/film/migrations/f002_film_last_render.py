"""film: the project's last render job

Revision ID: f002
Revises: f001
Create Date: 2026-12-06 04:00:00

The `film.render` job that last rendered the project, so a project page finds its film.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "f002"
down_revision = "f001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("film_projects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_render_job_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("film_projects", schema=None) as batch_op:
        batch_op.drop_column("last_render_job_id")
