"""Bringing Stripe's objects into our records: customers and their card, subscriptions and payment plans,
invoices (payments, and the orders they paid), one-off payments, refunds, and disputes.

The webhooks and the import both call these. Each takes the object as Stripe has it now (callers re-read it, so a
late or out-of-order event cannot roll a record back) and upserts on Stripe's id, so applying the same object
twice leaves the same rows. Objects are plain dicts; both the shapes of the pinned API version (invoice
`payments`, `parent.subscription_details`, billing periods on items, payment intents that do not name their
invoice) and older ones are read. Whatever order events arrive in, an invoice's payment is recorded once: a payment
intent recorded as a one-off order before its invoice came is taken over by the invoice's payment.

Nothing here calls Stripe, because these functions run inside a transaction. An object they were not given is looked
up with `fetch`, which answers from the objects read before the transaction began (`Gathered`) and raises
`NotGathered` for any other: the caller rolls back, reads it from Stripe with no transaction open, and does the
unit of work again (at most `ROUNDS` times). An object Stripe no longer has raises `Gone`: where it only adds
detail (a card, a product's name, a failure reason) the record goes on without it.

Every text Stripe sends goes into our columns through `stripe_text`, the one place it is made storable.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from bot import order_book
from bot.crm import same_email
from bot.email_sync import note_old_email
from bot.models import (
    LIVE_STATUSES,
    CardSource,
    Customer,
    Dispute,
    DisputeStatus,
    Order,
    OrderLine,
    OrderSource,
    Payment,
    PaymentKind,
    PaymentPlan,
    PaymentStatus,
    Recurring,
    RecurringKind,
    RecurringStatus,
    Refund,
    Subscription,
)
from bot.search import index_customer
from bot.stripe_gateway import (
    ACTION_KEY,
    CUSTOMER_CARDS,
    CUSTOMER_TAX_IDS,
    INVOICES_PAID_BY,
    RESOURCE_MISSING,
    StripeRejected,
)

Obj = dict[str, Any]
# (kind, id) -> the object as Stripe has it now; inside a unit of work, `Gathered.fetch`
Fetch = Callable[[str, str], Obj]
Key = tuple[str, str]  # (kind, Stripe id)
# The longest chain of lookups, an invoice of a subscription we have never seen, needs eight tries: the
# subscription, its customer, the customer's card, the product, the payment intent, its charge and that charge's
# card, each found missing by the try before. More means the objects keep leading to others: give up.
ROUNDS = 10
PLAN_METADATA = "payment_plan_installments"
# A refund or payment the bot asked for carries its action's key in its metadata (ACTION_KEY): the action ledger
# records it, settling the request that made it (and releasing what it set aside). Given the session, the key
# and Stripe's object; False when no request of the bot's is waiting for it (record it as any other).
BotMade = Callable[[Session, str, "Obj"], bool]


class NotGathered(Exception):
    """A unit of work looked up a Stripe object that was not read before it began."""

    def __init__(self, kind: str, object_id: str) -> None:
        super().__init__(f"{kind} {object_id} was not read from Stripe before the transaction")
        self.key: Key = (kind, object_id)


class Gone(Exception):
    """A unit of work needs a Stripe object that Stripe no longer has (deleted, or never there)."""

    def __init__(self, kind: str, object_id: str) -> None:
        super().__init__(f"{kind} {object_id} is no longer in Stripe")
        self.key: Key = (kind, object_id)


_GONE: Obj = {}  # stands for an object Stripe answered it does not have


class Gathered:
    """Stripe objects read before a unit of work. Its `fetch` is the unit of work's way to Stripe: it answers from
    these and never calls Stripe."""

    def __init__(self) -> None:
        self._objects: dict[Key, Obj] = {}

    def add(self, kind: str, object_id: str, obj: Obj) -> None:
        # Stripe answers a deleted customer with a stub marked `deleted`; it is as gone as one it has no record of.
        self._objects[kind, object_id] = _GONE if obj is _GONE or obj.get("deleted") else obj

    def read(self, kind: str, object_id: str, retrieve: Fetch) -> None:
        """Read one object from Stripe with `retrieve(kind, object_id)`, never with a transaction open. One that
        Stripe answers it has no record of is kept as gone; any other failure of Stripe's is raised."""
        try:
            obj = retrieve(kind, object_id)
        except StripeRejected as rejected:
            if rejected.code != RESOURCE_MISSING:
                raise
            obj = _GONE
        self.add(kind, object_id, obj)

    def fetch(self, kind: str, object_id: str) -> Obj:
        try:
            obj = self._objects[kind, object_id]
        except KeyError:
            raise NotGathered(kind, object_id) from None
        if obj is _GONE:
            raise Gone(kind, object_id)
        return obj


