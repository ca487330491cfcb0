"""vectors: the NumPy vector index's rows and per-namespace versions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 21:00:00.000000

Vectors are stored as float32 bytes (BLOB on SQLite, bytea on PostgreSQL), so this runs on any server,
including a PostgreSQL without the pgvector extension. The pgvector adapter creates its own extension, table
and HNSW index on its own connection (`vectors.url`); nothing of it lives in this migration.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vector_namespaces",
        sa.Column("namespace", sa.String(length=64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("namespace", name=op.f("pk_vector_namespaces")),
    )
    op.create_table(
        "vectors",
        sa.Column("namespace", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("visibility", sa.String(length=16), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("namespace", "id", name=op.f("pk_vectors")),
    )
    with op.batch_alter_table("vectors", schema=None) as batch_op:
        batch_op.create_index("ix_vectors_namespace_owner", ["namespace", "owner_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("vectors", schema=None) as batch_op:
        batch_op.drop_index("ix_vectors_namespace_owner")
    op.drop_table("vectors")
    op.drop_table("vector_namespaces")
