"""The database tables: customers, their orders, subscriptions, payment plans, payments and refunds.

Money is always an integer amount in the currency's minor unit plus an ISO 4217 code. Times are stored as
UTC and always come back timezone-aware.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC that is always read back timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Search terms are compared byte for byte so a prefix range (term >= 'jan' and term < 'jao') is exact;
# PostgreSQL's default collations would reorder punctuation and break that.
SearchTerm = String(200).with_variant(String(200, collation="C"), "postgresql")


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime}


class RecurringKind(enum.StrEnum):
    SUBSCRIPTION = "subscription"
    PAYMENT_PLAN = "payment_plan"


class RecurringStatus(enum.StrEnum):
    ACTIVE = "active"
    TRIALING = "trialing"
    PAST_DUE = "past_due"
    PAUSED = "paused"
    INCOMPLETE = "incomplete"
    CANCELED = "canceled"
    COMPLETED = "completed"
    UNPAID = "unpaid"  # Stripe's: every retry of a payment failed and Stripe stopped collecting, not canceled


# "Active" in the record means the customer still has a live agreement with the merchant, even while its
# payments are paused or a payment is overdue. These statuses are what the Active toggle shows. `unpaid` is one:
# the agreement stands (Stripe did not cancel it), only its collection stopped, so it is listed and counted as
# active and shown as "Unpaid". `incomplete` (the first payment failed, and may still be made) is not: the
# agreement never started; it is listed under All, and its missed payment counts on the card all the same.
LIVE_STATUSES = frozenset(
    {
        RecurringStatus.ACTIVE,
        RecurringStatus.TRIALING,
        RecurringStatus.PAST_DUE,
        RecurringStatus.UNPAID,
        RecurringStatus.PAUSED,
    }
)
ENDED_STATUSES = frozenset({RecurringStatus.CANCELED, RecurringStatus.COMPLETED})
# Stripe's cancellation_details.reason for a subscription it ended because it was not paid (ours too for
# `incomplete_expired`, a first payment never made).
NON_PAYMENT_REASONS = frozenset({"payment_failed", "payment_disputed"})


class OrderStatus(enum.StrEnum):
    UNPAID = "unpaid"  # placed, nothing collected yet (a subscription whose first payment failed)
    PAID = "paid"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


class OrderSource(enum.StrEnum):
    """What the customer placed. Renewals and instalments are not orders: they are payments of the order that
    started their subscription or payment plan."""

    CHECKOUT = "checkout"
    INTERNAL = "internal"
    SUBSCRIPTION = "subscription"
    PAYMENT_PLAN = "payment_plan"


class PaymentStatus(enum.StrEnum):
    PAID = "paid"
    FAILED = "failed"
    OPEN = "open"
    VOID = "void"
    UNCOLLECTIBLE = "uncollectible"  # failed, and written off in Stripe (invoice marked uncollectible)


# A payment is missed while it failed, or was written off, and was not paid since: the money was never collected,
# whatever became of its subscription or plan.
MISSED_PAYMENT_STATUSES = frozenset({PaymentStatus.FAILED, PaymentStatus.UNCOLLECTIBLE})


class PaymentKind(enum.StrEnum):
    """Why a payment was taken: Stripe's invoice `billing_reason` for payments of a subscription or plan."""

    ONE_OFF = "one_off"  # the single payment of a checkout or an internal order
    INITIAL = "initial"  # subscription_create: the first payment of a subscription or plan
    RENEWAL = "renewal"  # subscription_cycle of a subscription
    INSTALMENT = "instalment"  # subscription_cycle of a payment plan
    CHANGE = "change"  # subscription_update: a prorated change of plan
    MANUAL = "manual"  # manual, or an invoice made by hand for the subscription