def _if_there(fetch: Fetch, kind: str, object_id: str) -> Obj:
    """An object that only adds detail to a record: nothing when Stripe no longer has it."""
    try:
        return fetch(kind, object_id)
    except Gone:
        return {}


# PostgreSQL refuses NUL in text, and no driver can encode a lone surrogate (which JSON's "\ud800" makes); neither
# means anything to a reader.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
CUT = "…"
_MARKED_CUT = 16  # columns at least this long end a cut text with CUT


def stripe_text(
    value: Any, column: InstrumentedAttribute | None = None, *, limit: int | None = None
) -> str | None:
    """Text from Stripe as our column can hold it: characters no database stores removed, and cut to the
    column's length, so nothing Stripe sends is refused. Our columns are as long as Stripe's documented limits, so
    a cut happens only when Stripe sends more than it documents. Our rule then: keep the start, and end it with
    "…" so a reader sees it was cut; a short code column (a country, the last 4 digits) just keeps its first
    characters. A text kept in no column of its own (inside a JSON one) is cut to `limit` the same way. None stays
    None."""
    if value is None:
        return None
    text = _UNSTORABLE.sub("", value if isinstance(value, str) else str(value))
    limit = getattr(column.type, "length", None) if column is not None else limit
    if limit and len(text) > limit:
        text = text[: limit - len(CUT)] + CUT if limit >= _MARKED_CUT else text[:limit]
    return text


@dataclass
class SyncCounts:
    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, created: bool) -> None:
        target = self.created if created else self.updated
        target[kind] = target.get(kind, 0) + 1

    def add(self, other: SyncCounts) -> None:
        for kind, number in other.created.items():
            self.created[kind] = self.created.get(kind, 0) + number
        for kind, number in other.updated.items():
            self.updated[kind] = self.updated.get(kind, 0) + number


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
    # `individual_name` (API versions since 2025) is the person's name where the merchant keeps it apart.
    name = stripe_text(obj.get("name") or obj.get("individual_name") or "", Customer.name)
    email = stripe_text(obj.get("email") or "", Customer.email)
    renamed = (customer.name, customer.email) != (name, email)
    if not created and not same_email(customer.email, email):  # the email check asks CRMs about the old one
        note_old_email(session, customer.id, customer.email, _now())
    customer.name, customer.email = name, email
    customer.company_name = stripe_text(obj.get("business_name") or None, Customer.company_name)
    customer.tax_ids = _tax_ids(obj, fetch)
    method = (obj.get("invoice_settings") or {}).get("default_payment_method") or obj.get("default_source")
    method_id = ref_id(method)
    if not (method_id and _default_card(customer, method, method_id, fetch)):
        _fall_back_on_another_card(session, customer, fetch)
    if created or renamed:
        index_customer(session, customer)
    if counts is not None:
        counts.count("customers", created)
    return customer


# A tax id's type is one of Stripe's codes (eu_vat, us_ein, …); its value is what the merchant typed, which Stripe
# validates per type (the longest are about 20 characters). These only bound what a wrong one could fill.
TAX_ID_TYPE_LENGTH = 32
TAX_ID_VALUE_LENGTH = 64
TAX_IDS_KEPT = 100  # one list page; Stripe keeps far fewer for one customer


def _tax_ids(obj: Obj, fetch: Fetch) -> list[dict[str, str]] | None:
    """The customer's tax ids as Stripe lists them (newest first), or None. Stripe embeds them only when asked
    (`expand`), and then up to 10: a customer whose list did not come whole has it read on its own."""
    listed = obj.get("tax_ids")
    if not (isinstance(listed, dict) and isinstance(listed.get("data"), list) and not listed.get("has_more")):
        listed = _if_there(fetch, CUSTOMER_TAX_IDS, obj["id"])
    kept = [
        {
            "type": stripe_text(tax_id.get("type") or "", limit=TAX_ID_TYPE_LENGTH),
            "value": stripe_text(tax_id["value"], limit=TAX_ID_VALUE_LENGTH),
        }
        for tax_id in (listed.get("data") or [])[:TAX_IDS_KEPT]
        if isinstance(tax_id, dict) and tax_id.get("value")
    ]
    return kept or None


