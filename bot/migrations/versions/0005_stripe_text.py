"""Room for what Stripe holds: a customer email of up to 512 characters, Stripe's limit (320 before).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-09 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

OLD, NEW = 320, 512


def upgrade() -> None:
    _email_length(OLD, NEW)


def downgrade() -> None:
    customers = sa.table("customers", sa.column("email", sa.String()))
    op.execute(
        customers.update()
        .where(sa.func.length(customers.c.email) > OLD)
        .values(email=sa.func.substr(customers.c.email, 1, OLD))
    )
    _email_length(NEW, OLD)


def _email_length(old: int, new: int) -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("customers", "email", existing_type=sa.String(old), type_=sa.String(new))
        return
    # SQLite keeps the declared length only as text in the table's definition and never enforces it, so the
    # definition is edited in place, SQLite's documented way for a change that leaves the stored rows as they are.
    # Not a table rebuild: with foreign keys on (bot.db turns them on, and inside the migration's transaction
    # they cannot be turned off), dropping the old customers table would delete every customer's orders,
    # subscriptions and search terms through their ON DELETE CASCADE.
    connection = op.get_bind()
    version = connection.exec_driver_sql("PRAGMA schema_version").scalar()
    connection.exec_driver_sql("PRAGMA writable_schema=ON")
    connection.exec_driver_sql(
        "UPDATE sqlite_master SET sql = replace(sql, ?, ?) WHERE type = 'table' AND name = 'customers'",
        (f"email VARCHAR({old}) NOT NULL", f"email VARCHAR({new}) NOT NULL"),
    )
    connection.exec_driver_sql(f"PRAGMA schema_version={int(version) + 1}")  # other connections reread it
    connection.exec_driver_sql("PRAGMA writable_schema=OFF")
