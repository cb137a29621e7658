"""Plain values the record renderers draw from: no database, no Slack, no Stripe."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from bot.money import Money
from bot.plans import PlanSchedule

ListFilter = Literal["active", "all"]

# How much a person may type into the action forms: the forms offer no more, and the actions' rules accept no more.
NOTE_LENGTH = 500  # a note: on a record (Add note), or with any action (kept with its audit entry)
REFUND_NOTE_LENGTH = NOTE_LENGTH
DESCRIPTION_LENGTH = 250  # what a new order is for
EMAIL_LENGTH = 254  # the longest address email allows
_FILTER_CODES: dict[str, str] = {"active": "a", "all": "l"}


@dataclass(frozen=True)
class Notice:
    """The line on top of a record after someone acted on it: who, and what happened (their words are escaped
    when drawn; `actor` is a Slack user id, drawn as a mention)."""

    actor: str
    said: str  # "refunded $12.50 of order #100021 (Jane Doe)"
    pending: bool = False  # asked of Stripe, its answer not known yet


class BadValue(ValueError):
    """A button or form value the bot did not write (a message from an older bot, or altered)."""


@dataclass(frozen=True)
class CardState:
    """Where a person is on a customer record card; carried in its buttons so the card needs no session."""

    customer_id: int
    subscriptions: ListFilter = "active"
    subscriptions_page: int = 0
    plans: ListFilter = "active"
    plans_page: int = 0
    orders_page: int = 0

    def encode(self) -> str:
        return json.dumps(
            [
                self.customer_id,
                _FILTER_CODES[self.subscriptions],
                self.subscriptions_page,
                _FILTER_CODES[self.plans],
                self.plans_page,
                self.orders_page,
            ],
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, value: str) -> CardState:
        """Read a state back from a button value; raises BadValue on anything we did not write."""
        try:
            customer_id, subs, subs_page, plans, plans_page, orders_page = json.loads(value)
        except (TypeError, ValueError, RecursionError) as error:
            raise BadValue(f"not a card state: {str(value)[:80]!r}") from error
        filters = {code: name for name, code in _FILTER_CODES.items()}
        numbers = (customer_id, subs_page, plans_page, orders_page)
        if subs not in filters or plans not in filters or not all(_natural(n) for n in numbers):
            raise BadValue(f"not a card state: {value[:80]!r}")
        return cls(customer_id, filters[subs], subs_page, filters[plans], plans_page, orders_page)

    def with_(self, **changes) -> CardState:
        return replace(self, **changes)


def _natural(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53


@dataclass(frozen=True)
class Match:
    customer_id: int
    name: str
    email: str


@dataclass(frozen=True)
class SearchResult:
    query: str
    matches: list[Match]
    total: int  # how many customers match, counted up to a cap (see bot.search.MAX_COUNTED)
    capped: bool = False  # more matched than were counted


@dataclass(frozen=True)
class Card:
    brand: str
    last4: str
    exp_month: int | None = None
    exp_year: int | None = None
    # Where the card on file comes from (bot.models.CardSource): the customer's default ("customer"), a
    # subscription's ("subscription", whose product is `subscription`), or the newest saved card ("newest").
    source: str | None = None
    subscription: str | None = None
    subscription_kind: str | None = None  # subscription | payment_plan


@dataclass(frozen=True)
class Stats:
    orders: int
    lifetime_value: list[Money]  # one amount per currency, largest first; empty when nothing was paid
    active_subscriptions: int
    active_plans: int
    subscriptions_missing_payment: int
    plans_missing_payment: int
    outstanding: list[Money] = field(default_factory=list)  # owed on the missed payments, per currency

    @property
    def missing_payment(self) -> int:
        return self.subscriptions_missing_payment + self.plans_missing_payment


@dataclass(frozen=True)
class RecurringSummary:
    id: int
    kind: Literal["subscription", "payment_plan"]
    product: str
    price: Money
    interval: str
    interval_count: int
    status: str
    started_at: datetime
    next_bill_at: datetime | None
    payments_paused: bool
    paused_until: datetime | None
    cancel_at_period_end: bool
    canceled_at: datetime | None
    missed_payments: int
    installments_total: int | None = None
    installments_paid: int | None = None
    trial_ends_at: datetime | None = None  # while Stripe says trialing
    # Trialing in Stripe because its next bill date was moved (with trial_end), not in a trial: see bot.records.
    bill_date_moved: bool = False
    cancel_at: datetime | None = None  # when a scheduled cancel takes effect
    for_non_payment: bool = False  # canceled by Stripe because it was not paid
    failure_reason: str | None = None  # why its latest missed payment failed

    @property
    def ended(self) -> bool:
        return self.status in ("canceled", "completed")

    @property
    def in_trial(self) -> bool:
        return self.status == "trialing" and not self.bill_date_moved

    @property
    def cancelling(self) -> bool:
        """Live, with a cancel scheduled (at the period's end, or on a date)."""
        return not self.ended and (self.cancel_at_period_end or self.cancel_at is not None)

    @property
    def plan_status(self) -> str:
        """Where a payment plan's Change status form starts: one of bot.actions.recurring.PLAN_STATUSES."""
        if self.ended:
            return "canceled_now"
        if self.cancel_at_period_end:
            return "canceled_period_end"
        return "paused" if self.payments_paused else "active"


@dataclass(frozen=True)
class RecurringList:
    filter: ListFilter
    items: list[RecurringSummary]
    page: int
    page_count: int
    active_count: int
    all_count: int


@dataclass(frozen=True)
class OrderSummary:
    id: int
    number: str
    created_at: datetime
    total: Money
    refunded: Money
    status: str
    source: str
    description: str  # the first line item, "+ N more" when there are others
    payment_count: int = 1  # payments of the order (a subscription's renewals, a plan's instalments)


@dataclass(frozen=True)
class OrderPage:
    items: list[OrderSummary]
    page: int
    page_count: int
    total: int


@dataclass(frozen=True)
class TaxId:
    """One of a customer's tax ids: Stripe's type code ("eu_vat") and the value ("DE123456789")."""

    type: str
    value: str


@dataclass(frozen=True)
class CustomerCard:
    state: CardState
    name: str
    email: str
    created_at: datetime
    stripe_customer_id: str | None
    card: Card | None
    stats: Stats
    subscriptions: RecurringList
    plans: RecurringList
    orders: OrderPage
    awaiting: list[str] = field(
        default_factory=list
    )  # requests still awaiting Stripe's answer ("charge $5 …")
    company_name: str | None = None  # Stripe's business_name
    tax_ids: tuple[TaxId, ...] = ()  # as Stripe lists them, newest first


# What a payment was for, in words (bot.models.PaymentKind → label).
PAYMENT_KINDS = {
    "one_off": "Payment",
    "initial": "First payment",
    "renewal": "Renewal",
    "instalment": "Instalment",
    "change": "Plan change",
    "manual": "Manual payment",
}


def payment_label(kind: str, when: datetime) -> str:
    """A payment in plain text, where Slack date tokens cannot go (a select's options): "Renewal of 2026-11-03"."""
    return f"{PAYMENT_KINDS.get(kind, 'Payment')} of {when.date().isoformat()}"


@dataclass(frozen=True)
class PaymentLine:
    """One payment of an order, subscription or plan: what it was for (Stripe's billing reason), and how it went."""

    id: int
    kind: str  # bot.models.PaymentKind
    due_at: datetime
    amount: Money
    status: str
    failure_reason: str | None
    order_id: int | None
    order_number: str | None
    paid_at: datetime | None = None
    refunded: Money | None = None
    refund_pending: int = 0  # asked of Stripe, answer not yet known
    card: Card | None = None


@dataclass(frozen=True)
class HistoryEntry:
    """One line of a record's History: something the bot did (an audit entry), a note someone wrote, or what
    Stripe did as our records know it. Every text in it is outside text (people's, Stripe's): escaped when drawn."""

    at: datetime
    # action (an audit entry), note, paid, failed (a payment), refund (one not made from Slack), started, canceled
    kind: str
    actor: str | None = None  # a Slack user id
    said: str = ""  # an action's summary, a note's text, a payment's kind, a product's name
    outcome: str | None = None  # an action's: succeeded, failed, unknown (awaiting Stripe), let_go
    action: str | None = None  # an action's name in the ledger: "refund", "pause_payments", …
    note: str | None = None  # written with the action, or with a refund
    amount: Money | None = None
    detail: str | None = None  # why a payment failed; a refund's reason; a subscription's kind
    number: str | None = None  # the order a payment or refund is of


@dataclass(frozen=True)
class HistoryPage:
    """A page of a record's History, newest first: the record it is of, which page, and whether older ones exist."""

    target: tuple[str, int]  # ("customer" | "recurring" | "order", id)
    entries: list[HistoryEntry]
    page: int
    has_older: bool


@dataclass(frozen=True)
class CustomerHistory:
    """A customer's History, shown from their card (the card itself stays within its statement budget)."""

    back: CardState
    customer_name: str
    history: HistoryPage


_HISTORY_KINDS = {"customer": "c", "recurring": "r", "order": "o"}


def history_value(target: tuple[str, int], page: int, back: CardState) -> str:
    """A button value naming a record, a page of its History, and the card state its Back button returns to."""
    kind, record_id = target
    return f"{_HISTORY_KINDS[kind]}{record_id}.{page}:{back.encode()}"


def parse_history_value(value: str) -> tuple[tuple[str, int], int, CardState]:
    head, _, state = str(value).partition(":")
    kinds = {code: kind for kind, code in _HISTORY_KINDS.items()}
    record_id, _, page = head[1:].partition(".")
    if head[:1] not in kinds or not all(p.isascii() and p.isdecimal() for p in (record_id, page)):
        raise BadValue(f"not a history value: {str(value)[:80]!r}")
    if len(record_id) > 15 or len(page) > 6:
        raise BadValue(f"not a history value: {str(value)[:80]!r}")
    return (kinds[head[:1]], int(record_id)), int(page), CardState.decode(state)


@dataclass(frozen=True)
class RecurringRecord:
    back: CardState
    customer_name: str
    summary: RecurringSummary
    current_period_end: datetime | None
    stripe_subscription_id: str | None
    payments: list[PaymentLine]  # newest first, at most the renderer's page
    payment_count: int
    paid_total: list[Money] = field(default_factory=list)
    refundable_payments: int = 0  # paid payments with something left to refund
    order_id: int | None = None  # the order that started it, whose payments these are
    order_number: str | None = None
    schedule: PlanSchedule | None = None  # a payment plan's: what is left and when it is due
    fingerprint: str = ""  # the state a change was asked against (see bot.records.recurring_fingerprint)
    awaiting: list[str] = field(default_factory=list)  # changes still awaiting Stripe's answer
    history: HistoryPage | None = None  # when read for showing (see bot.history)

    @property
    def pause_undoable(self) -> bool:
        """Paused, and no bill voided under the pause yet (its newest bill is not a voided one): Undo pause takes
        it back as if never asked (see bot.actions.recurring). Needs the newest payment read with the record."""
        newest = self.payments[0].status if self.payments else None
        return self.summary.payments_paused and not self.summary.ended and newest != "void"


@dataclass(frozen=True)
class FailedBill:
    """A bill of a subscription or plan whose payment failed and that Stripe is still retrying."""

    payment_id: int
    amount: Money
    due_at: datetime


@dataclass(frozen=True)
class PauseForm:
    """What the Pause payments form is about: the record, and the failed bills it asks what to do with (the
    oldest first; `more_failed_bills` when there are more than the form handles at once)."""

    record: RecurringRecord
    failed_bills: list[FailedBill] = field(default_factory=list)
    more_failed_bills: bool = False


@dataclass(frozen=True)
class OrderLineView:
    description: str
    quantity: int
    unit_amount: Money
    amount: Money


@dataclass(frozen=True)
class RefundLine:
    amount: Money
    reason: str | None
    note: str | None
    requested_by: str | None
    created_at: datetime


@dataclass(frozen=True)
class BillingAddress:
    name: str | None
    line1: str | None
    line2: str | None
    city: str | None
    state: str | None
    postal_code: str | None
    country: str | None

    def lines(self) -> list[str]:
        if self.country in _CITY_STATE_POSTAL:  # "Portland, OR 97205"
            locality = " ".join(
                p for p in (", ".join(p for p in (self.city, self.state) if p), self.postal_code) if p
            )
        else:  # "75002 Paris", then the region on its own line
            locality = " ".join(p for p in (self.postal_code, self.city) if p)
        region = self.state if self.country not in _CITY_STATE_POSTAL else None
        return [p for p in (self.name, self.line1, self.line2, locality, region, self.country) if p]


_CITY_STATE_POSTAL = frozenset({"US", "CA", "AU"})


@dataclass(frozen=True)
class RecurringLink:
    id: int
    kind: Literal["subscription", "payment_plan"]
    product: str


@dataclass(frozen=True)
class OrderRecord:
    back: CardState
    customer_name: str
    id: int
    number: str
    created_at: datetime
    status: str
    source: str
    lines: list[OrderLineView]
    total: Money  # collected: every payment paid
    refunded: Money
    card: Card | None  # the card of its latest payment
    billing: BillingAddress | None
    refunds: list[RefundLine]
    recurring: RecurringLink | None
    payments: list[PaymentLine] = field(default_factory=list)  # newest first, at most the renderer's page
    payment_count: int = 0
    refundable: Money | None = None  # what is left to refund over all its payments, holding back what awaits
    refundable_payments: int = 0  # payments with something left to refund through Stripe
    receipt_payments: int = 0  # paid payments with a Stripe charge, whose receipt Stripe can send
    refund_pending: int = 0  # refunds asked of Stripe whose answer is not known yet
    awaiting: list[str] = field(default_factory=list)  # refunds still awaiting Stripe's answer
    disputes: list[DisputeLine] = field(default_factory=list)  # newest first
    history: HistoryPage | None = None  # when read for showing (see bot.history)


def record_value(record_id: int, back: CardState) -> str:
    """A button value naming a record and the card state its Back button returns to."""
    return f"{record_id}:{back.encode()}"


def with_seen(value: str, seen: str) -> str:
    """A button value that also carries the state of the record the button was drawn from."""
    return f"{value}@{seen}"


def parse_seen(value: str) -> tuple[str, str]:
    """(the rest of the value, the state it was drawn from); an empty state when it carries none."""
    rest, _, seen = value.partition("@")
    return rest, seen


def parse_record_value(value: str) -> tuple[int, CardState]:
    head, _, state = str(value).partition(":")
    if not (head.isascii() and head.isdecimal()):
        raise BadValue(f"not a record value: {str(value)[:80]!r}")
    return int(head), CardState.decode(state)


@dataclass(frozen=True)
class RefundQuote:
    """What can be refunded of one payment of an order, as the refund form shows it."""

    payment_id: int
    payment: str  # which payment, in plain text: "Renewal of 2026-11-03"
    order_id: int
    order_number: str
    customer_id: int
    customer_name: str
    paid: Money
    refunded: Money
    awaiting: (
        Money  # refunds asked of Stripe whose answer is not known yet: held back from what is refundable
    )
    refundable: Money
    card: str | None
    payment_count: int = 1  # payments of its order: with one, the payment is the order

    @property
    def what(self) -> str:
        """The payment in words: "order #100021", or "the renewal of 2026-11-03 (order #100021)"."""
        if self.payment_count <= 1:
            return f"order #{self.order_number}"
        return f"the {self.payment[:1].lower()}{self.payment[1:]} (order #{self.order_number})"

    @property
    def seen(self) -> tuple[int, int]:
        """The payment as the person saw it (refunded, awaiting): a refund is asked against exactly this."""
        return self.refunded.amount, self.awaiting.amount


@dataclass(frozen=True)
class RefundRequest:
    """A refund a person has filled in and is asked to confirm."""

    payment_id: int
    amount: Money
    reason: str | None  # Stripe's reason code; None for "other"
    note: str | None
    seen: tuple[int, int]  # the payment's (refunded, awaiting) when the form was filled in


@dataclass(frozen=True)
class WholeOrderRefund:
    """Refund whole order, as its confirmation states it: every payment of the order still refundable."""

    order_id: int
    order_number: str
    customer_id: int
    customer_name: str
    payments: list[RefundQuote]  # newest first
    more: int = 0  # older payments still refundable, left for another turn (see refunds.WHOLE_ORDER_MOST)

    @property
    def total(self) -> Money:
        currency = self.payments[0].refundable.currency
        return Money(sum(q.refundable.amount for q in self.payments), currency)

    @property
    def awaiting(self) -> Money:
        currency = self.payments[0].refundable.currency
        return Money(sum(q.awaiting.amount for q in self.payments), currency)


@dataclass(frozen=True)
class MissedPayment:
    payment_id: int
    customer_id: int
    customer_name: str
    recurring_id: int
    kind: str  # subscription | payment_plan
    product: str
    amount: Money
    reason: str | None
    failed_at: datetime  # when the card was declined
    payments_paused: bool
    written_off: bool = False  # Stripe's invoice marked uncollectible
    status: str = "active"  # of its subscription or plan
    payment_status: str = "failed"  # of the payment itself (bot.models.PaymentStatus)


@dataclass(frozen=True)
class Difference:
    """One customer whose email differs somewhere (a row of the email-sync report).

    `stripe_email` is Stripe's address when it differs from ours ("" when Stripe holds none), None when Stripe
    agrees or the customer is not in Stripe. `crm_differences` lists each CRM that differs: (CRM name, the old
    address it holds), or (CRM name, None) when it has no contact under either address."""

    customer_id: int
    name: str
    our_email: str
    stripe_email: str | None
    crm_differences: list[tuple[str, str | None]] = field(default_factory=list)


@dataclass(frozen=True)
class ProductOption:
    id: int
    name: str
    price: Money


@dataclass(frozen=True)
class NewOrderForm:
    """What the New order form offers: the card it charges, the currencies and the merchant's products."""

    customer_id: int
    customer_name: str
    card: str  # "Visa •••• 4242"
    currency: str  # the customer's usual currency, chosen at first
    currencies: tuple[str, ...]
    products: list[ProductOption]
    last_order_seen: int  # the customer's newest order when the form opened: part of the request's identity


@dataclass(frozen=True)
class NewOrderRequest:
    """A new order a person has filled in and is asked to confirm."""

    customer_id: int
    description: str
    unit_amount: Money
    quantity: int
    last_order_seen: int
    note: str | None = None

    @property
    def total(self) -> Money:
        return Money(self.unit_amount.amount * self.quantity, self.unit_amount.currency)


@dataclass(frozen=True)
class EmailForm:
    customer_id: int
    customer_name: str
    email: str
    in_stripe: bool


@dataclass(frozen=True)
class DisputeLine:
    """A dispute of one of an order's payments, as Stripe has it (bot.models.DisputeStatus)."""

    stripe_dispute_id: str
    amount: Money
    status: str
    reason: str | None  # Stripe's code: fraudulent, product_not_received, …
    due_by: datetime | None  # evidence is due by then
    opened_at: datetime
    lost: Money  # what it takes from lifetime value: the amount while lost and not reinstated


@dataclass(frozen=True)
class DisputeNews:
    """One step of a dispute (opened, closed) for the alerts channel."""

    step: str  # bot.models.DisputeAlertStep
    dispute_id: int
    customer_id: int
    customer_name: str
    order_id: int
    order_number: str
    dispute: DisputeLine


@dataclass(frozen=True)
class ReceiptPayment:
    """A paid payment of an order whose receipt Stripe can send: it has a Stripe charge."""

    payment_id: int
    payment: str  # "Renewal of 2026-11-03" (bot.viewmodels.payment_label)
    paid: Money
    card: str | None  # "Visa •••• 4242"


@dataclass(frozen=True)
class ReceiptForm:
    """Send receipt: an order's payments that have a receipt, and the address it goes to unless another is typed."""

    order_id: int
    order_number: str
    customer_name: str
    email: str
    payments: list[ReceiptPayment]

    def payment(self, payment_id: int) -> ReceiptPayment | None:
        return next((p for p in self.payments if p.payment_id == payment_id), None)


@dataclass(frozen=True)
class ReceiptRequest:
    """A Send receipt form, checked: which payment's receipt, to which address, with which note."""

    payment_id: int
    email: str
    note: str | None