def customer_gone(session: Session, stripe_customer_id: str) -> None:
    """A customer deleted in Stripe: our record and its history stay, no longer linked to Stripe."""
    customer = session.scalar(select(Customer).where(Customer.stripe_customer_id == stripe_customer_id))
    if customer is not None:
        customer.stripe_customer_id = None
        customer.default_payment_method_id = None
        customer.card_source = customer.card_subscription_id = None


def _card(fetch: Fetch, method_id: str) -> Obj:
    """The card of a payment method; none when the method was deleted."""
    return _if_there(fetch, "payment_method", method_id).get("card") or {}


def _default_card(customer: Customer, method: Any, method_id: str, fetch: Fetch) -> bool:
    """The customer's default payment method in Stripe as their card on file; False when Stripe no longer has it."""
    if (customer.default_payment_method_id, customer.card_source or CardSource.CUSTOMER.value) == (
        method_id,
        CardSource.CUSTOMER.value,
    ):
        return True  # recorded already: no lookup
    expanded = isinstance(method, dict) and method.get("card")  # by the list call: no lookup needed
    card = method["card"] if expanded else _card(fetch, method_id)
    if card:
        _use_card(customer, method_id, card, CardSource.CUSTOMER)
    return bool(card)


def _use_card(
    customer: Customer,
    method_id: str | None,
    card: Obj,
    source: CardSource | None,
    subscription_id: str | None = None,
) -> None:
    """The card the record shows and New order charges: `card` is Stripe's `card` of payment method `method_id`."""
    customer.default_payment_method_id = method_id
    customer.card_source = source.value if source else None
    customer.card_subscription_id = subscription_id
    customer.card_brand = stripe_text(card.get("brand"), Customer.card_brand)
    customer.card_last4 = stripe_text(card.get("last4"), Customer.card_last4)
    customer.card_exp_month = card.get("exp_month")
    customer.card_exp_year = card.get("exp_year")


def _fall_back_on_another_card(session: Session, customer: Customer, fetch: Fetch) -> None:
    """A customer with no default card in Stripe: the default payment method of their newest live subscription
    (Stripe charges that card for it), else the newest card saved to them. Both are attached to the customer, so
    New order can charge them off-session just as a default card."""
    subscription = None
    if customer.id is not None:
        subscription = session.execute(
            select(Recurring.default_payment_method_id, Recurring.stripe_subscription_id)
            .where(
                Recurring.customer_id == customer.id,
                Recurring.default_payment_method_id.is_not(None),
                Recurring.status.in_([s.value for s in LIVE_STATUSES]),
            )
            .order_by(Recurring.started_at.desc(), Recurring.id.desc())
            .limit(1)
        ).first()
    if subscription is not None:
        method_id, subscription_id = subscription
        if (customer.card_source, customer.default_payment_method_id, customer.card_subscription_id) == (
            CardSource.SUBSCRIPTION.value,
            method_id,
            subscription_id,
        ):
            return
        card = _card(fetch, method_id)
        if card:
            _use_card(customer, method_id, card, CardSource.SUBSCRIPTION, subscription_id)
            return
    saved = _if_there(fetch, CUSTOMER_CARDS, customer.stripe_customer_id).get("data") or []  # type: ignore[arg-type]
    cards = [method for method in saved if method.get("card")]
    if not cards:
        _use_card(customer, None, {}, None)
        return
    # Stripe lists the newest first; the newest by `created` whatever the order, the first of equals.
    newest = max(reversed(cards), key=lambda method: int(method.get("created") or 0))
    _use_card(customer, newest["id"], newest["card"], CardSource.NEWEST)


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
    "unpaid": RecurringStatus.UNPAID,
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
    recurring.product = stripe_text(_product_name(price, fetch), Recurring.product)
    recurring.amount = int(price.get("unit_amount") or price.get("amount") or 0)
    recurring.currency = price.get("currency") or "usd"
    recurring_terms = price.get("recurring") or price
    recurring.interval = recurring_terms.get("interval") or "month"
    recurring.interval_count = int(recurring_terms.get("interval_count") or 1)
    if installments and recurring.kind == RecurringKind.PAYMENT_PLAN.value:
        recurring.installments_total = max(1, int(installments))
    recurring.started_at = _time(obj.get("start_date") or obj.get("created")) or _now()
    apply_subscription_state(recurring, obj)
    if created:
        session.flush()
        start_order(session, recurring)
    method_id = ref_id(obj.get("default_payment_method"))
    had_card = customer.card_subscription_id == recurring.stripe_subscription_id
    if method_id != recurring.default_payment_method_id or (had_card and not recurring.is_live):
        recurring.default_payment_method_id = method_id
        if customer.card_source not in (None, CardSource.CUSTOMER.value) or not customer.card_last4:
            # The card on file is a fallback (or there is none): this subscription's card may change it.
            _fall_back_on_another_card(session, customer, fetch)
    if counts is not None:
        counts.count(
            "payment_plans" if recurring.kind == RecurringKind.PAYMENT_PLAN.value else "subscriptions",
            created,
        )
    return recurring


