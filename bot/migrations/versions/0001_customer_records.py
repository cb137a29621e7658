"""Customer records: customers, search terms, subscriptions and plans, orders, payments, refunds, audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-24 21:47:01.716706
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.BigInteger(), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("stripe_id", sa.String(length=255), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_events_target", "audit_events", ["target_type", "target_id"], unique=False)

    op.create_table(
        "customers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stripe_customer_id", sa.String(length=255), nullable=True),
        sa.Column("card_brand", sa.String(length=32), nullable=True),
        sa.Column("card_last4", sa.String(length=4), nullable=True),
        sa.Column("card_exp_month", sa.Integer(), nullable=True),
        sa.Column("card_exp_year", sa.Integer(), nullable=True),
        sa.Column("default_payment_method_id", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("stripe_customer_id"),
    )
    op.create_table(
        "customer_search_terms",
        sa.Column(
            "term",
            sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("term", "customer_id"),
    )
    op.create_index(
        op.f("ix_customer_search_terms_customer_id"), "customer_search_terms", ["customer_id"], unique=False
    )

    op.create_table(
        "recurring",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("product", sa.Text(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("interval", sa.String(length=8), nullable=False),
        sa.Column("interval_count", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("canceled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False),
        sa.Column("current_period_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("payments_paused", sa.Boolean(), nullable=False),
        sa.Column("paused_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_bill_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stripe_subscription_id", sa.String(length=255), nullable=True),
        sa.Column("installments_total", sa.Integer(), nullable=True),
        sa.Column("installments_paid", sa.Integer(), nullable=True),
        sa.CheckConstraint("interval IN ('day', 'week', 'month', 'year')", name="recurring_interval"),
        sa.CheckConstraint(
            "kind = 'subscription' OR (installments_total > 0 AND installments_paid >= 0 AND installments_paid <= installments_total)",
            name="recurring_plan_installments",
        ),
        sa.CheckConstraint("kind IN ('subscription', 'payment_plan')", name="recurring_kind"),
        sa.CheckConstraint(
            "status IN ('active', 'trialing', 'past_due', 'paused', 'incomplete', 'canceled', 'completed')",
            name="recurring_status",
        ),
        sa.CheckConstraint("amount >= 0", name="recurring_amount_not_negative"),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("stripe_subscription_id"),
    )
    op.create_index("ix_recurring_customer", "recurring", ["customer_id", "kind", "started_at"], unique=False)

    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("amount_refunded", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("recurring_id", sa.Integer(), nullable=True),
        sa.Column("stripe_payment_intent_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_charge_id", sa.String(length=255), nullable=True),
        sa.Column("card_brand", sa.String(length=32), nullable=True),
        sa.Column("card_last4", sa.String(length=4), nullable=True),
        sa.Column("billing_name", sa.Text(), nullable=True),
        sa.Column("billing_line1", sa.Text(), nullable=True),
        sa.Column("billing_line2", sa.Text(), nullable=True),
        sa.Column("billing_city", sa.Text(), nullable=True),
        sa.Column("billing_state", sa.Text(), nullable=True),
        sa.Column("billing_postal_code", sa.String(length=32), nullable=True),
        sa.Column("billing_country", sa.String(length=2), nullable=True),
        sa.CheckConstraint(
            "source IN ('checkout', 'internal', 'renewal', 'instalment')", name="order_source"
        ),
        sa.CheckConstraint("status IN ('paid', 'partially_refunded', 'refunded')", name="order_status"),
        sa.CheckConstraint(
            "amount_refunded >= 0 AND amount_refunded <= total", name="order_refund_within_total"
        ),
        sa.CheckConstraint("total >= 0", name="order_total_not_negative"),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["recurring_id"], ["recurring.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("number"),
        sa.UniqueConstraint("stripe_charge_id"),
        sa.UniqueConstraint("stripe_payment_intent_id"),
    )
    op.create_index("ix_orders_customer_created", "orders", ["customer_id", "created_at", "id"], unique=False)
    op.create_index(op.f("ix_orders_recurring_id"), "orders", ["recurring_id"], unique=False)

    op.create_table(
        "order_lines",
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_amount", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("quantity > 0", name="order_line_quantity_positive"),
        sa.CheckConstraint("unit_amount >= 0", name="order_line_unit_amount_not_negative"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("order_id", "position"),
    )
    op.create_table(
        "payments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recurring_id", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stripe_invoice_id", sa.String(length=255), nullable=True),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("status IN ('paid', 'failed', 'open', 'void')", name="payment_status"),
        sa.CheckConstraint("amount >= 0", name="payment_amount_not_negative"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["recurring_id"], ["recurring.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("order_id"),
        sa.UniqueConstraint("stripe_invoice_id"),
    )
    op.create_index("ix_payments_recurring_due", "payments", ["recurring_id", "due_at"], unique=False)
    op.create_index("ix_payments_status", "payments", ["status", "recurring_id"], unique=False)

    op.create_table(
        "refunds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("stripe_refund_id", sa.String(length=255), nullable=True),
        sa.Column("requested_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount > 0", name="refund_amount_positive"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("stripe_refund_id"),
    )
    op.create_index(op.f("ix_refunds_order_id"), "refunds", ["order_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_refunds_order_id"), table_name="refunds")

    op.drop_table("refunds")
    op.drop_index("ix_payments_status", table_name="payments")
    op.drop_index("ix_payments_recurring_due", table_name="payments")

    op.drop_table("payments")
    op.drop_table("order_lines")
    op.drop_index(op.f("ix_orders_recurring_id"), table_name="orders")
    op.drop_index("ix_orders_customer_created", table_name="orders")

    op.drop_table("orders")
    op.drop_index("ix_recurring_customer", table_name="recurring")

    op.drop_table("recurring")
    op.drop_index(op.f("ix_customer_search_terms_customer_id"), table_name="customer_search_terms")

    op.drop_table("customer_search_terms")
    op.drop_table("customers")
    op.drop_index("ix_audit_events_target", table_name="audit_events")

    op.drop_table("audit_events")
