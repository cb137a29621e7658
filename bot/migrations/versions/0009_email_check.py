"""The email check's old addresses: every address a customer had before a change, so the check asks the CRMs
about customers whose email changed, and a full check about every customer with an old address.

The emails changed from Slack before this release are read back from the audit trail ("changed Jane Doe's email
from A to B in …"), so the first check after the upgrade asks the CRMs about those customers too.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-12 09:00:00
"""

import re

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# An address has no spaces (the change form refuses one that has), so this cannot run into the name before it.
_CHANGED = re.compile(r"'s email from (\S+) to (\S+) in our records")


def upgrade() -> None:
    op.create_table(
        "old_emails",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=512), nullable=False),
        sa.Column("noted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due", sa.Boolean(), nullable=False),
        sa.Column("looked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_old_emails_due", "old_emails", ["due", "customer_id"])
    op.create_index("ix_old_emails_customer", "old_emails", ["customer_id"])
    _old_emails_from_the_audit_trail()


def downgrade() -> None:
    op.drop_index("ix_old_emails_customer", table_name="old_emails")
    op.drop_index("ix_old_emails_due", table_name="old_emails")
    op.drop_table("old_emails")


def _old_emails_from_the_audit_trail() -> None:
    audit = sa.table(
        "audit_events",
        sa.column("id", sa.Integer()),
        sa.column("at", sa.DateTime(timezone=True)),
        sa.column("action", sa.String()),
        sa.column("target_type", sa.String()),
        sa.column("target_id", sa.BigInteger()),
        sa.column("outcome", sa.String()),
        sa.column("details", sa.JSON()),
    )
    customers = sa.table("customers", sa.column("id", sa.Integer()), sa.column("email", sa.String()))
    old_emails = sa.table(
        "old_emails",
        sa.column("customer_id", sa.Integer()),
        sa.column("email", sa.String()),
        sa.column("noted_at", sa.DateTime(timezone=True)),
        sa.column("due", sa.Boolean()),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(audit.c.target_id, audit.c.at, audit.c.details, customers.c.email)
        .join(customers, customers.c.id == audit.c.target_id)
        .where(
            audit.c.action == "change_email",
            audit.c.target_type == "customer",
            audit.c.outcome == "succeeded",
        )
        .order_by(audit.c.id)
    ).all()
    found = []
    for customer_id, at, details, current in rows:
        summary = details.get("summary") if isinstance(details, dict) else None
        changes = _CHANGED.findall(summary or "")
        if not changes:
            continue
        old = changes[-1][0]  # the last: a name could itself contain the words
        if old.strip().lower() != (current or "").strip().lower():
            found.append({"customer_id": customer_id, "email": old[:512], "noted_at": at, "due": True})
    if found:
        connection.execute(old_emails.insert(), found)