def apply_subscription_state(row: Recurring, obj: Obj) -> None:
    """Bring a subscription's or plan's state in line with Stripe's subscription: status, a cancel or pause asked
    for, the billing period and the next bill date. The one mapping of that state, for webhooks, the import and
    the bot's own changes alike."""
    pause = obj.get("pause_collection") or None
    row.payments_paused = pause is not None
    row.paused_until = _time(pause.get("resumes_at")) if pause else None
    status = _STATUSES.get(obj.get("status", ""), RecurringStatus.ACTIVE)
    # A moved next bill date is a trial_end in Stripe ("trialing"): paused all the same.
    if row.payments_paused and status in (RecurringStatus.ACTIVE, RecurringStatus.TRIALING):
        status = RecurringStatus.PAUSED
    if status == RecurringStatus.CANCELED and row.status == RecurringStatus.COMPLETED.value:
        status = RecurringStatus.COMPLETED  # a plan the bot ended after its last instalment
    row.status = status.value
    # When it ended: Stripe's `canceled_at` is when a cancel was asked for, which for one at the period's end is
    # weeks before it ends (`ended_at`); until it has ended, it has no end.
    row.canceled_at = _time(obj.get("ended_at") or obj.get("canceled_at")) if status in _ENDED else None
    row.cancel_at_period_end = bool(obj.get("cancel_at_period_end"))
    row.cancel_at = _time(obj.get("cancel_at")) if status not in _ENDED else None
    reason = (obj.get("cancellation_details") or {}).get("reason")
    if obj.get("status") == "incomplete_expired":
        reason = reason or "payment_failed"  # its first payment was never made: Stripe ended it for that
    row.cancel_reason = stripe_text(reason, Recurring.cancel_reason) if status in _ENDED else None
    # Stripe's trialing is a trial, or a next bill date the bot (or the Dashboard) moved with trial_end; which of
    # the two is told when the record is read (bot.records: a trial has no paid payment before it).
    row.trial_ends_at = _time(obj.get("trial_end")) if obj.get("status") == "trialing" else None
    # Since API version 2025-03-31 the billing period lives on each subscription item; read both shapes. The
    # subscription bills next at the earliest.
    ends = [obj.get("current_period_end")] + [
        item.get("current_period_end") for item in (obj.get("items") or {}).get("data") or []
    ]
    row.current_period_end = _time(min((int(end) for end in ends if end), default=None))
    if row.status in (RecurringStatus.CANCELED.value, RecurringStatus.COMPLETED.value):
        row.next_bill_at = None
    elif obj.get("status") == "trialing" and obj.get("trial_end"):
        row.next_bill_at = _time(obj["trial_end"])  # a moved bill date, shown as the next bill date
    else:
        row.next_bill_at = row.current_period_end


_ENDED = (RecurringStatus.CANCELED, RecurringStatus.COMPLETED)


def subscription_gone(session: Session, subscription_id: str, now: datetime) -> None:
    """A subscription Stripe no longer has bills nobody: ended, unless it had ended already."""
    row = session.scalar(select(Recurring).where(Recurring.stripe_subscription_id == subscription_id))
    if row is None or row.status in (RecurringStatus.CANCELED.value, RecurringStatus.COMPLETED.value):
        return
    row.status = RecurringStatus.CANCELED.value
    row.canceled_at = row.canceled_at or now
    row.cancel_at_period_end = False
    row.cancel_at = row.trial_ends_at = None
    row.next_bill_at = None


