"""The action ledger: each attempt's tries and when the latest began (so nothing takes over a request that may
still be on its way to Stripe), what it set aside on an order, and what settling it later needs.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

attempts = sa.table(
    "action_attempts",
    sa.column("id", sa.Integer()),
    sa.column("action", sa.String()),
    sa.column("status", sa.String()),
    sa.column("amount", sa.BigInteger()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("tried_at", sa.DateTime(timezone=True)),
    sa.column("reserved", sa.BigInteger()),
    sa.column("details", sa.JSON()),
    sa.column("request", sa.JSON()),
)


def upgrade() -> None:
    with op.batch_alter_table("action_attempts") as batch_op:
        batch_op.add_column(sa.Column("tries", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("tried_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("reserved", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("request", sa.JSON(), nullable=True))
        batch_op.create_check_constraint("action_attempt_reserved_not_negative", "reserved >= 0")
    # Attempts made before: their latest try began when they were made, and a pending refund holds its amount.
    connection = op.get_bind()
    for row in connection.execute(sa.select(attempts)).mappings():
        request = (row["details"] or {}).get("request")
        held = row["amount"] or 0 if (row["status"], row["action"]) == ("pending", "refund") else 0
        connection.execute(
            attempts.update()
            .where(attempts.c.id == row["id"])
            .values(tried_at=row["created_at"], reserved=held, request=request)
        )
    with op.batch_alter_table("action_attempts") as batch_op:
        batch_op.alter_column("tried_at", existing_type=sa.DateTime(timezone=True), nullable=False)
    op.create_index("ix_action_attempts_status_tried", "action_attempts", ["status", "tried_at"])


def downgrade() -> None:
    op.drop_index("ix_action_attempts_status_tried", table_name="action_attempts")
    with op.batch_alter_table("action_attempts") as batch_op:
        batch_op.drop_constraint("action_attempt_reserved_not_negative", type_="check")
        batch_op.drop_column("request")
        batch_op.drop_column("reserved")
        batch_op.drop_column("tried_at")
        batch_op.drop_column("tries")
