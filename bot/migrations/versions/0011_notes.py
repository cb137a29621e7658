"""Notes on records: what people wrote on a customer, a subscription or plan, or an order, for its History.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-14 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("target_type", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.BigInteger(), nullable=False),
        sa.Column("author", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_notes_target", "notes", ["target_type", "target_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_notes_target", table_name="notes")
    op.drop_table("notes")