def _product_name(price: Obj, fetch: Fetch) -> str:
    if price.get("nickname"):
        return price["nickname"]
    product = price.get("product")
    if isinstance(product, dict) and product.get("name"):
        return product["name"]
    if price.get("name"):  # older plans carried the product's name
        return price["name"]
    if product:
        return _if_there(fetch, "product", product).get("name") or "Subscription"
    return "Subscription"


def start_order(session: Session, recurring: Recurring) -> Order:
    """The order that started a subscription or plan (placed when it started; its payments are the order's), made
    when it is first needed."""
    order = session.scalar(select(Order).where(Order.recurring_id == recurring.id))
    if order is not None:
        return order
    is_plan = recurring.kind == RecurringKind.PAYMENT_PLAN.value
    return order_book.add_order(
        session,
        customer_id=recurring.customer_id,
        source=OrderSource.PAYMENT_PLAN if is_plan else OrderSource.SUBSCRIPTION,
        currency=recurring.currency,
        lines=[order_book.Line(recurring.product, 1, recurring.amount)],
        created_at=recurring.started_at,
        recurring_id=recurring.id,
    )


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
    session: Session,
    obj: Obj,
    fetch: Fetch,
    counts: SyncCounts | None = None,
    *,
    bot_made: BotMade | None = None,
) -> InvoiceOutcome:
    """A subscription's or plan's invoice as its payment; a paid one adds to the order that started it. A refund of
    its charge the bot asked for goes to `bot_made`, as every refund does."""
    subscription_id = _invoice_subscription(obj)
    if subscription_id is None:
        return InvoiceOutcome(None, None)  # a one-off invoice: its payment arrives as a payment intent
    recurring = recurring_for(session, subscription_id, fetch, counts)
    payment = session.scalar(select(Payment).where(Payment.stripe_invoice_id == obj["id"]))
    created = payment is None
    if payment is None:
        order = start_order(session, recurring)
        first = (
            session.scalar(select(Payment.id).where(Payment.recurring_id == recurring.id).limit(1)) is None
        )
        payment = Payment(
            stripe_invoice_id=obj["id"],
            recurring_id=recurring.id,
            order_id=order.id,
            kind=_payment_kind(obj, recurring, first=first).value,
        )
        session.add(payment)
    payment.due_at = _time(obj.get("due_date") or obj.get("created")) or _now()
    payment.currency = obj.get("currency") or recurring.currency
    charge, intent = _invoice_charge(obj, fetch)
    status = obj.get("status")
    if payment.paid_at is None:
        payment.amount = int(obj.get("amount_due") or 0)
    if status == "paid":
        payment.status = PaymentStatus.PAID.value
    elif status == "void":
        payment.status = PaymentStatus.VOID.value
    elif status == "uncollectible" or (status == "open" and _declined(obj, charge, intent)):
        # Written off (Stripe's uncollectible: retries over, the merchant or Stripe gave up on it) or declined and
        # still open: missed either way until it is paid.
        payment.status = (
            PaymentStatus.UNCOLLECTIBLE.value if status == "uncollectible" else PaymentStatus.FAILED.value
        )
        payment.failure_reason = (
            stripe_text(_failure_reason(charge, intent), Payment.failure_reason) or payment.failure_reason
        )
        payment.failed_at = payment.failed_at or _declined_at(obj, charge)
    else:
        payment.status = PaymentStatus.OPEN.value
    session.flush()
    if counts is not None:
        counts.count("payments", created)
    finished = None
    if payment.status == PaymentStatus.PAID.value and (
        payment.paid_at is None or _newly_seen(payment, charge, intent)
    ):
        paid_at = _time((obj.get("status_transitions") or {}).get("paid_at") or charge.get("created"))
        amount = int(obj.get("amount_paid") or payment.amount or 0)
        paid = _collected(charge, intent, amount, payment.currency, fetch)
        # The payment intent may have been recorded first as a one-off order of its own (its
        # payment_intent.succeeded came before this invoice, and told nothing of it): this payment takes it over.
        stray = order_book.payment_paid_by(session, paid.payment_intent_id, paid.charge_id)
        if stray is not None and stray.id != payment.id and stray.kind == PaymentKind.ONE_OFF.value:
            order_book.adopt_payment(session, payment, stray, paid, paid_at or _now())
        else:
            order_book.mark_paid(session, payment, paid, paid_at or _now())
        order = session.get(Order, payment.order_id)
        if order is not None and order.billing_line1 is None and order.billing_name is None:
            _set_billing(order, charge)
    if payment.status == PaymentStatus.PAID.value and charge:
        sync_refunds(session, charge, counts, payment=payment, bot_made=bot_made)
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


