"""Rows for tests, written through the ORM with plain defaults that each test overrides as it needs."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from bot.models import Customer, Order, OrderLine, Payment, PaymentPlan, Recurring, Refund, Subscription
from bot.search import index_customer

T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
_numbers = itertools.count(500_001)


def customer(session: Session, name: str = "Jane Doe", email: str | None = None, **fields) -> Customer:
    email = email or name.lower().replace(" ", ".") + "@example.com"
    values = {
        "created_at": T0,
        "card_brand": "visa",
        "card_last4": "4242",
        "card_exp_month": 12,
        "card_exp_year": 2030,
        **fields,
    }
    row = Customer(name=name, email=email, **values)
    session.add(row)
    session.flush()
    index_customer(session, row)
    return row


def order(
    session: Session,
    owner: Customer,
    total: int = 5000,
    *,
    currency: str = "usd",
    refunded: int = 0,
    source: str = "checkout",
    created_at: datetime | None = None,
    lines: list[tuple[str, int, int]] | None = None,
    recurring: Recurring | None = None,
    **fields,
) -> Order:
    lines = lines or [("Course: Watercolour basics", 1, total)]
    status = "paid" if refunded == 0 else ("refunded" if refunded == total else "partially_refunded")
    row = Order(
        number=str(next(_numbers)),
        customer_id=owner.id,
        created_at=created_at or T0,
        currency=currency,
        total=sum(q * unit for _, q, unit in lines),
        amount_refunded=refunded,
        status=status,
        source=source,
        recurring_id=recurring.id if recurring else None,
        card_brand="visa",
        card_last4="4242",
        **fields,
    )
    session.add(row)
    session.flush()
    session.add_all(
        OrderLine(order_id=row.id, position=i, description=d, quantity=q, unit_amount=u)
        for i, (d, q, u) in enumerate(lines)
    )
    if refunded:
        session.add(
            Refund(
                order_id=row.id,
                amount=refunded,
                currency=currency,
                reason="requested_by_customer",
                created_at=row.created_at + timedelta(days=1),
            )
        )
    session.flush()
    return row


def subscription(
    session: Session, owner: Customer, product: str = "Pro Membership", *, status: str = "active", **fields
) -> Subscription:
    values = {
        "amount": 2900,
        "currency": "usd",
        "interval": "month",
        "started_at": T0,
        "next_bill_at": T0 + timedelta(days=30),
        **fields,
    }
    row = Subscription(customer_id=owner.id, product=product, status=status, **values)
    session.add(row)
    session.flush()
    return row


def payment_plan(
    session: Session,
    owner: Customer,
    product: str = "Guitar course, 6 instalments",
    *,
    status: str = "active",
    total: int = 6,
    paid: int = 2,
    **fields,
) -> PaymentPlan:
    values = {
        "amount": 5000,
        "currency": "usd",
        "interval": "month",
        "started_at": T0,
        "next_bill_at": T0 + timedelta(days=30),
        **fields,
    }
    row = PaymentPlan(
        customer_id=owner.id,
        product=product,
        status=status,
        installments_total=total,
        installments_paid=paid,
        **values,
    )
    session.add(row)
    session.flush()
    return row


def payment(
    session: Session,
    recurring: Recurring,
    status: str = "paid",
    *,
    due_at: datetime | None = None,
    reason: str | None = None,
    order_row: Order | None = None,
) -> Payment:
    row = Payment(
        recurring_id=recurring.id,
        due_at=due_at or T0,
        amount=recurring.amount,
        currency=recurring.currency,
        status=status,
        failure_reason=reason,
        failed_at=(due_at or T0) if status == "failed" else None,
        order_id=order_row.id if order_row else None,
    )
    session.add(row)
    session.flush()
    return row
