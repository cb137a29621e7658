"""The order book: the one way an order and its payments are written (a checkout, an internal order the bot
charged, the start of a subscription or payment plan and each of its payments) and the one way a refund Stripe
made is recorded against a payment. An order's collected and refunded totals add up its payments and are kept here,
in SQL, in the same transaction as the payment or refund that changes them. Disputes of a payment are recorded
here too (`record_dispute`), keeping the order's `amount_lost` beside `amount_refunded` the same way."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.orm import Session

from bot.models import (
    ActionAttempt,
    AuditEvent,
    Dispute,
    Note,
    Order,
    OrderLine,
    OrderSource,
    OrderStatus,
    Payment,
    PaymentKind,
    PaymentStatus,
    Refund,
    order_number,
)

# Disputes beside which Stripe refunds nothing (it answers `charge_disputed`): a formal dispute still open, or lost
# (the bank took the money back). An inquiry, and a dispute won, leave the payment refundable.
REFUND_BLOCKING_DISPUTES = ("needs_response", "under_review", "lost")

# A payment with something left to refund through Stripe, in SQL: the one rule, for the records and the refunds.
REFUNDABLE = (
    Payment.status == PaymentStatus.PAID.value,
    Payment.amount_refunded + Payment.amount_refund_pending < Payment.amount,
    Payment.stripe_payment_intent_id.is_not(None),
    ~exists().where(Dispute.payment_id == Payment.id, Dispute.status.in_(REFUND_BLOCKING_DISPUTES)),
)


@dataclass(frozen=True)
class Line:
    description: str
    quantity: int
    unit_amount: int  # minor units


@dataclass(frozen=True)
class StripePayment:
    """A Stripe payment that was collected, as far as Stripe told us."""

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


def order_status(collected: int, refunded: int) -> str:
    if collected <= 0:
        return OrderStatus.UNPAID.value
    if refunded <= 0:
        return OrderStatus.PAID.value
    return OrderStatus.REFUNDED.value if refunded >= collected else OrderStatus.PARTIALLY_REFUNDED.value


def payment_paid_by(session: Session, payment_intent_id: str | None, charge_id: str | None) -> Payment | None:
    """The payment a Stripe payment intent or charge collected."""
    payment = None
    if payment_intent_id:
        payment = session.scalar(select(Payment).where(Payment.stripe_payment_intent_id == payment_intent_id))
    if payment is None and charge_id:
        payment = session.scalar(select(Payment).where(Payment.stripe_charge_id == charge_id))
    return payment


def add_order(
    session: Session,
    *,
    customer_id: int,
    source: OrderSource,
    currency: str,
    lines: list[Line],
    created_at: datetime,
    billing: Billing | None = None,
    recurring_id: int | None = None,
) -> Order:
    """An order and its lines, nothing collected yet: its payments add to it."""
    billing = billing or Billing()
    order = Order(
        number="pending",  # the number comes from the id, known after the insert
        customer_id=customer_id,
        created_at=created_at,
        currency=currency,
        total=0,
        amount_refunded=0,
        status=OrderStatus.UNPAID.value,
        source=source.value,
        recurring_id=recurring_id,
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
    for position, line in enumerate(lines):
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


def add_paid_order(
    session: Session,
    *,
    customer_id: int,
    source: OrderSource,
    paid: StripePayment,
    lines: list[Line],
    created_at: datetime,
    billing: Billing | None = None,
) -> tuple[Order, Payment]:
    """A checkout or internal order with its one payment, collected. An empty list of lines becomes one line for
    the whole amount; lines that do not add up to what was paid are the caller's to fix."""
    order = add_order(
        session,
        customer_id=customer_id,
        source=source,
        currency=paid.currency,
        lines=lines or [Line("Payment", 1, paid.amount)],
        created_at=created_at,
        billing=billing,
    )
    payment = Payment(
        order_id=order.id,
        kind=PaymentKind.ONE_OFF.value,
        due_at=created_at,
        amount=paid.amount,
        currency=paid.currency,
        status=PaymentStatus.OPEN.value,
    )
    session.add(payment)
    session.flush()
    mark_paid(session, payment, paid, created_at)
    return order, payment


