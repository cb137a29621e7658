"""Company name and tax ids on customers, as Stripe has them (`business_name`, the customer's tax ids).

Existing customers start with neither; Stripe's next customer event, or the import, brings them in.

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-08 02:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns are added in place on both backends: no table rebuild on SQLite, which would cascade-delete
    # everything that belongs to a customer.
    op.add_column("customers", sa.Column("company_name", sa.String(length=150), nullable=True))
    op.add_column("customers", sa.Column("tax_ids", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("tax_ids")
        batch.drop_column("company_name")
