"""observability: trace context on jobs, alarm state and history, queue samples, model invocations

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 03:39:42.140471

Generated with autogenerate, then reviewed: `Text()` qualified as `sa.Text()`, quotes normalized. On SQLite
the jobs changes (one nullable column, one index) run as plain ALTER TABLE ADD COLUMN / CREATE INDEX inside
batch mode; the table is not copied.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "alarm_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("message", sa.String(length=500), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alarm_history")),
    )
    with op.batch_alter_table("alarm_history", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alarm_history_ts"), ["ts"], unique=False)

    op.create_table(
        "alarms",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("message", sa.String(length=500), nullable=False),
        sa.Column("details", JSON, nullable=False),
        sa.Column("changed_at", sa.Float(), nullable=False),
        sa.Column("raised_at", sa.Float(), nullable=True),
        sa.Column("resolved_at", sa.Float(), nullable=True),
        sa.Column("evaluated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_alarms")),
    )
    op.create_table(
        "model_invocations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("task", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=True),
        sa.Column("worker_id", sa.String(length=200), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("error", sa.String(length=100), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("load_s", sa.Float(), nullable=True),
        sa.Column("unit", sa.String(length=32), nullable=True),
        sa.Column("units", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_invocations")),
    )
    with op.batch_alter_table("model_invocations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_invocations_ts"), ["ts"], unique=False)

    op.create_table(
        "queue_samples",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.Column("running", sa.Integer(), nullable=False),
        sa.Column("oldest_age_s", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_samples")),
    )
    with op.batch_alter_table("queue_samples", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_queue_samples_ts"), ["ts"], unique=False)

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("trace_context", JSON, nullable=True))
        batch_op.create_index("ix_jobs_finished", ["finished_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_finished")
        batch_op.drop_column("trace_context")

    with op.batch_alter_table("queue_samples", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_queue_samples_ts"))
    op.drop_table("queue_samples")

    with op.batch_alter_table("model_invocations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_invocations_ts"))
    op.drop_table("model_invocations")

    op.drop_table("alarms")

    with op.batch_alter_table("alarm_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alarm_history_ts"))
    op.drop_table("alarm_history")
