"""A covering index for a customer's order totals, and one for the alerts still to be resolved.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10 09:00:00
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_orders_customer_totals", "orders", ["customer_id", "currency", "total", "amount_refunded"]
    )
    op.create_index("ix_missed_payment_alerts_resolved", "missed_payment_alerts", ["resolved_at"])


def downgrade() -> None:
    op.drop_index("ix_missed_payment_alerts_resolved", table_name="missed_payment_alerts")
    op.drop_index("ix_orders_customer_totals", table_name="orders")
