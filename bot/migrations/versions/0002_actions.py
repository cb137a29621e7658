"""Actions: attempts kept once per key, refund reservations on orders, the product catalogue; a covering
index for multi-word search.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 22:26:20
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_customer_search_terms_customer_term", "customer_search_terms", ["customer_id", "term"]
    )
    op.drop_index("ix_customer_search_terms_customer_id", table_name="customer_search_terms")
    op.create_table(
        "action_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("stripe_idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("target_type", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("stripe_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="action_attempt_status"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
        sa.UniqueConstraint("stripe_idempotency_key"),
    )
    op.create_index("ix_action_attempts_target", "action_attempts", ["target_type", "target_id"])
    op.create_table(
        "products",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("unit_amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.CheckConstraint("unit_amount >= 0", name="product_unit_amount_not_negative"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", "currency", name="uq_products_name_currency"),
    )
    with op.batch_alter_table("orders") as batch_op:
        batch_op.add_column(
            sa.Column("amount_refund_pending", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.create_check_constraint(
            "order_refund_pending_within_total",
            "amount_refund_pending >= 0 AND amount_refunded + amount_refund_pending <= total",
        )


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch_op:
        batch_op.drop_constraint("order_refund_pending_within_total", type_="check")
        batch_op.drop_column("amount_refund_pending")
    op.drop_table("products")
    op.drop_index("ix_action_attempts_target", table_name="action_attempts")
    op.drop_table("action_attempts")
    op.create_index("ix_customer_search_terms_customer_id", "customer_search_terms", ["customer_id"])
    op.drop_index("ix_customer_search_terms_customer_term", table_name="customer_search_terms")
