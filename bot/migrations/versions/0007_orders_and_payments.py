"""Orders as the customer placed them, and their payments: renewals and instalments become payments of the order
that started their subscription or plan; each payment carries what paid it and what was refunded of it.

The old shape had one order per payment. Upgrading in place:
- a checkout's or internal order's one payment becomes a payment row of its own;
- each subscription or plan keeps one order, its earliest (or a new one when none was paid yet), and every payment
  of it, paid or not, becomes that order's; the other orders it had are folded into it (their refunds, audit
  entries and the ledger's attempts follow), and their numbers open the order they went into
  (folded_order_numbers); on SQLite order ids are never handed out again (AUTOINCREMENT), so neither is a number;
- a refund belongs to a payment, and the ledger's refund attempts (and what they hold back) move to the payment;
- each order's totals and status are added up again from its payments.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 01:00:00
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# SQLite's constraints made without a name get one here, so the table rebuild can drop them.
NAMING = {
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
}

orders = sa.table(
    "orders",
    sa.column("id", sa.Integer),
    sa.column("number", sa.String),
    sa.column("customer_id", sa.Integer),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("currency", sa.String),
    sa.column("total", sa.BigInteger),
    sa.column("amount_refunded", sa.BigInteger),
    sa.column("amount_refund_pending", sa.BigInteger),
    sa.column("status", sa.String),
    sa.column("source", sa.String),
    sa.column("recurring_id", sa.Integer),
    sa.column("stripe_payment_intent_id", sa.String),
    sa.column("stripe_charge_id", sa.String),
    sa.column("card_brand", sa.String),
    sa.column("card_last4", sa.String),
)
order_lines = sa.table(
    "order_lines",
    sa.column("order_id", sa.Integer),
    sa.column("position", sa.Integer),
    sa.column("description", sa.Text),
    sa.column("quantity", sa.Integer),
    sa.column("unit_amount", sa.BigInteger),
)
payments = sa.table(
    "payments",
    sa.column("id", sa.Integer),
    sa.column("order_id", sa.Integer),
    sa.column("recurring_id", sa.Integer),
    sa.column("kind", sa.String),
    sa.column("due_at", sa.DateTime(timezone=True)),
    sa.column("paid_at", sa.DateTime(timezone=True)),
    sa.column("amount", sa.BigInteger),
    sa.column("currency", sa.String),
    sa.column("status", sa.String),
    sa.column("stripe_payment_intent_id", sa.String),
    sa.column("stripe_charge_id", sa.String),
    sa.column("amount_refunded", sa.BigInteger),
    sa.column("amount_refund_pending", sa.BigInteger),
    sa.column("card_brand", sa.String),
    sa.column("card_last4", sa.String),
)
recurring = sa.table(
    "recurring",
    sa.column("id", sa.Integer),
    sa.column("kind", sa.String),
    sa.column("customer_id", sa.Integer),
    sa.column("product", sa.Text),
    sa.column("amount", sa.BigInteger),
    sa.column("currency", sa.String),
    sa.column("started_at", sa.DateTime(timezone=True)),
)
folded_numbers = sa.table(
    "folded_order_numbers", sa.column("number", sa.String), sa.column("order_id", sa.Integer)
)
refunds = sa.table(
    "refunds",
    sa.column("id", sa.Integer),
    sa.column("order_id", sa.Integer),
    sa.column("payment_id", sa.Integer),
)
attempts = sa.table(
    "action_attempts",
    sa.column("id", sa.Integer),
    sa.column("target_type", sa.String),
    sa.column("target_id", sa.BigInteger),
)
audit = sa.table(
    "audit_events",
    sa.column("id", sa.Integer),
    sa.column("target_type", sa.String),
    sa.column("target_id", sa.BigInteger),
)

PAYMENT_KINDS = "'one_off', 'initial', 'renewal', 'instalment', 'change', 'manual'"


def upgrade() -> None:
    connection = op.get_bind()
    op.create_table(
        "folded_order_numbers",
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("number"),
    )
    op.create_index(op.f("ix_folded_order_numbers_order_id"), "folded_order_numbers", ["order_id"])
    last_order = connection.execute(sa.select(sa.func.max(orders.c.id))).scalar() or 0
    # An order now has many payments: its one-payment link goes first, before payments are moved onto orders.
    with op.batch_alter_table("payments", naming_convention=NAMING) as batch:
        batch.drop_constraint(_name(connection, "payments", "uq", "order_id"), type_="unique")
        batch.drop_constraint(_name(connection, "payments", "fk", "order_id"), type_="foreignkey")
        batch.add_column(sa.Column("kind", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("stripe_payment_intent_id", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("stripe_charge_id", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("amount_refunded", sa.BigInteger(), server_default="0", nullable=False))
        batch.add_column(
            sa.Column("amount_refund_pending", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch.add_column(sa.Column("card_brand", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("card_last4", sa.String(length=4), nullable=True))
        batch.alter_column("recurring_id", existing_type=sa.Integer(), nullable=True)
    with op.batch_alter_table("refunds") as batch:
        batch.add_column(sa.Column("payment_id", sa.Integer(), nullable=True))
    with op.batch_alter_table("orders") as batch:  # the new sources and statuses are written below
        batch.drop_constraint("order_source", type_="check")
        batch.drop_constraint("order_status", type_="check")

    _move_payments_off_orders(connection)
    _one_order_per_subscription(connection)
    _add_up_orders(connection)

    with op.batch_alter_table("payments") as batch:
        batch.alter_column("kind", existing_type=sa.String(length=16), nullable=False)
        batch.alter_column("order_id", existing_type=sa.Integer(), nullable=False)
        batch.create_foreign_key(
            "fk_payments_order_id_orders", "orders", ["order_id"], ["id"], ondelete="CASCADE"
        )
        batch.create_unique_constraint("uq_payments_stripe_payment_intent_id", ["stripe_payment_intent_id"])
        batch.create_unique_constraint("uq_payments_stripe_charge_id", ["stripe_charge_id"])
        batch.create_check_constraint("payment_kind", f"kind IN ({PAYMENT_KINDS})")
        batch.create_check_constraint(
            "payment_refund_within_amount", "amount_refunded >= 0 AND amount_refunded <= amount"
        )
        batch.create_check_constraint(
            "payment_refund_pending_within_amount",
            "amount_refund_pending >= 0 AND amount_refunded + amount_refund_pending <= amount",
        )
    op.create_index("ix_payments_order_due", "payments", ["order_id", "due_at"])
    with op.batch_alter_table("refunds") as batch:
        batch.alter_column("payment_id", existing_type=sa.Integer(), nullable=False)
        batch.create_foreign_key(
            "fk_refunds_payment_id_payments", "payments", ["payment_id"], ["id"], ondelete="CASCADE"
        )
    op.create_index(op.f("ix_refunds_payment_id"), "refunds", ["payment_id"])

    op.drop_index(op.f("ix_orders_recurring_id"), table_name="orders")
    with op.batch_alter_table(
        "orders", naming_convention=NAMING, table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.drop_constraint("order_refund_pending_within_total", type_="check")
        for column in ("stripe_payment_intent_id", "stripe_charge_id"):
            batch.drop_constraint(_name(connection, "orders", "uq", column), type_="unique")
        for column in (
            "amount_refund_pending",
            "stripe_payment_intent_id",
            "stripe_charge_id",
            "card_brand",
            "card_last4",
        ):
            batch.drop_column(column)
        batch.create_check_constraint(
            "order_source", "source IN ('checkout', 'internal', 'subscription', 'payment_plan')"
        )
        batch.create_check_constraint(
            "order_status", "status IN ('unpaid', 'paid', 'partially_refunded', 'refunded')"
        )
    op.create_index("ix_orders_recurring", "orders", ["recurring_id"], unique=True)
    if connection.dialect.name == "sqlite":
        # The rebuilt table counts on from its highest id; the folded orders' ids (and numbers) lie past it.
        connection.exec_driver_sql("DELETE FROM sqlite_sequence WHERE name = 'orders'")
        connection.exec_driver_sql(
            "INSERT INTO sqlite_sequence (name, seq) SELECT 'orders', max(coalesce(max(id), 0), ?) FROM orders",
            (last_order,),
        )


def _name(connection, table: str, kind: str, column: str) -> str:
    """The name of a one-column constraint: PostgreSQL's own name for it, or the one NAMING gives on SQLite (the
    only foreign key dropped here refers to orders)."""
    if connection.dialect.name == "sqlite":
        return f"uq_{table}_{column}" if kind == "uq" else f"fk_{table}_{column}_orders"
    inspector = sa.inspect(connection)
    found = inspector.get_unique_constraints(table) if kind == "uq" else inspector.get_foreign_keys(table)
    for constraint in found:
        if constraint.get("column_names", constraint.get("constrained_columns")) == [column]:
            return constraint["name"]
    raise LookupError(f"no {kind} constraint on {table}.{column}")


def _move_payments_off_orders(connection) -> None:
    """Every old order was one payment: its Stripe payment, card and refunds move to a payment row (the invoice's
    own payment row, for a renewal or an instalment)."""
    invoice_payment = {
        order_id: payment_id
        for payment_id, order_id in connection.execute(
            sa.select(payments.c.id, payments.c.order_id).where(payments.c.order_id.is_not(None))
        )
    }
    kinds = dict(connection.execute(sa.select(recurring.c.id, recurring.c.kind)).all())
    for order in connection.execute(sa.select(orders)).mappings().all():
        paid = {
            "paid_at": order["created_at"],
            "amount": order["total"],
            "status": "paid",
            "stripe_payment_intent_id": order["stripe_payment_intent_id"],
            "stripe_charge_id": order["stripe_charge_id"],
            "amount_refunded": order["amount_refunded"],
            "amount_refund_pending": order["amount_refund_pending"],
            "card_brand": order["card_brand"],
            "card_last4": order["card_last4"],
        }
        of_recurring = order["source"] in ("renewal", "instalment") and order["recurring_id"] is not None
        kind = (
            ("instalment" if kinds.get(order["recurring_id"]) == "payment_plan" else "renewal")
            if of_recurring
            else "one_off"
        )
        payment_id = invoice_payment.get(order["id"])
        if payment_id is not None:
            connection.execute(
                sa.update(payments).where(payments.c.id == payment_id).values(kind=kind, **paid)
            )
        else:
            payment_id = connection.execute(
                sa.insert(payments)
                .values(
                    order_id=order["id"],
                    recurring_id=order["recurring_id"] if of_recurring else None,
                    kind=kind,
                    due_at=order["created_at"],
                    currency=order["currency"],
                    **paid,
                )
                .returning(payments.c.id)
            ).scalar_one()
        connection.execute(
            sa.update(refunds).where(refunds.c.order_id == order["id"]).values(payment_id=payment_id)
        )
        # A refund attempt held its amount on the order; it is now the payment's (and so is its history).
        connection.execute(
            sa.update(attempts)
            .where(attempts.c.target_type == "order", attempts.c.target_id == order["id"])
            .values(target_type="payment", target_id=payment_id)
        )


def _one_order_per_subscription(connection) -> None:
    """A subscription or plan keeps one order, the one that started it; its other orders fold into that one. The
    orders made for subscriptions that had none come first, so no new order takes a number a folded one had."""
    plans = connection.execute(sa.select(recurring)).mappings().all()
    started: dict[int, tuple[int, list[int]]] = {}
    for plan in plans:
        source = "payment_plan" if plan["kind"] == "payment_plan" else "subscription"
        its_orders = (
            connection.execute(
                sa.select(orders.c.id)
                .where(orders.c.recurring_id == plan["id"])
                .order_by(orders.c.created_at, orders.c.id)
            )
            .scalars()
            .all()
        )
        if its_orders:
            start = its_orders[0]
            connection.execute(sa.update(orders).where(orders.c.id == start).values(source=source))
            # Its items were its first payment's ("Pro Membership, November"): the order is for the product.
            connection.execute(sa.delete(order_lines).where(order_lines.c.order_id == start))
            connection.execute(sa.insert(order_lines).values(_product_line(start, plan)))
            started[plan["id"]] = (start, its_orders[1:])
        else:
            started[plan["id"]] = (_new_order(connection, plan, source), [])
    for plan in plans:
        start, folded = started[plan["id"]]
        connection.execute(
            sa.update(payments).where(payments.c.recurring_id == plan["id"]).values(order_id=start)
        )
        if folded:
            numbers = connection.execute(sa.select(orders.c.number).where(orders.c.id.in_(folded))).scalars()
            connection.execute(
                sa.insert(folded_numbers), [{"number": number, "order_id": start} for number in numbers]
            )
            connection.execute(
                sa.update(refunds).where(refunds.c.order_id.in_(folded)).values(order_id=start)
            )
            connection.execute(
                sa.update(audit)
                .where(audit.c.target_type == "order", audit.c.target_id.in_(folded))
                .values(target_id=start)
            )
            # Deleted by hand: SQLite's foreign keys are off while migrating, so nothing cascades.
            connection.execute(sa.delete(order_lines).where(order_lines.c.order_id.in_(folded)))
            connection.execute(sa.delete(orders).where(orders.c.id.in_(folded)))
        # A subscription's earliest payment was the one that started it.
        first = connection.execute(
            sa.select(payments.c.id)
            .where(payments.c.recurring_id == plan["id"])
            .order_by(payments.c.due_at, payments.c.id)
            .limit(1)
        ).scalar()
        if first is not None:
            connection.execute(sa.update(payments).where(payments.c.id == first).values(kind="initial"))
        renewal = "instalment" if plan["kind"] == "payment_plan" else "renewal"
        connection.execute(
            sa.update(payments)
            .where(payments.c.recurring_id == plan["id"], payments.c.kind.is_(None))
            .values(kind=renewal)
        )


def _new_order(connection, plan, source: str) -> int:
    """The order of a subscription or plan that had none (nothing was paid yet): placed when it started."""
    order_id = connection.execute(
        sa.insert(orders)
        .values(
            number="pending",
            customer_id=plan["customer_id"],
            created_at=plan["started_at"] or datetime.now(UTC),
            currency=plan["currency"],
            total=0,
            amount_refunded=0,
            amount_refund_pending=0,
            status="unpaid",
            source=source,
            recurring_id=plan["id"],
        )
        .returning(orders.c.id)
    ).scalar_one()
    connection.execute(
        sa.update(orders).where(orders.c.id == order_id).values(number=str(100_000 + order_id))
    )
    connection.execute(sa.insert(order_lines).values(_product_line(order_id, plan)))
    return order_id


def _product_line(order_id: int, plan) -> dict:
    return {
        "order_id": order_id,
        "position": 0,
        "description": plan["product"],
        "quantity": 1,
        "unit_amount": plan["amount"],
    }


def _add_up_orders(connection) -> None:
    """Each order's collected and refunded totals and its status, from its payments. An order left from a
    subscription or plan that is gone keeps its payment and says what it was."""
    for old, new in (("renewal", "subscription"), ("instalment", "payment_plan")):
        connection.execute(sa.update(orders).where(orders.c.source == old).values(source=new))
    paid = payments.c.status == "paid"
    collected = (
        sa.select(sa.func.coalesce(sa.func.sum(payments.c.amount), 0))
        .where(payments.c.order_id == orders.c.id, paid)
        .scalar_subquery()
    )
    refunded = (
        sa.select(sa.func.coalesce(sa.func.sum(payments.c.amount_refunded), 0))
        .where(payments.c.order_id == orders.c.id)
        .scalar_subquery()
    )
    connection.execute(sa.update(orders).values(total=collected, amount_refunded=refunded))
    connection.execute(
        sa.update(orders).values(
            status=sa.case(
                (orders.c.total <= 0, "unpaid"),
                (orders.c.amount_refunded <= 0, "paid"),
                (orders.c.amount_refunded >= orders.c.total, "refunded"),
                else_="partially_refunded",
            )
        )
    )


def downgrade() -> None:
    raise NotImplementedError(
        "0007 folds a subscription's orders into one and cannot be undone; restore the backup taken before it"
    )
