"""The order book: the one way an order is written (whatever paid it: a checkout, a renewal, an instalment, a
charge the bot made) and the one way a refund Stripe made is recorded against it, with the order's status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.models import Order, OrderLine, OrderSource, OrderStatus, Refund, order_number


@dataclass(frozen=True)
class Line:
    description: str
    quantity: int
    unit_amount: int  # minor units


@dataclass(frozen=True)
class StripePayment:
    """The Stripe payment that paid an order, as far as Stripe told us."""

    payment_intent_id: str | None
    charge_id: str | None
    amount: int  # minor units actually paid
    currency: str
    card_brand: str | None = None
    card_last4: str | None = None


@dataclass(frozen=True)
class Billing:
    name: str | None = None
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None


def order_status(total: int, refunded: int) -> str:
    if refunded <= 0:
        return OrderStatus.PAID.value
    return OrderStatus.REFUNDED.value if refunded >= total else OrderStatus.PARTIALLY_REFUNDED.value


def order_paid_by(session: Session, payment_intent_id: str | None, charge_id: str | None) -> Order | None:
    """The order a Stripe payment paid, found by its payment intent or its charge."""
    order = None
    if payment_intent_id:
        order = session.scalar(select(Order).where(Order.stripe_payment_intent_id == payment_intent_id))
    if order is None and charge_id:
        order = session.scalar(select(Order).where(Order.stripe_charge_id == charge_id))
    return order


def add_order(
    session: Session,
    *,
    customer_id: int,
    source: OrderSource,
    paid: StripePayment,
    lines: list[Line],
    created_at: datetime,
    billing: Billing | None = None,
    recurring_id: int | None = None,
) -> Order:
    """A paid order and its lines. Lines whose amounts do not add up to what was paid are the caller's to fix;
    an empty list becomes one line for the whole amount."""
    billing = billing or Billing()
    order = Order(
        number="pending",  # the number comes from the id, known after the insert
        customer_id=customer_id,
        created_at=created_at,
        currency=paid.currency,
        total=paid.amount,
        amount_refunded=0,
        amount_refund_pending=0,
        status=OrderStatus.PAID.value,
        source=source.value,
        recurring_id=recurring_id,
        stripe_payment_intent_id=paid.payment_intent_id,
        stripe_charge_id=paid.charge_id,
        card_brand=paid.card_brand,
        card_last4=paid.card_last4,
        billing_name=billing.name,
        billing_line1=billing.line1,
        billing_line2=billing.line2,
        billing_city=billing.city,
        billing_state=billing.state,
        billing_postal_code=billing.postal_code,
        billing_country=billing.country,
    )
    session.add(order)
    session.flush()
    order.number = order_number(order.id)
    for position, line in enumerate(lines or [Line("Payment", 1, paid.amount)]):
        session.add(
            OrderLine(
                order_id=order.id,
                position=position,
                description=line.description,
                quantity=line.quantity,
                unit_amount=line.unit_amount,
            )
        )
    return order


def add_refund(
    session: Session,
    order: Order,
    *,
    amount: int,
    stripe_refund_id: str,
    created_at: datetime,
    reason: str | None = None,
    note: str | None = None,
    requested_by: str | None = None,
) -> Refund | None:
    """Record a refund Stripe made, once: None when a refund with this Stripe id is already recorded. What an
    attempt reserved for it is the ledger's to release first. The database refuses more refunded than paid."""
    known = session.scalar(select(Refund.id).where(Refund.stripe_refund_id == stripe_refund_id))
    if known is not None:
        return None
    refund = Refund(
        order_id=order.id,
        amount=amount,
        currency=order.currency,
        reason=reason,
        note=note or None,
        stripe_refund_id=stripe_refund_id,
        requested_by=requested_by,
        created_at=created_at,
    )
    session.add(refund)
    # Added in SQL, not to the value read earlier: another transaction may have recorded a refund of this order
    # since (on PostgreSQL the update waits for it, then adds to its total).
    session.execute(
        update(Order).where(Order.id == order.id).values(amount_refunded=Order.amount_refunded + amount)
    )
    session.refresh(order)
    order.status = order_status(order.total, order.amount_refunded)
    session.flush()
    return refund