def mark_paid(session: Session, payment: Payment, paid: StripePayment, paid_at: datetime) -> None:
    """A payment collected: what paid it, and its amount added to its order, once however often Stripe says so."""
    payment.stripe_payment_intent_id = paid.payment_intent_id or payment.stripe_payment_intent_id
    payment.stripe_charge_id = paid.charge_id or payment.stripe_charge_id
    payment.card_brand = paid.card_brand or payment.card_brand
    payment.card_last4 = paid.card_last4 or payment.card_last4
    if payment.paid_at is not None:
        return  # counted in its order already
    payment.status = PaymentStatus.PAID.value
    payment.amount = paid.amount
    payment.paid_at = paid_at
    session.flush()
    # Added in SQL, not to a value read earlier: another transaction may have changed this order since.
    session.execute(update(Order).where(Order.id == payment.order_id).values(total=Order.total + paid.amount))
    _restatus(session, payment.order_id)


def adopt_payment(
    session: Session, payment: Payment, stray: Payment, paid: StripePayment, paid_at: datetime
) -> None:
    """`payment` (an invoice's) paid by what `stray`, a one-off payment, already holds: Stripe's payment of the
    invoice, recorded first as an order of its own because its payment intent did not name the invoice. The
    invoice's payment takes over all that was recorded against the stray one: its refunds, its disputes (and what
    lost ones take from an order), what refunds in flight hold back on it, the ledger's attempts and the audit
    trail about it. The stray payment goes, and its order with
    it unless that order has other payments; each order's totals stay the sum of its payments."""
    if stray.kind != PaymentKind.ONE_OFF.value or stray.recurring_id is not None:
        raise ValueError(f"payment {stray.id} is not a one-off payment; only a one-off one is taken over")
    session.refresh(stray)  # its amounts as the database has them now (refunds are added in SQL)
    stray_id, stray_order_id = stray.id, stray.order_id
    collected = stray.amount if stray.paid_at is not None else 0
    refunded, held_back = stray.amount_refunded, stray.amount_refund_pending
    session.execute(
        update(Order)
        .where(Order.id == stray_order_id)
        .values(total=Order.total - collected, amount_refunded=Order.amount_refunded - refunded)
    )
    session.execute(
        update(Refund)
        .where(Refund.payment_id == stray_id)
        .values(payment_id=payment.id, order_id=payment.order_id)
    )
    # Its disputes too, with what the lost ones take from an order.
    lost = session.scalar(
        select(func.coalesce(func.sum(Dispute.amount_lost), 0)).where(Dispute.payment_id == stray_id)
    )
    session.execute(
        update(Dispute)
        .where(Dispute.payment_id == stray_id)
        .values(payment_id=payment.id, order_id=payment.order_id)
    )
    if lost:
        session.execute(
            update(Order).where(Order.id == stray_order_id).values(amount_lost=Order.amount_lost - lost)
        )
        session.execute(
            update(Order).where(Order.id == payment.order_id).values(amount_lost=Order.amount_lost + lost)
        )
    _retarget(session, "payment", stray_id, payment.id)
    session.delete(stray)
    session.flush()  # its payment intent and charge are free for the invoice's payment
    others = session.scalar(
        select(func.count()).select_from(Payment).where(Payment.order_id == stray_order_id)
    )
    if others:
        _restatus(session, stray_order_id)
    else:
        _retarget(session, "order", stray_order_id, payment.order_id)
        session.execute(delete(OrderLine).where(OrderLine.order_id == stray_order_id))
        session.execute(delete(Order).where(Order.id == stray_order_id))
    mark_paid(session, payment, paid, paid_at)
    session.flush()
    if refunded or held_back:
        session.execute(
            update(Payment)
            .where(Payment.id == payment.id)
            .values(
                amount_refunded=Payment.amount_refunded + refunded,
                amount_refund_pending=Payment.amount_refund_pending + held_back,
            )
        )
        session.execute(
            update(Order)
            .where(Order.id == payment.order_id)
            .values(amount_refunded=Order.amount_refunded + refunded)
        )
    session.refresh(payment)
    _restatus(session, payment.order_id)


