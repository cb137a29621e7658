"""Statuses as Stripe has them: `unpaid` subscriptions, written-off (`uncollectible`) payments, a trial's end, a
scheduled cancel's date and why a subscription was canceled; the card on file says where it came from.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-11 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

RECURRING_OLD = "'active', 'trialing', 'past_due', 'paused', 'incomplete', 'canceled', 'completed'"
RECURRING_NEW = RECURRING_OLD + ", 'unpaid'"
PAYMENT_OLD = "'paid', 'failed', 'open', 'void'"
PAYMENT_NEW = PAYMENT_OLD + ", 'uncollectible'"


def upgrade() -> None:
    op.add_column("recurring", sa.Column("trial_ends_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("recurring", sa.Column("cancel_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("recurring", sa.Column("cancel_reason", sa.String(32), nullable=True))
    op.add_column("recurring", sa.Column("default_payment_method_id", sa.String(255), nullable=True))
    op.add_column("customers", sa.Column("card_source", sa.String(16), nullable=True))
    op.add_column("customers", sa.Column("card_subscription_id", sa.String(255), nullable=True))
    customers = sa.table("customers", sa.column("card_source"), sa.column("card_last4"))
    # Every card recorded so far was the customer's default payment method.
    op.execute(customers.update().where(customers.c.card_last4.is_not(None)).values(card_source="customer"))
    recurring = sa.table(
        "recurring", sa.column("trial_ends_at"), sa.column("next_bill_at"), sa.column("status")
    )
    # Until now a trialing subscription's next bill date was its trial_end.
    op.execute(
        recurring.update()
        .where(recurring.c.status == "trialing")
        .values(trial_ends_at=recurring.c.next_bill_at)
    )
    _statuses(RECURRING_OLD, RECURRING_NEW, PAYMENT_OLD, PAYMENT_NEW, 8, 16)


def downgrade() -> None:
    payments = sa.table("payments", sa.column("status"))
    op.execute(payments.update().where(payments.c.status == "uncollectible").values(status="failed"))
    recurring = sa.table("recurring", sa.column("status"))
    op.execute(recurring.update().where(recurring.c.status == "unpaid").values(status="past_due"))
    _statuses(RECURRING_NEW, RECURRING_OLD, PAYMENT_NEW, PAYMENT_OLD, 16, 8)
    for column in ("card_subscription_id", "card_source"):
        op.drop_column("customers", column)
    for column in ("default_payment_method_id", "cancel_reason", "cancel_at", "trial_ends_at"):
        op.drop_column("recurring", column)


def _statuses(
    recurring_old: str,
    recurring_new: str,
    payment_old: str,
    payment_new: str,
    length_old: int,
    length_new: int,
) -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint("recurring_status", "recurring", type_="check")
        op.create_check_constraint("recurring_status", "recurring", f"status IN ({recurring_new})")
        op.drop_constraint("payment_status", "payments", type_="check")
        op.alter_column(
            "payments", "status", existing_type=sa.String(length_old), type_=sa.String(length_new)
        )
        op.create_check_constraint("payment_status", "payments", f"status IN ({payment_new})")
        return
    # As in 0005: SQLite keeps check constraints and declared lengths only as text in the table's definition, so
    # that text is edited in place. Rebuilding the tables instead would, with foreign keys on, delete every
    # payment of a subscription (ON DELETE CASCADE) and every alert of a payment.
    _edit_sqlite_definition("recurring", [(f"status IN ({recurring_old})", f"status IN ({recurring_new})")])
    _edit_sqlite_definition(
        "payments",
        [
            (f"status IN ({payment_old})", f"status IN ({payment_new})"),
            (f"status VARCHAR({length_old}) NOT NULL", f"status VARCHAR({length_new}) NOT NULL"),
        ],
    )


def _edit_sqlite_definition(table: str, replacements: list[tuple[str, str]]) -> None:
    connection = op.get_bind()
    sql = connection.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).scalar_one()
    for old, new in replacements:
        if old not in sql:
            raise RuntimeError(f"the {table} table's definition has no {old!r}; edit it by hand")
        sql = sql.replace(old, new)
    version = connection.exec_driver_sql("PRAGMA schema_version").scalar()
    connection.exec_driver_sql("PRAGMA writable_schema=ON")
    connection.exec_driver_sql(
        "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?", (sql, table)
    )
    connection.exec_driver_sql(f"PRAGMA schema_version={int(version) + 1}")  # other connections reread it
    connection.exec_driver_sql("PRAGMA writable_schema=OFF")