_BILLING_REASONS = {
    "subscription_create": PaymentKind.INITIAL,
    "subscription_update": PaymentKind.CHANGE,
    "manual": PaymentKind.MANUAL,
    "subscription": PaymentKind.MANUAL,
}


def _payment_kind(invoice: Obj, recurring: Recurring, *, first: bool) -> PaymentKind:
    """What Stripe's `billing_reason` says the payment is: the first, a renewal (an instalment of a plan), a
    change of plan, or one made by hand. An invoice without one (the emulator sends none) is the first when the
    subscription has no other, else a renewal."""
    reason = invoice.get("billing_reason")
    kind = _BILLING_REASONS.get(reason or "")
    if kind is not None:
        return kind
    if not reason and first:
        return PaymentKind.INITIAL
    is_plan = recurring.kind == RecurringKind.PAYMENT_PLAN.value
    return PaymentKind.INSTALMENT if is_plan else PaymentKind.RENEWAL


def _newly_seen(payment: Payment, charge: Obj, intent: Obj) -> bool:
    """Whether an invoice names a payment intent or charge its (paid) payment does not hold yet."""
    intent_id, charge_id = intent.get("id"), charge.get("id")
    return bool(
        (intent_id and intent_id != payment.stripe_payment_intent_id)
        or (charge_id and charge_id != payment.stripe_charge_id)
    )


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
    # Since API version 2025-03-31.basil the invoice names its payment intent only in `payments` (one per try
    # of paying it): the one that paid it, else the first.
    tries = sorted((obj.get("payments") or {}).get("data") or [], key=lambda p: p.get("status") != "paid")
    for payment in tries:
        intent_id = intent_id or ref_id((payment.get("payment") or {}).get("payment_intent"))
    if intent_id and not intent and (not charge or obj.get("status") != "paid"):
        intent = _if_there(fetch, "payment_intent", intent_id)
    if not intent and intent_id:
        intent = {"id": intent_id}
    if not charge:
        latest = intent.get("latest_charge")
        charge_id = ref_id(obj.get("charge")) or ref_id(latest)
        charge = (
            latest
            if isinstance(latest, dict)
            else (_if_there(fetch, "charge", charge_id) if charge_id else {})
        )
    return charge, intent


def _declined(invoice: Obj, charge: Obj, intent: Obj) -> bool:
    """Whether an open invoice's payment was tried and failed: Stripe counts an attempt, or the payment intent
    or its charge carries the decline (a first payment of an `incomplete` subscription may show only that)."""
    return (
        int(invoice.get("attempt_count") or 0) > 0
        or bool(intent.get("last_payment_error"))
        or charge.get("status") == "failed"
    )


def _declined_at(invoice: Obj, charge: Obj) -> datetime:
    """When the card was declined: the failed charge's time. An invoice written off without a charge we can see
    was missed when it was marked so; failing both, when it was finalized (billed), then created."""
    transitions = invoice.get("status_transitions") or {}
    failed_charge = charge.get("created") if charge.get("status") == "failed" else None
    return (
        _time(failed_charge)
        or _time(transitions.get("marked_uncollectible_at"))
        or _time(transitions.get("finalized_at"))
        or _time(invoice.get("created"))
        or _now()
    )


def _failure_reason(charge: Obj, intent: Obj) -> str | None:
    error = intent.get("last_payment_error") or {}
    return error.get("message") or charge.get("failure_message") or None


# Orders: one-off payments, and what paid a payment -------------------------------------------------------


