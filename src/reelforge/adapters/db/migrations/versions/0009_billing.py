"""billing: credit purchases (Stripe Checkout) and the provider events handled

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 10:00:00.000000

`billing_purchases` holds one row per Checkout Session with what the provider reported (paid, amount refunded)
and what moved on the ledger because of it (credits granted, revoked, and the shortfall a refund could not take
back). `billing_events` holds one row per provider event handled: its id is the primary key, the de-duplication
of webhooks delivered more than once. Written by hand: two plain tables on both engines.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "billing_purchases",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("pack_id", sa.String(length=40), nullable=False),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("session_id", sa.String(length=255), nullable=True),
        sa.Column("payment_intent", sa.String(length=255), nullable=True),
        sa.Column("checkout_url", sa.Text(), nullable=True),
        sa.Column("customer_email", sa.String(length=320), nullable=True),
        sa.Column("paid", sa.Boolean(), nullable=False),
        sa.Column("amount_refunded", sa.BigInteger(), nullable=False),
        sa.Column("credits_granted", sa.BigInteger(), nullable=False),
        sa.Column("credits_revoked", sa.BigInteger(), nullable=False),
        sa.Column("credits_shortfall", sa.BigInteger(), nullable=False),
        sa.Column("receipt_number", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("paid_at", sa.Float(), nullable=True),
        sa.Column("refunded_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["users.id"], name=op.f("fk_billing_purchases_account_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_purchases")),
        sa.UniqueConstraint("session_id", name=op.f("uq_billing_purchases_session_id")),
    )
    with op.batch_alter_table("billing_purchases", schema=None) as batch_op:
        batch_op.create_index("ix_billing_purchases_account_created", ["account_id", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_billing_purchases_payment_intent"), ["payment_intent"], unique=False)
    op.create_table(
        "billing_events",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("purchase_id", sa.String(length=32), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("created", sa.Float(), nullable=True),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_events")),
    )
    with op.batch_alter_table("billing_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_billing_events_purchase_id"), ["purchase_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("billing_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_billing_events_purchase_id"))
    op.drop_table("billing_events")
    with op.batch_alter_table("billing_purchases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_billing_purchases_payment_intent"))
        batch_op.drop_index("ix_billing_purchases_account_created")
    op.drop_table("billing_purchases")