def _retarget(session: Session, target_type: str, old_id: int, new_id: int) -> None:
    """The ledger's attempts, the audit trail and the notes about one record, moved to the record that takes its
    place."""
    for model in (ActionAttempt, AuditEvent, Note):
        session.execute(
            update(model)
            .where(model.target_type == target_type, model.target_id == old_id)
            .values(target_id=new_id)
        )


def add_refund(
    session: Session,
    payment: Payment,
    *,
    amount: int,
    stripe_refund_id: str,
    created_at: datetime,
    reason: str | None = None,
    note: str | None = None,
    requested_by: str | None = None,
) -> Refund | None:
    """Record a refund Stripe made of a payment, once: None when a refund with this Stripe id is already recorded.
    What an attempt reserved for it is the ledger's to release first. The database refuses more refunded than
    paid."""
    known = session.scalar(select(Refund.id).where(Refund.stripe_refund_id == stripe_refund_id))
    if known is not None:
        return None
    refund = Refund(
        order_id=payment.order_id,
        payment_id=payment.id,
        amount=amount,
        currency=payment.currency,
        reason=reason,
        note=note or None,
        stripe_refund_id=stripe_refund_id,
        requested_by=requested_by,
        created_at=created_at,
    )
    session.add(refund)
    # Added in SQL (on PostgreSQL the update waits for another transaction refunding this payment, then adds).
    session.execute(
        update(Payment)
        .where(Payment.id == payment.id)
        .values(amount_refunded=Payment.amount_refunded + amount)
    )
    session.execute(
        update(Order)
        .where(Order.id == payment.order_id)
        .values(amount_refunded=Order.amount_refunded + amount)
    )
    session.refresh(payment)
    _restatus(session, payment.order_id)
    return refund


def _restatus(session: Session, order_id: int) -> None:
    order = session.get(Order, order_id, populate_existing=True)
    assert order is not None  # a foreign key guarantees it
    order.status = order_status(order.total, order.amount_refunded)
    session.flush()


# Disputes ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StripeDispute:
    """A dispute of a payment, as far as Stripe told us. `lost` is what it takes from the order: the disputed
    amount while Stripe has it lost and the funds were not reinstated, else 0."""

    stripe_dispute_id: str
    amount: int  # minor units disputed
    currency: str
    status: str
    reason: str | None
    due_by: datetime | None
    created_at: datetime
    lost: int


def record_dispute(session: Session, payment: Payment, seen: StripeDispute) -> tuple[Dispute, bool]:
    """Record a dispute of a payment as Stripe has it now, once per Stripe id; (the dispute, whether it is new).
    What it takes from its order moves by the difference from what it took before, in SQL, so a dispute lost and
    later reinstated (or seen lost twice) leaves the order's `amount_lost` right."""
    dispute = session.scalar(select(Dispute).where(Dispute.stripe_dispute_id == seen.stripe_dispute_id))
    created = dispute is None
    if dispute is None:
        dispute = Dispute(
            stripe_dispute_id=seen.stripe_dispute_id,
            order_id=payment.order_id,
            payment_id=payment.id,
            amount_lost=0,
            created_at=seen.created_at,
        )
        session.add(dispute)
    before = dispute.amount_lost or 0
    dispute.amount = seen.amount
    dispute.currency = seen.currency
    dispute.status = seen.status
    dispute.reason = seen.reason
    dispute.due_by = seen.due_by
    dispute.amount_lost = seen.lost
    session.flush()
    if seen.lost != before:
        session.execute(
            update(Order)
            .where(Order.id == dispute.order_id)
            .values(amount_lost=Order.amount_lost + (seen.lost - before))
        )
    return dispute, created
