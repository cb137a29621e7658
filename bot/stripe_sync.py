"""Bringing Stripe's objects into our records: customers and their card, subscriptions and payment plans,
invoices (payments, and the orders they paid), one-off payments, and refunds.

The webhooks and the import both call these. Each takes the object as Stripe has it now (callers re-read it, so a
late or out-of-order event cannot roll a record back) and upserts on Stripe's id, so applying the same object
twice leaves the same rows. Objects are plain dicts; both the shapes of the pinned API version (invoice
`payments`, `parent.subscription_details`, billing periods on items) and older ones are read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.models import (
    Customer,
    Order,
    OrderLine,
    OrderSource,
    OrderStatus,
    Payment,
    PaymentPlan,
    PaymentStatus,
    Recurring,
    RecurringKind,
    RecurringStatus,
    Refund,
    Subscription,
    order_number,
)
from bot.search import index_customer

Obj = dict[str, Any]
Fetch = Callable[[str, str], Obj]  # (kind, id) -> the object as Stripe has it now
PLAN_METADATA = "payment_plan_installments"
BOT_METADATA = "requested_by"  # set on payments and refunds the bot itself makes; those it records itself


@dataclass
class SyncCounts:
    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, created: bool) -> None:
        target = self.created if created else self.updated
        target[kind] = target.get(kind, 0) + 1


def ref_id(value: Any) -> str | None:
    """An id whether Stripe sent the id or the expanded object."""
    if isinstance(value, dict):
        return value.get("id")
    return value or None


def _time(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if value else None


def _now() -> datetime:
    return datetime.now(UTC)


# Customers ----------------------------------------------------------------------------------------------------


def sync_customer(session: Session, obj: Obj, fetch: Fetch, counts: SyncCounts | None = None) -> Customer:
    customer = session.scalar(select(Customer).where(Customer.stripe_customer_id == obj["id"]))
    created = customer is None
    if customer is None:
        customer = Customer(stripe_customer_id=obj["id"], created_at=_time(obj.get("created")) or _now())
        session.add(customer)
    renamed = (customer.name, customer.email) != (obj.get("name") or "", obj.get("email") or "")
    customer.name = obj.get("name") or ""
    customer.email = obj.get("email") or ""
    method = (obj.get("invoice_settings") or {}).get("default_payment_method") or obj.get("default_source")
    method_id = ref_id(method)
    if method_id != customer.default_payment_method_id:
        if isinstance(method, dict) and method.get("card"):
            card = method["card"]  # expanded by the list call: no lookup needed
        else:
            card = _card(fetch, method_id) if method_id else {}
        customer.default_payment_method_id = method_id if card else None
        customer.card_brand = card.get("brand")
        customer.card_last4 = card.get("last4")
        customer.card_exp_month = card.get("exp_month")
        customer.card_exp_year = card.get("exp_year")
    if created or renamed:
        index_customer(session, customer)
    if counts is not None:
        counts.count("customers", created)
    return customer


def _card(fetch: Fetch, method_id: str) -> Obj:
    method = fetch("payment_method", method_id)
    return method.get("card") or {}


def customer_for(
    session: Session, stripe_customer_id: str, fetch: Fetch, counts: SyncCounts | None = None
) -> Customer:
    """Our customer for a Stripe customer id, brought in from Stripe when we do not have them yet."""
    customer = session.scalar(select(Customer).where(Customer.stripe_customer_id == stripe_customer_id))
    return customer or sync_customer(session, fetch("customer", stripe_customer_id), fetch, counts)


# Subscriptions and payment plans ----------------------------------------------------------------------------

_STATUSES = {
    "active": RecurringStatus.ACTIVE,
    "trialing": RecurringStatus.TRIALING,
    "past_due": RecurringStatus.PAST_DUE,
    "unpaid": RecurringStatus.PAST_DUE,
    "incomplete": RecurringStatus.INCOMPLETE,
    "incomplete_expired": RecurringStatus.CANCELED,
    "canceled": RecurringStatus.CANCELED,
    "paused": RecurringStatus.PAUSED,
}


def sync_subscription(
    session: Session, obj: Obj, fetch: Fetch, counts: SyncCounts | None = None
) -> Recurring:
    customer = customer_for(session, ref_id(obj["customer"]), fetch, counts)  # type: ignore[arg-type]
    recurring = session.scalar(select(Recurring).where(Recurring.stripe_subscription_id == obj["id"]))
    created = recurring is None
    installments = (obj.get("metadata") or {}).get(PLAN_METADATA)
    if recurring is None:
        kind = PaymentPlan if installments else Subscription
        recurring = kind(
            stripe_subscription_id=obj["id"],
            customer_id=customer.id,
            installments_paid=0 if installments else None,
        )
        session.add(recurring)
    item = ((obj.get("items") or {}).get("data") or [{}])[0]
    price = item.get("price") or item.get("plan") or obj.get("plan") or {}
    recurring.product = _product_name(price, fetch)
    recurring.amount = int(price.get("unit_amount") or price.get("amount") or 0)
    recurring.currency = price.get("currency") or "usd"
    recurring_terms = price.get("recurring") or price
    recurring.interval = recurring_terms.get("interval") or "month"
    recurring.interval_count = int(recurring_terms.get("interval_count") or 1)
    if installments and recurring.kind == RecurringKind.PAYMENT_PLAN.value:
        recurring.installments_total = max(1, int(installments))
    pause = obj.get("pause_collection") or None
    recurring.payments_paused = pause is not None
    recurring.paused_until = _time(pause.get("resumes_at")) if pause else None
    status = _STATUSES.get(obj.get("status", ""), RecurringStatus.ACTIVE)
    if recurring.payments_paused and status == RecurringStatus.ACTIVE:
        status = RecurringStatus.PAUSED
    if status == RecurringStatus.CANCELED and recurring.status == RecurringStatus.COMPLETED.value:
        status = RecurringStatus.COMPLETED  # a plan the bot ended after its last instalment
    recurring.status = status.value
    recurring.started_at = _time(obj.get("start_date") or obj.get("created")) or _now()
    recurring.canceled_at = _time(obj.get("canceled_at") or obj.get("ended_at"))
    recurring.cancel_at_period_end = bool(obj.get("cancel_at_period_end"))
    ends = [obj.get("current_period_end")] + [
        i.get("current_period_end") for i in (obj.get("items") or {}).get("data", [])
    ]
    recurring.current_period_end = _time(min((e for e in ends if e), default=None))
    ended = recurring.status in (RecurringStatus.CANCELED.value, RecurringStatus.COMPLETED.value)
    if ended:
        recurring.next_bill_at = None
    elif obj.get("status") == "trialing" and obj.get("trial_end"):
        recurring.next_bill_at = _time(obj["trial_end"])  # a moved bill date, shown as the next bill date
    else:
        recurring.next_bill_at = recurring.current_period_end
    if counts is not None:
        counts.count(
            "payment_plans" if recurring.kind == RecurringKind.PAYMENT_PLAN.value else "subscriptions",
            created,
        )
    return recurring


def _product_name(price: Obj, fetch: Fetch) -> str:
    if price.get("nickname"):
        return price["nickname"]
    product = price.get("product")
    if isinstance(product, dict) and product.get("name"):
        return product["name"]
    if price.get("name"):  # older plans carried the product's name
        return price["name"]
    if product:
        return fetch("product", product).get("name") or "Subscription"
    return "Subscription"


def recurring_for(
    session: Session, subscription_id: str, fetch: Fetch, counts: SyncCounts | None = None
) -> Recurring:
    recurring = session.scalar(select(Recurring).where(Recurring.stripe_subscription_id == subscription_id))
    return recurring or sync_subscription(session, fetch("subscription", subscription_id), fetch, counts)


# Invoices: payments of subscriptions and plans ---------------------------------------------------------------


@dataclass(frozen=True)
class InvoiceOutcome:
    payment: Payment | None
    plan_finished: str | None  # a payment plan's Stripe subscription whose last instalment this was


def sync_invoice(
    session: Session, obj: Obj, fetch: Fetch, counts: SyncCounts | None = None
) -> InvoiceOutcome:
    subscription_id = _invoice_subscription(obj)
    if subscription_id is None:
        return InvoiceOutcome(None, None)  # a one-off invoice: its payment arrives as a payment intent
    recurring = recurring_for(session, subscription_id, fetch, counts)
    payment = session.scalar(select(Payment).where(Payment.stripe_invoice_id == obj["id"]))
    created = payment is None
    if payment is None:
        payment = Payment(stripe_invoice_id=obj["id"], recurring_id=recurring.id)
        session.add(payment)
    payment.due_at = _time(obj.get("due_date") or obj.get("created")) or _now()
    payment.amount = int(obj.get("amount_due") or 0)
    payment.currency = obj.get("currency") or recurring.currency
    charge, intent = _invoice_charge(obj, fetch)
    status = obj.get("status")
    if status == "paid":
        payment.status = PaymentStatus.PAID.value
    elif status == "void":
        payment.status = PaymentStatus.VOID.value
    elif status == "uncollectible" or (status == "open" and int(obj.get("attempt_count") or 0) > 0):
        payment.status = PaymentStatus.FAILED.value
        payment.failure_reason = _failure_reason(charge, intent) or payment.failure_reason
        payment.failed_at = payment.failed_at or _time(obj.get("created")) or _now()
    else:
        payment.status = PaymentStatus.OPEN.value
    session.flush()
    if counts is not None:
        counts.count("payments", created)
    finished = None
    if payment.status == PaymentStatus.PAID.value and payment.order_id is None and payment.amount:
        kind = (
            OrderSource.INSTALMENT
            if recurring.kind == RecurringKind.PAYMENT_PLAN.value
            else OrderSource.RENEWAL
        )
        order = _order_for_payment(session, recurring.customer_id, obj, charge, intent, kind, fetch, counts)
        order.recurring_id = recurring.id
        payment.order_id = order.id
    if recurring.kind == RecurringKind.PAYMENT_PLAN.value:
        recurring.installments_paid = session.scalar(
            select(func.count())
            .select_from(Payment)
            .where(Payment.recurring_id == recurring.id, Payment.status == PaymentStatus.PAID.value)
        )
        total = recurring.installments_total or 0
        if (
            total
            and recurring.installments_paid >= total
            and recurring.status != RecurringStatus.COMPLETED.value
        ):
            recurring.status = RecurringStatus.COMPLETED.value
            recurring.next_bill_at = None
            finished = recurring.stripe_subscription_id
    return InvoiceOutcome(payment, finished)


def _invoice_subscription(obj: Obj) -> str | None:
    parent = (obj.get("parent") or {}).get("subscription_details") or {}
    lines = (obj.get("lines") or {}).get("data") or [{}]
    return (
        ref_id(obj.get("subscription"))
        or ref_id(parent.get("subscription"))
        or ref_id(lines[0].get("subscription"))
    )


def _invoice_charge(obj: Obj, fetch: Fetch) -> tuple[Obj, Obj]:
    """(charge, payment intent) of an invoice, whichever shape the API version gives; objects already embedded
    in the invoice are used as they are, and the payment intent is looked up only for a failure reason."""
    charge = obj.get("charge") if isinstance(obj.get("charge"), dict) else {}
    intent = obj.get("payment_intent") if isinstance(obj.get("payment_intent"), dict) else {}
    intent_id = intent.get("id") or ref_id(obj.get("payment_intent")) or charge.get("payment_intent")
    for payment in (obj.get("payments") or {}).get("data") or []:
        intent_id = intent_id or ref_id((payment.get("payment") or {}).get("payment_intent"))
    if intent_id and not intent and (not charge or obj.get("status") != "paid"):
        intent = fetch("payment_intent", intent_id)
    if not intent and intent_id:
        intent = {"id": intent_id}
    if not charge:
        latest = intent.get("latest_charge")
        charge_id = ref_id(obj.get("charge")) or ref_id(latest)
        charge = latest if isinstance(latest, dict) else (fetch("charge", charge_id) if charge_id else {})
    return charge, intent


def _failure_reason(charge: Obj, intent: Obj) -> str | None:
    error = intent.get("last_payment_error") or {}
    return error.get("message") or charge.get("failure_message") or None


# Orders: one-off payments and paid invoices -----------------------------------------------------------------


def sync_payment_intent(
    session: Session, obj: Obj, fetch: Fetch, counts: SyncCounts | None = None
) -> Order | None:
    """A succeeded one-off payment becomes a checkout order. The bot's own charges it records itself, and
    invoice payments arrive through their invoice."""
    if obj.get("status") != "succeeded" or BOT_METADATA in (obj.get("metadata") or {}) or obj.get("invoice"):
        return None
    customer_id = ref_id(obj.get("customer"))
    if not customer_id:
        return None
    customer = customer_for(session, customer_id, fetch, counts)
    latest = obj.get("latest_charge")
    charge = latest if isinstance(latest, dict) else (fetch("charge", ref_id(latest)) if latest else {})
    if charge.get("invoice"):
        return None
    return _order_for_payment(session, customer.id, obj, charge, obj, OrderSource.CHECKOUT, fetch, counts)


def _order_for_payment(
    session: Session,
    customer_id: int,
    source_obj: Obj,
    charge: Obj,
    intent: Obj,
    source: OrderSource,
    fetch: Fetch,
    counts: SyncCounts | None,
) -> Order:
    intent_id, charge_id = intent.get("id"), charge.get("id")
    order = None
    if intent_id:
        order = session.scalar(select(Order).where(Order.stripe_payment_intent_id == intent_id))
    if order is None and charge_id:
        order = session.scalar(select(Order).where(Order.stripe_charge_id == charge_id))
    if order is not None:
        return order
    amount = int(
        source_obj.get("amount_paid") or source_obj.get("amount_received") or source_obj.get("amount") or 0
    )
    currency = source_obj.get("currency") or "usd"
    card = (charge.get("payment_method_details") or {}).get("card") or {}
    if not card and ref_id(charge.get("payment_method")):
        card = _card(fetch, ref_id(charge.get("payment_method")))  # type: ignore[arg-type]
    billing = charge.get("billing_details") or {}
    address = billing.get("address") or {}
    order = Order(
        number=f"pending-{intent_id or charge_id}",
        customer_id=customer_id,
        created_at=_time(charge.get("created") or source_obj.get("created")) or _now(),
        currency=currency,
        total=amount,
        amount_refunded=0,
        status=OrderStatus.PAID.value,
        source=source.value,
        stripe_payment_intent_id=intent_id,
        stripe_charge_id=charge_id,
        card_brand=card.get("brand"),
        card_last4=card.get("last4"),
        billing_name=billing.get("name"),
        billing_line1=address.get("line1"),
        billing_line2=address.get("line2"),
        billing_city=address.get("city"),
        billing_state=address.get("state"),
        billing_postal_code=address.get("postal_code"),
        billing_country=address.get("country"),
    )
    session.add(order)
    session.flush()
    order.number = order_number(order.id)
    lines = (source_obj.get("lines") or {}).get("data") or []
    items = [
        (line.get("description") or "Item", int(line.get("quantity") or 1), int(line.get("amount") or 0))
        for line in lines
    ] or [
        (
            source_obj.get("description")
            or (source_obj.get("metadata") or {}).get("description")
            or "Payment",
            1,
            amount,
        )
    ]
    for position, (description, quantity, line_total) in enumerate(items):
        if quantity < 1 or line_total % quantity:
            quantity, unit = 1, line_total  # a price that does not divide evenly is kept as one line
        else:
            unit = line_total // quantity
        session.add(
            OrderLine(
                order_id=order.id,
                position=position,
                description=description,
                quantity=quantity,
                unit_amount=unit,
            )
        )
    if counts is not None:
        counts.count("orders", True)
    if charge:
        sync_refunds(session, charge, counts)
    return order


# Refunds ----------------------------------------------------------------------------------------------------


def sync_refund(session: Session, refund: Obj, counts: SyncCounts | None = None) -> Order | None:
    """Record one refund of an order we have, unless it is recorded already (or the bot made it)."""
    order = _order_paid_by(session, ref_id(refund.get("charge")), ref_id(refund.get("payment_intent")))
    if order is None:
        return None
    return sync_refunds(
        session, {"id": order.stripe_charge_id, "refunds": {"data": [refund]}}, counts, order=order
    )


def _order_paid_by(session: Session, charge_id: str | None, intent_id: str | None) -> Order | None:
    order = session.scalar(select(Order).where(Order.stripe_charge_id == charge_id)) if charge_id else None
    if order is None and intent_id:
        order = session.scalar(select(Order).where(Order.stripe_payment_intent_id == intent_id))
    return order


def sync_refunds(
    session: Session, charge: Obj, counts: SyncCounts | None = None, *, order: Order | None = None
) -> Order | None:
    """Record each refund of a charge we have not recorded yet. Refunds the bot makes it records itself."""
    order = order or _order_paid_by(session, charge.get("id"), ref_id(charge.get("payment_intent")))
    if order is None:
        return None
    known = set(session.scalars(select(Refund.stripe_refund_id).where(Refund.order_id == order.id)))
    for refund in (charge.get("refunds") or {}).get("data", []):
        if refund["id"] in known or BOT_METADATA in (refund.get("metadata") or {}):
            continue
        if refund.get("status") not in (None, "succeeded", "pending"):
            continue
        amount = min(int(refund["amount"]), order.total - order.amount_refunded - order.amount_refund_pending)
        if amount <= 0:
            continue
        session.add(
            Refund(
                order_id=order.id,
                amount=amount,
                currency=order.currency,
                reason=refund.get("reason"),
                stripe_refund_id=refund["id"],
                created_at=_time(refund.get("created")) or _now(),
            )
        )
        known.add(refund["id"])
        order.amount_refunded += amount
        if counts is not None:
            counts.count("refunds", True)
    if order.amount_refunded:
        full = order.amount_refunded >= order.total
        order.status = OrderStatus.REFUNDED.value if full else OrderStatus.PARTIALLY_REFUNDED.value
    return order
