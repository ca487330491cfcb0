"""mail: the mail queue, single-use link tokens, and each account's verification and mail preferences

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 10:00:00.000000

`mails` is the mail queue (written in the transaction of the change that causes a mail, sent at least once by the
workers); `link_tokens` keeps the sha256 of the tokens in verification and password-reset links; `mail_prefs` holds
per account the address it verified and the notices it wants. Three new tables, nothing existing changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mails",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=True),
        sa.Column("to_addr", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.Column("provider", sa.String(length=32), nullable=True),
        sa.Column("provider_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("sent_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_mails_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mails")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_mails_dedupe_key")),
    )
    with op.batch_alter_table("mails", schema=None) as batch_op:
        batch_op.create_index("ix_mails_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_mails_user_created", ["user_id", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_mails_to_addr"), ["to_addr"], unique=False)
    op.create_table(
        "link_tokens",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("used_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_link_tokens_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_link_tokens_token_hash")),
    )
    with op.batch_alter_table("link_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_link_tokens_user_id"), ["user_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_link_tokens_expires_at"), ["expires_at"], unique=False)
    op.create_table(
        "mail_prefs",
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("verified_email", sa.String(length=320), nullable=True),
        sa.Column("verified_at", sa.Float(), nullable=True),
        sa.Column("job_finished", sa.Boolean(), nullable=False),
        sa.Column("credits_low", sa.Boolean(), nullable=False),
        sa.Column("credits_low_armed", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_mail_prefs_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_mail_prefs")),
    )


def downgrade() -> None:
    op.drop_table("mail_prefs")
    with op.batch_alter_table("link_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_link_tokens_expires_at"))
        batch_op.drop_index(batch_op.f("ix_link_tokens_user_id"))
    op.drop_table("link_tokens")
    with op.batch_alter_table("mails", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mails_to_addr"))
        batch_op.drop_index("ix_mails_user_created")
        batch_op.drop_index("ix_mails_due")
    op.drop_table("mails")
