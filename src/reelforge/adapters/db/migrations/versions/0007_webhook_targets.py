"""webhook targets: each delivery's target host, and a circuit breaker row per host

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 12:00:00.000000

The core's revision after 0006 (0004 is an application's branch, which core revisions never chain
on). `deliveries.host` is `host:port` of the delivery's URL, the key of the breaker in `webhook_circuits`.
Pending deliveries get their host here; finished ones keep NULL (they are never sent again). Written by hand:
one nullable column and one small table, plain ALTER TABLE / CREATE TABLE on both engines.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _host(url: str) -> str:
    # A copy of adapters/events/http.target_host as it was written, so later changes there never alter this.
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower().rstrip(".")
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return url[:255]
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"[:255]


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("host", sa.String(length=255), nullable=True))
    op.create_table(
        "webhook_circuits",
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("open_until", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("host", name=op.f("pk_webhook_circuits")),
    )
    bind = op.get_bind()
    deliveries = sa.table("deliveries", sa.column("id", sa.String()), sa.column("url", sa.String()),
                          sa.column("status", sa.String()), sa.column("host", sa.String()))
    pending = bind.execute(sa.select(deliveries.c.id, deliveries.c.url).where(deliveries.c.status == "pending")).all()
    for delivery_id, url in pending:
        bind.execute(sa.update(deliveries).where(deliveries.c.id == delivery_id).values(host=_host(url)))


def downgrade() -> None:
    op.drop_table("webhook_circuits")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("host")
