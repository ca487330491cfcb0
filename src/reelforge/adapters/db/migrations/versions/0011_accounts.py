"""accounts: the audit trail, external (OIDC) identities, API key scopes and account deletions

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-10 10:00:00.000000

- `audit_log`: who did what to whom, from where (IP, request id); append-only, no foreign key, so an entry
  outlives what it names. `subject_id` is the account an entry concerns (the actor or the target account),
  which is what a user's own view lists.
- `external_identities`: an OIDC issuer's subject mapped to an account (one account may have several).
- `api_keys.scopes`: the scopes a key is limited to (JSON list); NULL is a full-access key, as every key
  made before this revision.
- `account_deletions`: accounts being deleted; the sweeper finishes what the request could not.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("actor_id", sa.String(length=32), nullable=True),
        sa.Column("target_type", sa.String(length=32), nullable=True),
        sa.Column("target_id", sa.String(length=100), nullable=True),
        sa.Column("subject_id", sa.String(length=32), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("details", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_ts", ["ts", "id"], unique=False)
        batch_op.create_index("ix_audit_log_subject", ["subject_id", "ts"], unique=False)
        batch_op.create_index("ix_audit_log_actor", ["actor_id", "ts"], unique=False)
        batch_op.create_index("ix_audit_log_target", ["target_id", "ts"], unique=False)
        batch_op.create_index("ix_audit_log_action", ["action", "ts"], unique=False)

    op.create_table(
        "external_identities",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("issuer", sa.String(length=500), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_seen_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_external_identities_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_external_identities")),
        sa.UniqueConstraint("issuer", "subject", name="uq_external_identities_issuer_subject"),
    )
    with op.batch_alter_table("external_identities", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_external_identities_user_id"), ["user_id"], unique=False)

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scopes", _json(), nullable=True))

    op.create_table(
        "account_deletions",
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("requested_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_account_deletions_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_account_deletions")),
    )
    with op.batch_alter_table("account_deletions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_account_deletions_finished_at"), ["finished_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("account_deletions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_account_deletions_finished_at"))
    op.drop_table("account_deletions")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("scopes")
    with op.batch_alter_table("external_identities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_external_identities_user_id"))
    op.drop_table("external_identities")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        for name in ("ix_audit_log_action", "ix_audit_log_target", "ix_audit_log_actor", "ix_audit_log_subject",
                     "ix_audit_log_ts"):
            batch_op.drop_index(name)
    op.drop_table("audit_log")
