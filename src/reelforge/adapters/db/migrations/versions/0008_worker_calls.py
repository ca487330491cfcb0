"""worker calls: the base URL of each worker's call server

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 10:00:00.000000

`workers.call_url` is where a worker answers interactive calls (runtime/calls.py), NULL for a worker that
serves none or has stopped serving them. The call names are not stored: every worker of one installation
serves the same calls, those of the installed applications. Written by hand: one nullable column.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("call_url", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.drop_column("call_url")