class Interval(enum.StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


# Stripe takes a customer email of up to 512 characters (its API reference, customers.create), longer than
# RFC 5321's 320: the column holds whatever Stripe holds.
STRIPE_EMAIL_LENGTH = 512
# Stripe's business_name is "up to 150 characters" (customers.create).
STRIPE_BUSINESS_NAME_LENGTH = 150


def _values(e: type[enum.StrEnum]) -> str:
    return ", ".join(f"'{m.value}'" for m in e)


class CardSource(enum.StrEnum):
    CUSTOMER = "customer"  # the customer's default payment method
    SUBSCRIPTION = "subscription"  # the default payment method of one of their subscriptions
    NEWEST = "newest"  # the newest card saved to the customer, none being the default


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    email: Mapped[str] = mapped_column(String(STRIPE_EMAIL_LENGTH))
    created_at: Mapped[datetime]
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    card_brand: Mapped[str | None] = mapped_column(String(32))
    card_last4: Mapped[str | None] = mapped_column(String(4))
    card_exp_month: Mapped[int | None]
    card_exp_year: Mapped[int | None]
    # The card the bot shows and charges (New order): the customer's default payment method in Stripe, else the
    # default payment method of one of their live subscriptions, else their newest saved card. `card_source` says
    # which of those it is (CARD_SOURCES; None for rows from before it was recorded: the customer's default), and
    # `card_subscription_id` names the subscription whose card it is.
    default_payment_method_id: Mapped[str | None] = mapped_column(String(255))
    card_source: Mapped[str | None] = mapped_column(String(16))
    card_subscription_id: Mapped[str | None] = mapped_column(String(255))
    # The company the customer buys for, as Stripe has it (`business_name`); None when Stripe has none.
    company_name: Mapped[str | None] = mapped_column(String(STRIPE_BUSINESS_NAME_LENGTH))
    # The customer's tax ids as Stripe lists them, newest first: [{"type": "eu_vat", "value": "DE123456789"}, …];
    # None when Stripe has none. A JSON list rather than a table: they are only ever shown with the customer and
    # replaced whole by each sync (Stripe's list is the truth), and on the row the card's header statement reads
    # already they cost no statement. A tax id search would want a table of its own.
    tax_ids: Mapped[list | None] = mapped_column(JSON)

    orders: Mapped[list[Order]] = relationship(back_populates="customer", lazy="raise")
    recurring: Mapped[list[Recurring]] = relationship(back_populates="customer", lazy="raise")


class CustomerSearchTerm(Base):
    """One folded word of a customer's name or email, so a prefix search is an index range scan."""

    __tablename__ = "customer_search_terms"
    # Covering index: "does this customer have a term starting with …" is one seek, never a table read.
    __table_args__ = (Index("ix_customer_search_terms_customer_term", "customer_id", "term"),)

    term: Mapped[str] = mapped_column(SearchTerm, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)


class Recurring(Base):
    """What subscriptions and payment plans share: both mirror a Stripe subscription."""

    __tablename__ = "recurring"
    __table_args__ = (
        CheckConstraint(f"kind IN ({_values(RecurringKind)})", name="recurring_kind"),
        CheckConstraint(f"status IN ({_values(RecurringStatus)})", name="recurring_status"),
        CheckConstraint(f"interval IN ({_values(Interval)})", name="recurring_interval"),
        CheckConstraint("amount >= 0", name="recurring_amount_not_negative"),
        CheckConstraint(
            "kind = 'subscription' OR (installments_total > 0 AND installments_paid >= 0"
            " AND installments_paid <= installments_total)",
            name="recurring_plan_installments",
        ),
        Index("ix_recurring_customer", "customer_id", "kind", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    product: Mapped[str] = mapped_column(Text)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    interval: Mapped[str] = mapped_column(String(8))
    interval_count: Mapped[int] = mapped_column(default=1)
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    canceled_at: Mapped[datetime | None]
    cancel_at_period_end: Mapped[bool] = mapped_column(default=False)
    current_period_end: Mapped[datetime | None]
    payments_paused: Mapped[bool] = mapped_column(default=False)
    paused_until: Mapped[datetime | None]
    next_bill_at: Mapped[datetime | None]
    trial_ends_at: Mapped[
        datetime | None
    ]  # Stripe's trial_end while it is trialing (a trial, or a moved bill date)
    cancel_at: Mapped[datetime | None]  # when a scheduled cancel takes effect (Stripe's cancel_at)
    cancel_reason: Mapped[str | None] = mapped_column(String(32))  # Stripe's cancellation_details.reason
    default_payment_method_id: Mapped[str | None] = mapped_column(String(255))  # the subscription's own card
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    installments_total: Mapped[int | None]
    installments_paid: Mapped[int | None]

    customer: Mapped[Customer] = relationship(back_populates="recurring", lazy="raise")

    __mapper_args__ = {"polymorphic_on": "kind"}

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_STATUSES


class Subscription(Recurring):
    __mapper_args__ = {"polymorphic_identity": RecurringKind.SUBSCRIPTION.value}


class PaymentPlan(Recurring):
    __mapper_args__ = {"polymorphic_identity": RecurringKind.PAYMENT_PLAN.value}


class Order(Base):
    """What a customer placed: a checkout, an internal order, or the start of a subscription or payment plan. Its
    money is in its payments; `total` (collected), `amount_refunded` and `amount_lost` (disputes lost) add them up, kept by bot.order_book in the
    same transaction as each payment and refund, so a customer's totals read from one covering index."""

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(f"status IN ({_values(OrderStatus)})", name="order_status"),
        CheckConstraint(f"source IN ({_values(OrderSource)})", name="order_source"),
        CheckConstraint("total >= 0", name="order_total_not_negative"),
        CheckConstraint(
            "amount_refunded >= 0 AND amount_refunded <= total", name="order_refund_within_total"
        ),
        Index("ix_orders_customer_created", "customer_id", "created_at", "id"),
        # Covering: a customer's order count and lifetime value per currency are read from this index alone,
        # never from the table, so a customer with thousands of orders costs one short index range.
        Index(
            "ix_orders_customer_totals", "customer_id", "currency", "total", "amount_refunded", "amount_lost"
        ),
        Index("ix_orders_recurring", "recurring_id", unique=True),
        # An order's number comes from its id, and people keep numbers (receipts, Stripe's metadata): SQLite must
        # never hand out the id of a deleted order again (PostgreSQL's sequences never do).
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    created_at: Mapped[datetime]
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[int] = mapped_column(BigInteger, default=0)  # collected so far: its paid payments
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    # Taken back by the card's bank through disputes lost (and not reinstated): kept by bot.order_book beside
    # amount_refunded, so lifetime value (total - refunded - lost) still reads from the covering index alone.
    amount_lost: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    status: Mapped[str] = mapped_column(String(24))
    source: Mapped[str] = mapped_column(String(16))
    # The subscription or plan this order started (one order each: ix_orders_recurring is unique).
    recurring_id: Mapped[int | None] = mapped_column(ForeignKey("recurring.id", ondelete="SET NULL"))
    billing_name: Mapped[str | None] = mapped_column(Text)
    billing_line1: Mapped[str | None] = mapped_column(Text)
    billing_line2: Mapped[str | None] = mapped_column(Text)
    billing_city: Mapped[str | None] = mapped_column(Text)
    billing_state: Mapped[str | None] = mapped_column(Text)
    billing_postal_code: Mapped[str | None] = mapped_column(String(32))
    billing_country: Mapped[str | None] = mapped_column(String(2))

    customer: Mapped[Customer] = relationship(back_populates="orders", lazy="raise")
    lines: Mapped[list[OrderLine]] = relationship(
        back_populates="order", lazy="raise", order_by="OrderLine.position"
    )


class FoldedOrderNumber(Base):
    """The number of an order that became a payment of another (0007 folded each renewal's and instalment's own
    order into its subscription's): the number still opens the order it went into."""

    __tablename__ = "folded_order_numbers"

    number: Mapped[str] = mapped_column(String(32), primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)


def order_number(order_id: int) -> str:
    """The human order number of an order: the same rule the demo data follows."""
    return str(100_000 + order_id)


class OrderLine(Base):
    __tablename__ = "order_lines"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="order_line_quantity_positive"),
        CheckConstraint("unit_amount >= 0", name="order_line_unit_amount_not_negative"),
    )

    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    description: Mapped[str] = mapped_column(Text)
    quantity: Mapped[int]
    unit_amount: Mapped[int] = mapped_column(BigInteger)

    order: Mapped[Order] = relationship(back_populates="lines", lazy="raise")

    @property
    def amount(self) -> int:
        return self.quantity * self.unit_amount


class Payment(Base):
    """One payment of an order: the single payment of a checkout or internal order, or one billing attempt of a
    subscription or payment plan (a Stripe invoice), paid or not. Refunds are of a payment; a refund in flight
    reserves its amount here first, so two refunds at once can never exceed what it collected."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint(f"status IN ({_values(PaymentStatus)})", name="payment_status"),
        CheckConstraint(f"kind IN ({_values(PaymentKind)})", name="payment_kind"),
        CheckConstraint("amount >= 0", name="payment_amount_not_negative"),
        CheckConstraint(
            "amount_refunded >= 0 AND amount_refunded <= amount", name="payment_refund_within_amount"
        ),
        CheckConstraint(
            "amount_refund_pending >= 0 AND amount_refunded + amount_refund_pending <= amount",
            name="payment_refund_pending_within_amount",
        ),
        Index("ix_payments_recurring_due", "recurring_id", "due_at"),
        Index("ix_payments_status", "status", "recurring_id"),
        Index("ix_payments_order_due", "order_id", "due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    recurring_id: Mapped[int | None] = mapped_column(ForeignKey("recurring.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[datetime]
    paid_at: Mapped[datetime | None]
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    failed_at: Mapped[datetime | None]  # when the card was first declined (the failed charge's time)
    stripe_invoice_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_charge_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    amount_refund_pending: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    card_brand: Mapped[str | None] = mapped_column(String(32))
    card_last4: Mapped[str | None] = mapped_column(String(4))


class Refund(Base):
    __tablename__ = "refunds"
    __table_args__ = (CheckConstraint("amount > 0", name="refund_amount_positive"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id", ondelete="CASCADE"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    stripe_refund_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    requested_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]


class AuditEvent(Base):
    """Who did what to which record, and how it ended. Written for every attempt, allowed or not."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_target", "target_type", "target_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[int | None] = mapped_column(BigInteger)
    outcome: Mapped[str] = mapped_column(String(32))
    amount: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    stripe_id: Mapped[str | None] = mapped_column(String(255))
    details: Mapped[dict | None] = mapped_column(JSON)


class AttemptStatus(enum.StrEnum):
    PENDING = "pending"  # asked of Stripe, answer not yet recorded (or Stripe's outcome unknown)
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ActionAttempt(Base):
    """One request to change something in Stripe and in our records, at most once per key (see
    bot.actions.ledger). The key is what the request does, so a double click, a retried request or two people
    asking the same thing at once all land on one row. Each try has its own Stripe idempotency key; `tried_at`
    is when the latest try began, and nothing else touches the attempt until that try must have ended.
    `reserved` is the amount a refund sets aside on its order while it waits for Stripe. A definite failure frees
    the key for a fresh try."""

    __tablename__ = "action_attempts"
    __table_args__ = (
        CheckConstraint(f"status IN ({_values(AttemptStatus)})", name="action_attempt_status"),
        CheckConstraint("reserved >= 0", name="action_attempt_reserved_not_negative"),
        Index("ix_action_attempts_target", "target_type", "target_id"),
        Index("ix_action_attempts_status_tried", "status", "tried_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    stripe_idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    action: Mapped[str] = mapped_column(String(32))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    stripe_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    tries: Mapped[int] = mapped_column(default=1, server_default="1")
    tried_at: Mapped[datetime]  # when this attempt was last taken up (its window starts there)
    sent_at: Mapped[datetime]  # when its current idempotency key was first sent (Stripe replays it for 24 h)
    reserved: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    request: Mapped[dict | None] = mapped_column(JSON)  # what settling needs to redo the record from Stripe
    details: Mapped[dict | None] = mapped_column(JSON)  # errors, for people reading the table


class Product(Base):
    """Something the merchant sells, offered when charging a customer's card for a new order."""

    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("unit_amount >= 0", name="product_unit_amount_not_negative"),
        UniqueConstraint("name", "currency", name="uq_products_name_currency"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    unit_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    active: Mapped[bool] = mapped_column(default=True)


class StripeEvent(Base):
    """A Stripe webhook event already handled: an event is processed once, however often Stripe delivers it."""

    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime]


class MissedPaymentAlert(Base):
    """The alert posted for one missed payment: its unique payment_id is what makes each alert go out once,
    however often the job runs and however many schedulers run it."""

    __tablename__ = "missed_payment_alerts"
    # The job looks for paid payments among the alerts not yet resolved; resolved ones are passed over.
    __table_args__ = (Index("ix_missed_payment_alerts_resolved", "resolved_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id", ondelete="CASCADE"), unique=True)
    channel: Mapped[str] = mapped_column(String(64))
    message_ts: Mapped[str | None] = mapped_column(String(32))
    claimed_at: Mapped[datetime]
    posted_at: Mapped[datetime | None]
    resolved_at: Mapped[
        datetime | None
    ]  # when the payment ended (paid, voided, written off) and its alert said so


class ImportProgress(Base):
    """Where an import from Stripe got to, per kind of object, so an interrupted import carries on."""

    __tablename__ = "import_progress"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    cursor: Mapped[str | None] = mapped_column(String(255))  # the last object id done; None before the first
    finished: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[datetime]


class OldEmail(Base):
    """An address of a customer's other than the one in our record: one our record held before a change (from
    Slack or synced from Stripe), or one Stripe held when the email check found it differing. The email check
    asks the CRMs about the customer while a row of theirs is `due`, and a full check sets every row due again.

    Rows are only added, never rewritten by a change: each change is a row of its own with a larger id, and the
    check clears `due` only on the rows it read, so a change made while a check runs is never cleared unseen."""

    __tablename__ = "old_emails"
    # The check reads the due rows (few, usually), a customer at a time, and a customer's rows by customer.
    __table_args__ = (
        Index("ix_old_emails_due", "due", "customer_id"),
        Index("ix_old_emails_customer", "customer_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(STRIPE_EMAIL_LENGTH))
    noted_at: Mapped[datetime]
    due: Mapped[bool] = mapped_column(default=True)
    looked_at: Mapped[datetime | None]  # when the check last asked the CRMs about this customer


class DisputeStatus(enum.StrEnum):
    """Stripe's dispute statuses. The `warning_` ones are inquiries (no money taken yet); `prevented` is one
    Stripe's dispute prevention resolved before it became a dispute."""

    WARNING_NEEDS_RESPONSE = "warning_needs_response"
    WARNING_UNDER_REVIEW = "warning_under_review"
    WARNING_CLOSED = "warning_closed"
    NEEDS_RESPONSE = "needs_response"
    UNDER_REVIEW = "under_review"
    WON = "won"
    LOST = "lost"
    PREVENTED = "prevented"


# A dispute has closed when Stripe says no more can change but a reinstatement of funds: the closed alert is due.
CLOSED_DISPUTE_STATUSES = frozenset(
    {DisputeStatus.WON, DisputeStatus.LOST, DisputeStatus.WARNING_CLOSED, DisputeStatus.PREVENTED}
)


class Dispute(Base):
    """A dispute (chargeback or inquiry) of one payment, as Stripe has it now. `amount_lost` is what it counts
    against its order (the disputed amount while it is lost and not reinstated, else 0): bot.order_book keeps the
    order's `amount_lost` the sum of these."""

    __tablename__ = "disputes"
    __table_args__ = (
        CheckConstraint("amount >= 0", name="dispute_amount_not_negative"),
        CheckConstraint("amount_lost >= 0", name="dispute_lost_not_negative"),
        Index("ix_disputes_order", "order_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stripe_dispute_id: Mapped[str] = mapped_column(String(255), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id", ondelete="CASCADE"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(String(64))
    due_by: Mapped[datetime | None]  # evidence is due by then (Stripe's evidence_details.due_by)
    created_at: Mapped[datetime]
    amount_lost: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class DisputeAlertStep(enum.StrEnum):
    OPENED = "opened"
    CLOSED = "closed"


class DisputeAlert(Base):
    """The alert posted for one step of a dispute (opened, closed): unique per dispute and step, so each is posted
    once however often Stripe delivers the events that lead to it (see bot.dispute_alerts)."""

    __tablename__ = "dispute_alerts"
    __table_args__ = (UniqueConstraint("dispute_id", "step", name="uq_dispute_alerts_dispute_step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dispute_id: Mapped[int] = mapped_column(ForeignKey("disputes.id", ondelete="CASCADE"))
    step: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(64))
    message_ts: Mapped[str | None] = mapped_column(String(32))
    claimed_at: Mapped[datetime]
    posted_at: Mapped[datetime | None]


class Note(Base):
    """A note a person wrote on a record (a customer, a subscription or plan, an order): their own words, shown in
    the record's History beside what was done to it. Notes move no money and are never rewritten."""

    __tablename__ = "notes"
    # A record's History reads its notes newest first.
    __table_args__ = (Index("ix_notes_target", "target_type", "target_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target_type: Mapped[str] = mapped_column(String(32))  # customer | recurring | order
    target_id: Mapped[int] = mapped_column(BigInteger)
    author: Mapped[str] = mapped_column(String(64))  # a Slack user id
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
