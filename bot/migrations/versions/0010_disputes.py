"""Disputes: each dispute of a payment as Stripe has it, what lost ones take from their order (`orders.amount_lost`,
in the covering index that lifetime value is read from), and the alerts posted for each dispute's steps.

Existing orders start with nothing lost; the import (or Stripe's next dispute events) brings disputes in.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-14 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_TOTALS = ["customer_id", "currency", "total", "amount_refunded"]


def upgrade() -> None:
    # A column with a default is added in place on both backends (no table rebuild on SQLite).
    op.add_column("orders", sa.Column("amount_lost", sa.BigInteger(), server_default="0", nullable=False))
    op.drop_index("ix_orders_customer_totals", table_name="orders")
    op.create_index("ix_orders_customer_totals", "orders", [*_TOTALS, "amount_lost"])
    op.create_table(
        "disputes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("stripe_dispute_id", sa.String(length=255), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("payment_id", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("due_by", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("amount_lost", sa.BigInteger(), server_default="0", nullable=False),
        sa.CheckConstraint("amount >= 0", name="dispute_amount_not_negative"),
        sa.CheckConstraint("amount_lost >= 0", name="dispute_lost_not_negative"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("stripe_dispute_id"),
    )
    op.create_index("ix_disputes_order", "disputes", ["order_id", "created_at"])
    op.create_index(op.f("ix_disputes_payment_id"), "disputes", ["payment_id"])
    op.create_table(
        "dispute_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dispute_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("message_ts", sa.String(length=32), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["dispute_id"], ["disputes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dispute_id", "step", name="uq_dispute_alerts_dispute_step"),
    )


def downgrade() -> None:
    op.drop_table("dispute_alerts")
    op.drop_index(op.f("ix_disputes_payment_id"), table_name="disputes")
    op.drop_index("ix_disputes_order", table_name="disputes")
    op.drop_table("disputes")
    op.drop_index("ix_orders_customer_totals", table_name="orders")
    op.create_index("ix_orders_customer_totals", "orders", _TOTALS)
    with op.batch_alter_table("orders", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("amount_lost")