def sync_payment_intent(
    session: Session,
    obj: Obj,
    fetch: Fetch,
    counts: SyncCounts | None = None,
    *,
    bot_made: BotMade | None = None,
) -> Order | None:
    """A succeeded one-off payment becomes an order with that one payment: a checkout, or an internal order when the
    bot charged the card (the bot's request for it records that one, through `bot_made`). A subscription's or
    plan's payments arrive through their invoice: older API versions name it on the payment intent; since
    2025-03-31.basil the intent's invoice payments tell (read only for an intent we do not hold yet). Should the
    intent be recorded as an order all the same, its invoice takes it over when it comes (`sync_invoice`)."""
    if obj.get("status") != "succeeded" or obj.get("invoice"):
        return None
    action_key = (obj.get("metadata") or {}).get(ACTION_KEY)
    if action_key and bot_made is not None and bot_made(session, action_key, obj):
        return _order_of(session, order_book.payment_paid_by(session, obj["id"], None))
    customer_id = ref_id(obj.get("customer"))
    if not customer_id:
        return None
    known = order_book.payment_paid_by(session, obj["id"], None)
    if known is not None:
        return _order_of(session, known)  # its invoice came first, or it was recorded before
    if "invoice" not in obj and not action_key and _pays_a_subscription(obj["id"], fetch):
        return None
    customer = customer_for(session, customer_id, fetch, counts)
    latest = obj.get("latest_charge")
    charge = (
        latest if isinstance(latest, dict) else (_if_there(fetch, "charge", ref_id(latest)) if latest else {})
    )
    if charge.get("invoice"):
        return None
    known = order_book.payment_paid_by(session, obj.get("id"), charge.get("id"))
    if known is not None:
        return _order_of(session, known)
    amount = int(obj.get("amount_received") or obj.get("amount") or 0)
    order = order_book.add_paid_order(
        session,
        customer_id=customer.id,
        source=OrderSource.INTERNAL if action_key else OrderSource.CHECKOUT,
        paid=_collected(charge, obj, amount, obj.get("currency") or "usd", fetch),
        lines=_lines(obj, amount),
        created_at=_time(charge.get("created") or obj.get("created")) or _now(),
    )[0]
    _set_billing(order, charge)
    if counts is not None:
        counts.count("orders", True)
    if charge:
        sync_refunds(session, charge, counts)
    return order


def _pays_a_subscription(intent_id: str, fetch: Fetch) -> bool:
    """Whether a payment intent pays an invoice of a subscription or plan (one still to pay, or paid). An invoice
    of no subscription is a one-off sale: its payment is an order like any other."""
    return any(
        invoice_payment.get("status") != "canceled"
        and isinstance(invoice_payment.get("invoice"), dict)
        and _invoice_subscription(invoice_payment["invoice"]) is not None
        for invoice_payment in _if_there(fetch, INVOICES_PAID_BY, intent_id).get("data") or []
    )


def _order_of(session: Session, payment: Payment | None) -> Order | None:
    return session.get(Order, payment.order_id) if payment is not None else None


def _collected(
    charge: Obj, intent: Obj, amount: int, currency: str, fetch: Fetch
) -> order_book.StripePayment:
    """What collected a payment: its payment intent and charge, and the card the charge was made on."""
    card = (charge.get("payment_method_details") or {}).get("card") or {}
    if not card and ref_id(charge.get("payment_method")):
        card = _card(fetch, ref_id(charge.get("payment_method")))  # type: ignore[arg-type]
    return order_book.StripePayment(
        intent.get("id"),
        charge.get("id"),
        amount,
        currency,
        stripe_text(card.get("brand"), Payment.card_brand),
        stripe_text(card.get("last4"), Payment.card_last4),
    )


def _set_billing(order: Order, charge: Obj) -> None:
    """The billing address an order keeps: the one its (first) charge was made with."""
    billing = charge.get("billing_details") or {}
    address = billing.get("address") or {}
    order.billing_name = stripe_text(billing.get("name"), Order.billing_name)
    order.billing_line1 = stripe_text(address.get("line1"), Order.billing_line1)
    order.billing_line2 = stripe_text(address.get("line2"), Order.billing_line2)
    order.billing_city = stripe_text(address.get("city"), Order.billing_city)
    order.billing_state = stripe_text(address.get("state"), Order.billing_state)
    order.billing_postal_code = stripe_text(address.get("postal_code"), Order.billing_postal_code)
    order.billing_country = stripe_text(address.get("country"), Order.billing_country)


