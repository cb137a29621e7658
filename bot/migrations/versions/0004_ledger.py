"""The action ledger: each attempt's tries and when the latest began (so nothing takes over a request that may
still be on its way to Stripe), what it set aside on an order, and what settling it later needs.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 09:00:00
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

attempts = sa.table(
    "action_attempts",
    sa.column("id", sa.Integer()),
    sa.column("key", sa.String()),
    sa.column("action", sa.String()),
    sa.column("target_id", sa.BigInteger()),
    sa.column("status", sa.String()),
    sa.column("amount", sa.BigInteger()),
    sa.column("currency", sa.String()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("finished_at", sa.DateTime(timezone=True)),
    sa.column("tried_at", sa.DateTime(timezone=True)),
    sa.column("sent_at", sa.DateTime(timezone=True)),
    sa.column("reserved", sa.BigInteger()),
    sa.column("details", sa.JSON()),
    sa.column("request", sa.JSON()),
)
orders = sa.table(
    "orders",
    sa.column("id", sa.Integer()),
    sa.column("number", sa.String()),
    sa.column("customer_id", sa.Integer()),
    sa.column("stripe_payment_intent_id", sa.String()),
)
customers = sa.table(
    "customers",
    sa.column("id", sa.Integer()),
    sa.column("stripe_customer_id", sa.String()),
    sa.column("default_payment_method_id", sa.String()),
)


def upgrade() -> None:
    with op.batch_alter_table("action_attempts") as batch_op:
        batch_op.add_column(sa.Column("tries", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("tried_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("reserved", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("request", sa.JSON(), nullable=True))
        batch_op.create_check_constraint("action_attempt_reserved_not_negative", "reserved >= 0")
    connection = op.get_bind()
    for row in connection.execute(sa.select(attempts)).mappings():
        connection.execute(
            attempts.update().where(attempts.c.id == row["id"]).values(**_carried_over(connection, row))
        )
    with op.batch_alter_table("action_attempts") as batch_op:
        batch_op.alter_column("tried_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.alter_column("sent_at", existing_type=sa.DateTime(timezone=True), nullable=False)
    op.create_index("ix_action_attempts_status_tried", "action_attempts", ["status", "tried_at"])


def _carried_over(connection, row) -> dict:
    """An attempt made before, in the ledger's terms. A pending refund or charge (its answer from Stripe lost)
    gets what the settle job needs to find it in Stripe, and a refund keeps holding its amount; other pending
    changes, which hold no money and whose state webhooks bring in, end."""
    details = row["details"] or {}
    asked = details.get("request") or {}
    tried_at = row["created_at"]
    if details.get("tried_at"):  # a retry's, kept as text: in the database's own form
        tried_at = datetime.fromisoformat(details["tried_at"]).astimezone(UTC)
        if connection.dialect.name == "sqlite":
            tried_at = tried_at.replace(tzinfo=None)
    values: dict = {"tried_at": tried_at, "sent_at": tried_at, "request": asked or None}
    if row["status"] != "pending":
        return values
    if row["action"] == "refund":
        order = (
            connection.execute(sa.select(orders).where(orders.c.id == row["target_id"])).mappings().first()
        )
        if order is not None:
            values["reserved"] = row["amount"] or 0
            values["request"] = {
                **asked,
                "payment_intent": order["stripe_payment_intent_id"],
                "order_number": order["number"],
                "amount": row["amount"],
                "asked": f"a refund of order #{order['number']} asked before the upgrade",
            }
            return values
    if row["action"] == "new_order":
        customer = (
            connection.execute(sa.select(customers).where(customers.c.id == row["target_id"]))
            .mappings()
            .first()
        )
        if customer is not None and asked:
            values["request"] = {
                **asked,
                "stripe_customer": customer["stripe_customer_id"],
                "payment_method": customer["default_payment_method_id"],
                "currency": row["currency"],
                "asked": "a charge asked before the upgrade",
            }
            return values
    return {
        **values,
        "status": "failed",
        "finished_at": row["created_at"],
        "key": f"{row['key']}!failed:{row['id']}",
        "details": {
            **details,
            "error": "ended by the upgrade: its state in Stripe is brought in by webhooks",
        },
    }


def downgrade() -> None:
    op.drop_index("ix_action_attempts_status_tried", table_name="action_attempts")
    with op.batch_alter_table("action_attempts") as batch_op:
        batch_op.drop_constraint("action_attempt_reserved_not_negative", type_="check")
        batch_op.drop_column("request")
        batch_op.drop_column("reserved")
        batch_op.drop_column("sent_at")
        batch_op.drop_column("tried_at")
        batch_op.drop_column("tries")
