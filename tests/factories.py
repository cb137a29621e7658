"""Rows for tests, written through the ORM with plain defaults that each test overrides as it needs."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import order_book, stripe_sync
from bot.models import Customer, Order, OrderSource, Payment, PaymentPlan, Recurring, Subscription
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


# Columns of what paid an order: they are its payment's, not the order's.
_PAYMENT_FIELDS = frozenset(
    {"stripe_payment_intent_id", "stripe_charge_id", "card_brand", "card_last4", "amount_refund_pending"}
)


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
    **fields,
) -> Order:
    """A checkout (or internal) order with its one payment, paid, and a refund of `refunded` when there is one."""
    lines = lines or [("Course: Watercolour basics", 1, total)]
    created_at = created_at or T0
    paid_fields = {"card_brand": "visa", "card_last4": "4242"} | {
        k: v for k, v in fields.items() if k in _PAYMENT_FIELDS
    }
    row, paid = order_book.add_paid_order(
        session,
        customer_id=owner.id,
        source=OrderSource(source),
        paid=order_book.StripePayment(
            paid_fields.get("stripe_payment_intent_id"),
            paid_fields.get("stripe_charge_id"),
            sum(q * unit for _, q, unit in lines),
            currency,
            paid_fields["card_brand"],
            paid_fields["card_last4"],
        ),
        lines=[order_book.Line(d, q, u) for d, q, u in lines],
        created_at=created_at,
    )
    row.number = str(next(_numbers))
    for name, value in fields.items():
        setattr(paid if name in _PAYMENT_FIELDS else row, name, value)
    session.flush()
    if refunded:
        order_book.add_refund(
            session,
            paid,
            amount=refunded,
            stripe_refund_id=f"re_made_{row.number}",
            created_at=created_at + timedelta(days=1),
            reason="requested_by_customer",
        )
    session.flush()
    return row


def order_payment(session: Session, row: Order) -> Payment:
    """The one payment of a checkout or internal order."""
    return session.scalars(select(Payment).where(Payment.order_id == row.id)).one()


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
    stripe_sync.start_order(session, row)
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
    stripe_sync.start_order(session, row)
    return row


def payment(
    session: Session,
    recurring: Recurring,
    status: str = "paid",
    *,
    due_at: datetime | None = None,
    reason: str | None = None,
    amount: int | None = None,
    kind: str | None = None,
    refunded: int = 0,
    **fields,
) -> Payment:
    """A payment of a subscription or plan (a payment of the order that started it): paid ones add to that order."""
    due_at = due_at or T0
    started = stripe_sync.start_order(session, recurring)
    is_plan = recurring.kind == "payment_plan"
    row = Payment(
        order_id=started.id,
        recurring_id=recurring.id,
        kind=kind or ("instalment" if is_plan else "renewal"),
        due_at=due_at,
        amount=recurring.amount if amount is None else amount,
        currency=recurring.currency,
        status="open" if status == "paid" else status,
        failure_reason=reason,
        failed_at=due_at if status == "failed" else None,
        **{k: v for k, v in fields.items() if k not in ("card_brand", "card_last4")},
    )
    session.add(row)
    session.flush()
    if status == "paid":
        order_book.mark_paid(
            session,
            row,
            order_book.StripePayment(
                fields.get("stripe_payment_intent_id"),
                fields.get("stripe_charge_id"),
                row.amount,
                row.currency,
                fields.get("card_brand", "visa"),
                fields.get("card_last4", "4242"),
            ),
            due_at,
        )
    if refunded:
        order_book.add_refund(
            session,
            row,
            amount=refunded,
            stripe_refund_id=f"re_made_p{row.id}",
            created_at=due_at + timedelta(days=1),
            reason="requested_by_customer",
        )
    session.flush()
    return row