def _lines(source_obj: Obj, amount: int) -> list[order_book.Line]:
    """An invoice's lines, or one line named by a payment's description (or what the bot charged for, kept in its
    metadata)."""
    lines = (source_obj.get("lines") or {}).get("data") or []
    metadata = source_obj.get("metadata") or {}
    quantity = metadata.get("quantity", "1")
    items = [
        (line.get("description") or "Item", int(line.get("quantity") or 1), int(line.get("amount") or 0))
        for line in lines
    ] or [
        (
            source_obj.get("description") or metadata.get("description") or "Payment",
            int(quantity) if quantity.isdecimal() and quantity.isascii() else 1,
            amount,
        )
    ]
    result = []
    for description, quantity, line_total in items:
        if quantity < 1 or line_total % quantity:
            quantity, unit = 1, line_total  # a price that does not divide evenly is kept as one line
        else:
            unit = line_total // quantity
        result.append(order_book.Line(stripe_text(description, OrderLine.description), quantity, unit))
    return result


# Refunds ----------------------------------------------------------------------------------------------------


def sync_refund(
    session: Session, refund: Obj, counts: SyncCounts | None = None, *, bot_made: BotMade | None = None
) -> Order | None:
    """Record one refund of a payment we have, unless it is recorded already."""
    payment = order_book.payment_paid_by(
        session, ref_id(refund.get("payment_intent")), ref_id(refund.get("charge"))
    )
    if payment is None:
        return None
    charge = {"id": payment.stripe_charge_id, "refunds": {"data": [refund]}}
    return sync_refunds(session, charge, counts, payment=payment, bot_made=bot_made)


def sync_refunds(
    session: Session,
    charge: Obj,
    counts: SyncCounts | None = None,
    *,
    payment: Payment | None = None,
    bot_made: BotMade | None = None,
) -> Order | None:
    """Record each refund of a charge not recorded yet; the order it belongs to, or None when we have no payment
    of that charge. One the bot asked for goes to `bot_made` first, which settles the bot's request for it."""
    payment = payment or order_book.payment_paid_by(
        session, ref_id(charge.get("payment_intent")), charge.get("id")
    )
    if payment is None:
        return None
    for refund in (charge.get("refunds") or {}).get("data", []):
        if refund.get("status") not in (None, "succeeded", "pending"):
            continue
        metadata = refund.get("metadata") or {}
        action_key = metadata.get(ACTION_KEY)
        if action_key and bot_made is not None and bot_made(session, action_key, refund):
            continue
        recorded = order_book.add_refund(
            session,
            payment,
            amount=int(refund["amount"]),
            stripe_refund_id=refund["id"],
            created_at=_time(refund.get("created")) or _now(),
            reason=stripe_text(refund.get("reason"), Refund.reason),
            requested_by=stripe_text(metadata.get("requested_by"), Refund.requested_by),
        )
        if recorded is not None and counts is not None:
            counts.count("refunds", True)
    return _order_of(session, payment)


# Disputes ---------------------------------------------------------------------------------------------------


def sync_dispute(session: Session, obj: Obj, counts: SyncCounts | None = None) -> Dispute | None:
    """Record a dispute of a payment we have, as Stripe has it now; None when we have no payment of its charge
    (the import brings both in, payments first). A lost dispute counts against its order's lifetime value until
    Stripe reinstates the funds: a reinstatement is a balance transaction paying money back (positive), beside
    the withdrawal (negative)."""
    payment = order_book.payment_paid_by(
        session, ref_id(obj.get("payment_intent")), ref_id(obj.get("charge"))
    )
    if payment is None:
        return None
    amount = max(0, int(obj.get("amount") or 0))
    status = stripe_text(obj.get("status") or "", Dispute.status) or DisputeStatus.NEEDS_RESPONSE.value
    reinstated = any(
        int(transaction.get("amount") or 0) > 0
        for transaction in obj.get("balance_transactions") or []
        if isinstance(transaction, dict)
    )
    dispute, created = order_book.record_dispute(
        session,
        payment,
        order_book.StripeDispute(
            stripe_dispute_id=obj["id"],
            amount=amount,
            currency=obj.get("currency") or payment.currency,
            status=status,
            reason=stripe_text(obj.get("reason"), Dispute.reason),
            due_by=_time((obj.get("evidence_details") or {}).get("due_by")),
            created_at=_time(obj.get("created")) or _now(),
            lost=amount if status == DisputeStatus.LOST.value and not reinstated else 0,
        ),
    )
    if counts is not None:
        counts.count("disputes", created)
    return dispute
