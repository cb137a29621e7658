"""Assembling a customer's record, and the subscription, payment plan and order records inside it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    bindparam,
    case,
    exists,
    func,
    literal_column,
    select,
    true,
    union_all,
)
from sqlalchemy.orm import Session

from bot import order_book
from bot.db import Database
from bot.history import history_page as read_history
from bot.models import (
    LIVE_STATUSES,
    MISSED_PAYMENT_STATUSES,
    NON_PAYMENT_REASONS,
    ActionAttempt,
    AttemptStatus,
    CardSource,
    Customer,
    Dispute,
    FoldedOrderNumber,
    Order,
    OrderLine,
    Payment,
    PaymentStatus,
    Recurring,
    RecurringKind,
    RecurringStatus,
    Refund,
)
from bot.money import Money
from bot.naming import shown_name
from bot.plans import PlanSchedule, plan_schedule
from bot.search import find_customers, order_number
from bot.shared import Shared
from bot.viewmodels import (
    BillingAddress,
    Card,
    CardState,
    CustomerCard,
    CustomerHistory,
    DisputeLine,
    ListFilter,
    OrderLineView,
    OrderPage,
    OrderRecord,
    OrderSummary,
    PaymentLine,
    RecurringLink,
    RecurringList,
    RecurringRecord,
    RecurringSummary,
    RefundLine,
    SearchResult,
    Stats,
    TaxId,
)

MOST_AWAITING = 5  # requests awaiting Stripe shown on one record
MOST_DISPUTES = 10  # disputes shown on one order record (a payment is rarely disputed more than once)

# A payment is missed while it failed or was written off and was not paid since, whatever became of its
# subscription or plan: one canceled for non-payment keeps its missed payments, the money was never collected.
_MISSED_STATUSES = sorted(s.value for s in MISSED_PAYMENT_STATUSES)

Reader = Connection | Session  # reads run on either: a read connection, or the session of a unit of work


def recurring_fingerprint(recurring: Any, last_change: int | None) -> str:
    """A short digest of what a change depends on; a form carries it so a stale form is caught. `last_change`
    (the bot's latest change to it, see `last_change`) makes it a version that never repeats, even when the state
    comes back to what it was: a change asked against it is never mistaken for an earlier one."""
    state = "|".join(
        str(v)
        for v in (
            recurring.status,
            recurring.cancel_at_period_end,
            recurring.payments_paused,
            recurring.paused_until and recurring.paused_until.isoformat(),
            recurring.next_bill_at and recurring.next_bill_at.isoformat(),
            last_change,
        )
    )
    return hashlib.sha256(state.encode()).hexdigest()[:12]


def last_change(session: Session, target_type: str, target_id: int) -> int | None:
    """The bot's latest change to a record that Stripe made (an attempt's id): it only ever grows."""
    return session.scalar(
        select(func.max(ActionAttempt.id)).where(
            ActionAttempt.target_type == target_type,
            ActionAttempt.target_id == target_id,
            ActionAttempt.status == AttemptStatus.SUCCEEDED.value,
        )
    )


class RecordNotFound(LookupError):
    """The record asked for does not exist (any more)."""

    def __init__(self, what: str, record_id: int) -> None:
        super().__init__(f"{what} {record_id} not found")
        self.what = what


def customer_row(session: Session, customer_id: int) -> Customer:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise RecordNotFound("customer", customer_id)
    return customer


def awaiting_stripe(session: Reader, target_type: str, target_id: int) -> list[str]:
    """What was asked of Stripe for this record and is still awaiting its answer, oldest first."""
    requests = session.scalars(
        select(ActionAttempt.request)
        .where(
            ActionAttempt.target_type == target_type,
            ActionAttempt.target_id == target_id,
            ActionAttempt.status == AttemptStatus.PENDING.value,
        )
        .order_by(ActionAttempt.id)
        .limit(MOST_AWAITING)
    ).all()
    return [(request or {}).get("asked", "a change") for request in requests]


# The reads below are Core statements built once, here, with bound parameters: SQLAlchemy compiles each once and
# reuses it, and rows come back as plain tuples rather than ORM objects. Each record is a few statements: counts
# the record shows ride along with its main row as scalar subqueries.
_customers = Customer.__table__
_recurring = Recurring.__table__
_orders = Order.__table__
_lines = OrderLine.__table__
_payments = Payment.__table__
_refunds = Refund.__table__
_disputes = Dispute.__table__
_attempts = ActionAttempt.__table__

_LIVE = _recurring.c.status.in_(sorted(s.value for s in LIVE_STATUSES))
_IS_MISSED = _payments.c.status.in_(_MISSED_STATUSES)
_REFUNDABLE = order_book.REFUNDABLE  # a payment with something left to refund through Stripe


def _count(table, *conditions):
    return select(func.count()).select_from(table).where(*conditions).scalar_subquery()


def _pending_for(target_type: str, target_id) -> ColumnElement[bool]:
    return exists().where(
        _attempts.c.target_type == target_type,
        _attempts.c.target_id == target_id,
        _attempts.c.status == AttemptStatus.PENDING.value,
    )


def _recurring_counts(kind: RecurringKind) -> list:
    of_kind = (_recurring.c.customer_id == _customers.c.id, _recurring.c.kind == kind.value)
    missing = exists().where(_payments.c.recurring_id == _recurring.c.id, _IS_MISSED)
    return [
        _count(_recurring, *of_kind).label(f"{kind.value}_all"),
        _count(_recurring, *of_kind, _LIVE).label(f"{kind.value}_active"),
        _count(_recurring, *of_kind, missing).label(f"{kind.value}_missing"),
    ]


# Per currency: orders and lifetime value, read from the covering index ix_orders_customer_totals alone; and,
# beside them, what is owed on missed payments (rows of part "owed"), so the card needs no statement more.
_ORDER_TOTALS = (
    select(
        literal_column("'orders'").label("part"),
        _orders.c.currency,
        func.count().label("order_count"),
        func.sum(_orders.c.total - _orders.c.amount_refunded - _orders.c.amount_lost).label("value"),
    )
    .where(_orders.c.customer_id == bindparam("customer_id"))
    .group_by(_orders.c.currency)
)
_OWED = (
    select(
        literal_column("'owed'").label("part"),
        _payments.c.currency,
        literal_column("0").label("order_count"),
        func.sum(_payments.c.amount).label("value"),
    )
    # From the customer's subscriptions to their payments: joined the other way, a planner may walk every missed
    # payment of every customer by status first.
    .where(
        _payments.c.recurring_id.in_(
            select(_recurring.c.id).where(_recurring.c.customer_id == bindparam("customer_id"))
        ),
        _IS_MISSED,
    )
    .group_by(_payments.c.currency)
)
_TOTALS = union_all(_ORDER_TOTALS, _OWED).subquery("totals")

# The customer with every count the card shows: one row per currency they paid in or owe (one row when none).
_CARD_HEADER = (
    select(
        _customers,
        *_recurring_counts(RecurringKind.SUBSCRIPTION),
        *_recurring_counts(RecurringKind.PAYMENT_PLAN),
        _pending_for("customer", _customers.c.id).label("awaiting"),
        *(
            select(column)
            .where(_recurring.c.stripe_subscription_id == _customers.c.card_subscription_id)
            .scalar_subquery()
            .label(f"card_subscription_{column.name}")
            for column in (_recurring.c.product, _recurring.c.kind)
        ),
        _TOTALS.c.part,
        _TOTALS.c.currency.label("totals_currency"),
        _TOTALS.c.order_count,
        _TOTALS.c.value,
    )
    .select_from(_customers.outerjoin(_TOTALS, true()))
    .where(_customers.c.id == bindparam("customer_id"))
)

_MISSED = _count(_payments, _payments.c.recurring_id == _recurring.c.id, _IS_MISSED).label("missed")
# Why its latest missed payment failed: an incomplete subscription says so beside its status.
_LATEST_FAILURE = (
    select(_payments.c.failure_reason)
    .where(_payments.c.recurring_id == _recurring.c.id, _IS_MISSED)
    .order_by(_payments.c.due_at.desc(), _payments.c.id.desc())
    .limit(1)
    .scalar_subquery()
    .label("latest_failure")
)
# Stripe shows a moved next bill date as a trial (the bot moves it with trial_end), and a trial as a trial. What
# tells them apart is what we keep of both: a real trial comes before the first payment, so a subscription that
# has paid something (a paid payment above zero; a trial's own first invoice is for zero, and a plan counts its
# paid instalments) has had its next bill date moved, whoever moved it (the bot or the Stripe Dashboard); and so
# has one whose date the bot itself moved (its succeeded request in the ledger), paid or not. Stripe's trial_start
# alone would not tell: moving the date starts a new "trial" there too.
_MOVED_BY_THE_BOT = "move_next_bill_date"  # bot.actions.recurring.MOVE_BILL_DATE
_PAID_BEFORE = (
    exists()
    .where(
        _payments.c.recurring_id == _recurring.c.id,
        _payments.c.status == PaymentStatus.PAID.value,
        _payments.c.amount > 0,
    )
    .label("paid_before")
)
_DATE_MOVED = (
    exists()
    .where(
        _attempts.c.target_type == "recurring",
        _attempts.c.target_id == _recurring.c.id,
        _attempts.c.action == _MOVED_BY_THE_BOT,
        _attempts.c.status == AttemptStatus.SUCCEEDED.value,
    )
    .label("date_moved")
)
_LIVE_FIRST = case((_LIVE, 0), else_=1)


def _recurring_page(kind: RecurringKind, which: ListFilter):
    page = select(
        _recurring, _MISSED, _LATEST_FAILURE, _PAID_BEFORE, _DATE_MOVED, _LIVE_FIRST.label("live_first")
    ).where(_recurring.c.customer_id == bindparam("customer_id"), _recurring.c.kind == kind.value)
    if which == "active":
        page = page.where(_LIVE)
    page = page.order_by(_LIVE_FIRST, _recurring.c.started_at.desc(), _recurring.c.id.desc())
    return select(
        page.limit(bindparam(f"{kind.value}_limit")).offset(bindparam(f"{kind.value}_offset")).subquery()
    )


def _both_pages(subscriptions: ListFilter, plans: ListFilter):
    pages = union_all(
        _recurring_page(RecurringKind.SUBSCRIPTION, subscriptions),
        _recurring_page(RecurringKind.PAYMENT_PLAN, plans),
    ).subquery()
    return select(pages).order_by(
        pages.c.kind, pages.c.live_first, pages.c.started_at.desc(), pages.c.id.desc()
    )


# A page of subscriptions and a page of plans, in one statement, for each pair of Active / All filters.
_RECURRING_PAGES = {
    (subscriptions, plans): _both_pages(subscriptions, plans)
    for subscriptions in ("active", "all")
    for plans in ("active", "all")
}

_ORDER_PAGE = (
    select(
        _orders.c.id,
        _orders.c.number,
        _orders.c.created_at,
        _orders.c.currency,
        _orders.c.total,
        _orders.c.amount_refunded,
        _orders.c.status,
        _orders.c.source,
        select(_lines.c.description)
        .where(_lines.c.order_id == _orders.c.id)
        .order_by(_lines.c.position)
        .limit(1)
        .scalar_subquery()
        .label("first_line"),
        _count(_lines, _lines.c.order_id == _orders.c.id).label("line_count"),
        _count(_payments, _payments.c.order_id == _orders.c.id).label("payment_count"),
    )
    .where(_orders.c.customer_id == bindparam("customer_id"))
    .order_by(_orders.c.created_at.desc(), _orders.c.id.desc())
    .limit(bindparam("limit"))
    .offset(bindparam("offset"))
)


def customer_card(
    reader: Reader, state: CardState, *, recurring_page_size: int, orders_page_size: int
) -> CustomerCard:
    """A customer's record card in at most three statements (four while a request awaits Stripe's answer)."""
    rows = reader.execute(_CARD_HEADER, {"customer_id": state.customer_id}).all()
    if not rows:
        raise RecordNotFound("customer", state.customer_id)
    customer = rows[0]
    per_currency = [row for row in rows if row.part == "orders"]
    order_count = sum(row.order_count for row in per_currency)
    stats = Stats(
        orders=order_count,
        lifetime_value=sorted(
            (Money(int(row.value or 0), row.totals_currency) for row in per_currency),
            key=lambda m: (-m.amount, m.currency),
        ),
        active_subscriptions=customer.subscription_active,
        active_plans=customer.payment_plan_active,
        subscriptions_missing_payment=customer.subscription_missing,
        plans_missing_payment=customer.payment_plan_missing,
        outstanding=_by_amount(
            Money(int(row.value), row.totals_currency) for row in rows if row.part == "owed"
        ),
    )
    subscriptions_shown = _Shown(
        customer.subscription_all,
        customer.subscription_active,
        state.subscriptions,
        state.subscriptions_page,
        recurring_page_size,
    )
    plans_shown = _Shown(
        customer.payment_plan_all,
        customer.payment_plan_active,
        state.plans,
        state.plans_page,
        recurring_page_size,
    )
    recurring_rows: dict[str, list] = {kind.value: [] for kind in RecurringKind}
    if subscriptions_shown.count or plans_shown.count:
        for row in reader.execute(
            _RECURRING_PAGES[state.subscriptions, state.plans],
            {
                "customer_id": customer.id,
                **subscriptions_shown.bounds(RecurringKind.SUBSCRIPTION),
                **plans_shown.bounds(RecurringKind.PAYMENT_PLAN),
            },
        ):
            recurring_rows[row.kind].append(row)
    orders = _order_page(reader, customer.id, order_count, state.orders_page, orders_page_size)
    subscriptions = subscriptions_shown.as_list(recurring_rows[RecurringKind.SUBSCRIPTION.value])
    plans = plans_shown.as_list(recurring_rows[RecurringKind.PAYMENT_PLAN.value])
    state = state.with_(subscriptions_page=subscriptions.page, plans_page=plans.page, orders_page=orders.page)
    return CustomerCard(
        state=state,
        name=shown_name(customer.name, customer.email),
        email=customer.email,
        created_at=customer.created_at,
        stripe_customer_id=customer.stripe_customer_id,
        card=_card(
            customer.card_brand,
            customer.card_last4,
            customer.card_exp_month,
            customer.card_exp_year,
            source=customer.card_source or CardSource.CUSTOMER.value,
            subscription=customer.card_subscription_product,
            subscription_kind=customer.card_subscription_kind,
        ),
        stats=stats,
        subscriptions=subscriptions,
        plans=plans,
        orders=orders,
        awaiting=awaiting_stripe(reader, "customer", customer.id) if customer.awaiting else [],
        company_name=customer.company_name,
        tax_ids=_tax_ids(customer.tax_ids),
    )


def _tax_ids(stored: list | None) -> tuple[TaxId, ...]:
    """The tax ids kept on a customer (bot.stripe_sync keeps them), as the card shows them."""
    return tuple(
        TaxId(str(tax_id.get("type") or ""), str(tax_id.get("value") or ""))
        for tax_id in stored or ()
        if isinstance(tax_id, dict) and tax_id.get("value")
    )


class _Shown:
    """Which page of a customer's subscriptions (or plans) the card shows, from their counts."""

    def __init__(
        self, all_count: int, active_count: int, which: ListFilter, page: int, page_size: int
    ) -> None:
        self.all_count, self.active_count, self.which, self.page_size = (
            all_count,
            active_count,
            which,
            page_size,
        )
        self.count = active_count if which == "active" else all_count
        self.page_count = _page_count(self.count, page_size)
        self.page = min(page, self.page_count - 1)

    def bounds(self, kind: RecurringKind) -> dict[str, int]:
        return {f"{kind.value}_limit": self.page_size, f"{kind.value}_offset": self.page * self.page_size}

    def as_list(self, rows: list) -> RecurringList:
        return RecurringList(
            filter=self.which,
            items=[_recurring_summary(r, r.missed) for r in rows],
            page=self.page,
            page_count=self.page_count,
            active_count=self.active_count,
            all_count=self.all_count,
        )


def _by_amount(amounts: Iterable[Money]) -> list[Money]:
    """Largest first, then by currency."""
    return sorted((m for m in amounts if m.amount), key=lambda m: (-m.amount, m.currency))


def _card(
    brand: str | None,
    last4: str | None,
    month: int | None = None,
    year: int | None = None,
    *,
    source: str | None = None,
    subscription: str | None = None,
    subscription_kind: str | None = None,
) -> Card | None:
    if not last4:
        return None
    return Card(brand or "card", last4, month, year, source, subscription, subscription_kind)


def _page_count(total: int, page_size: int) -> int:
    return max(1, -(-total // page_size))


def _recurring_summary(r, missed_payments: int) -> RecurringSummary:
    """`r`: a recurring row with its columns by name, and `paid_before`, `date_moved`, `latest_failure`."""
    moved = bool(r.paid_before or r.date_moved or r.installments_paid)
    return RecurringSummary(
        id=r.id,
        kind=r.kind,
        product=r.product,
        price=Money(r.amount, r.currency),
        interval=r.interval,
        interval_count=r.interval_count,
        status=r.status,
        started_at=r.started_at,
        next_bill_at=r.next_bill_at,
        payments_paused=r.payments_paused,
        paused_until=r.paused_until,
        cancel_at_period_end=r.cancel_at_period_end,
        canceled_at=r.canceled_at,
        missed_payments=missed_payments,
        installments_total=r.installments_total,
        installments_paid=r.installments_paid,
        trial_ends_at=r.trial_ends_at,
        bill_date_moved=r.status == RecurringStatus.TRIALING.value and moved,
        cancel_at=r.cancel_at
        or ((r.current_period_end or r.next_bill_at) if r.cancel_at_period_end else None),
        for_non_payment=r.status == RecurringStatus.CANCELED.value and r.cancel_reason in NON_PAYMENT_REASONS,
        failure_reason=r.latest_failure,
    )


def _order_page(reader: Reader, customer_id: int, total: int, page: int, page_size: int) -> OrderPage:
    page_count = _page_count(total, page_size)
    page = min(page, page_count - 1)
    orders = []
    if total:
        orders = reader.execute(
            _ORDER_PAGE, {"customer_id": customer_id, "limit": page_size, "offset": page * page_size}
        ).all()
    return OrderPage(
        items=[
            OrderSummary(
                id=o.id,
                number=o.number,
                created_at=o.created_at,
                total=Money(o.total, o.currency),
                refunded=Money(o.amount_refunded, o.currency),
                status=o.status,
                source=o.source,
                description=_description(o.first_line, o.line_count),
                payment_count=o.payment_count,
            )
            for o in orders
        ],
        page=page,
        page_count=page_count,
        total=total,
    )


def _description(first_line: str | None, line_count: int) -> str:
    if first_line is None:
        return ""
    return first_line + (f" + {line_count - 1} more" if line_count > 1 else "")


_PAID_TOTALS = (
    select(_payments.c.currency.label("paid_currency"), func.sum(_payments.c.amount).label("paid"))
    .where(
        _payments.c.recurring_id == bindparam("recurring_id"), _payments.c.status == PaymentStatus.PAID.value
    )
    .group_by(_payments.c.currency)
    .subquery("paid_totals")
)

_started_by = _orders.alias("started_by")
# A subscription or plan with its customer's name and every count its record shows: one row per currency paid in.
_RECURRING_HEADER = (
    select(
        _recurring,
        _customers.c.name.label("customer_name"),
        _customers.c.email.label("customer_email"),
        _count(_payments, _payments.c.recurring_id == _recurring.c.id).label("payment_count"),
        _MISSED,
        _LATEST_FAILURE,
        _PAID_BEFORE,
        _DATE_MOVED,
        _count(_payments, _payments.c.recurring_id == _recurring.c.id, *_REFUNDABLE).label("refundable"),
        select(func.max(_attempts.c.id))
        .where(
            _attempts.c.target_type == "recurring",
            _attempts.c.target_id == _recurring.c.id,
            _attempts.c.status == AttemptStatus.SUCCEEDED.value,
        )
        .scalar_subquery()
        .label("last_change"),
        _pending_for("recurring", _recurring.c.id).label("awaiting"),
        _started_by.c.id.label("order_id"),
        _started_by.c.number.label("order_number"),
        _PAID_TOTALS.c.paid_currency,
        _PAID_TOTALS.c.paid,
    )
    .select_from(
        _recurring.join(_customers, _customers.c.id == _recurring.c.customer_id)
        .outerjoin(_started_by, _started_by.c.recurring_id == _recurring.c.id)
        .outerjoin(_PAID_TOTALS, true())
    )
    .where(_recurring.c.id == bindparam("recurring_id"))
)

_PAYMENT_COLUMNS = (
    _payments.c.id,
    _payments.c.kind,
    _payments.c.due_at,
    _payments.c.paid_at,
    _payments.c.amount,
    _payments.c.currency,
    _payments.c.status,
    _payments.c.failure_reason,
    _payments.c.amount_refunded,
    _payments.c.amount_refund_pending,
    _payments.c.card_brand,
    _payments.c.card_last4,
    _payments.c.order_id,
    _orders.c.number,
)
_RECENT_PAYMENTS = (
    select(*_PAYMENT_COLUMNS)
    .select_from(_payments.join(_orders, _orders.c.id == _payments.c.order_id))
    .where(_payments.c.recurring_id == bindparam("recurring_id"))
    .order_by(_payments.c.due_at.desc(), _payments.c.id.desc())
    .limit(bindparam("limit"))
)
_ORDER_PAYMENTS = (
    select(*_PAYMENT_COLUMNS)
    .select_from(_payments.join(_orders, _orders.c.id == _payments.c.order_id))
    .where(_payments.c.order_id == bindparam("order_id"))
    .order_by(_payments.c.due_at.desc(), _payments.c.id.desc())
    .limit(bindparam("limit"))
)


def _payment_line(p) -> PaymentLine:
    return PaymentLine(
        id=p.id,
        kind=p.kind,
        due_at=p.due_at,
        amount=Money(p.amount, p.currency),
        status=p.status,
        failure_reason=p.failure_reason,
        order_id=p.order_id,
        order_number=p.number,
        paid_at=p.paid_at,
        refunded=Money(p.amount_refunded, p.currency),
        refund_pending=p.amount_refund_pending,
        card=_card(p.card_brand, p.card_last4),
    )


def recurring_record(
    reader: Reader,
    recurring_id: int,
    back: CardState | None,
    *,
    payments_shown: int,
    history_shown: int = 0,
    history_page: int = 0,
) -> RecurringRecord:
    """A subscription or payment plan record in at most two statements (three while a request awaits Stripe),
    and one more for a page of its History when `history_shown` (its page size) is set."""
    rows = reader.execute(_RECURRING_HEADER, {"recurring_id": recurring_id}).all()
    if not rows:
        raise RecordNotFound("subscription or payment plan", recurring_id)
    recurring = rows[0]
    if back is None or back.customer_id != recurring.customer_id:
        back = CardState(recurring.customer_id)
    payments = []
    if payments_shown and recurring.payment_count:
        payments = reader.execute(
            _RECENT_PAYMENTS, {"recurring_id": recurring.id, "limit": payments_shown}
        ).all()
    return RecurringRecord(
        back=back,
        customer_name=shown_name(recurring.customer_name, recurring.customer_email),
        summary=_recurring_summary(recurring, recurring.missed),
        current_period_end=recurring.current_period_end,
        stripe_subscription_id=recurring.stripe_subscription_id,
        payments=[_payment_line(p) for p in payments],
        payment_count=recurring.payment_count,
        paid_total=[Money(int(row.paid), row.paid_currency) for row in rows if row.paid_currency is not None],
        refundable_payments=recurring.refundable,
        order_id=recurring.order_id,
        order_number=recurring.order_number,
        schedule=_schedule(recurring),
        fingerprint=recurring_fingerprint(recurring, recurring.last_change),
        awaiting=awaiting_stripe(reader, "recurring", recurring.id) if recurring.awaiting else [],
        history=read_history(reader, ("recurring", recurring.id), history_page, history_shown)
        if history_shown
        else None,
    )


def _schedule(recurring) -> PlanSchedule | None:
    if recurring.kind != RecurringKind.PAYMENT_PLAN.value or not recurring.installments_total:
        return None
    return plan_schedule(
        price=Money(recurring.amount, recurring.currency),
        installments_total=recurring.installments_total,
        installments_paid=recurring.installments_paid or 0,
        next_bill_at=recurring.next_bill_at,
        interval=recurring.interval,
        interval_count=recurring.interval_count,
        status=recurring.status,
        paused_until=recurring.paused_until,
        payments_paused=recurring.payments_paused,
    )


_linked = _recurring.alias("linked")
_ORDER_HEADER = (
    select(
        _orders,
        _customers.c.name.label("customer_name"),
        _customers.c.email.label("customer_email"),
        _linked.c.kind.label("recurring_kind"),
        _linked.c.product.label("recurring_product"),
        _count(_payments, _payments.c.order_id == _orders.c.id).label("payment_count"),
        _count(_payments, _payments.c.order_id == _orders.c.id, *_REFUNDABLE).label("refundable_payments"),
        _count(
            _payments,
            _payments.c.order_id == _orders.c.id,
            _payments.c.status == PaymentStatus.PAID.value,
            _payments.c.stripe_charge_id.is_not(None),
        ).label("receipt_payments"),
        select(
            func.coalesce(
                func.sum(
                    _payments.c.amount - _payments.c.amount_refunded - _payments.c.amount_refund_pending
                ),
                0,
            )
        )
        .where(_payments.c.order_id == _orders.c.id, *_REFUNDABLE)
        .scalar_subquery()
        .label("refundable"),
        select(func.coalesce(func.sum(_payments.c.amount_refund_pending), 0))
        .where(_payments.c.order_id == _orders.c.id)
        .scalar_subquery()
        .label("refund_pending"),
        _count(_disputes, _disputes.c.order_id == _orders.c.id).label("dispute_count"),
    )
    .select_from(
        _orders.join(_customers, _customers.c.id == _orders.c.customer_id).outerjoin(
            _linked, _linked.c.id == _orders.c.recurring_id
        )
    )
    .where(_orders.c.id == bindparam("order_id"))
)
_folded = FoldedOrderNumber.__table__
_ORDER_ID_BY_NUMBER = union_all(
    select(_orders.c.id).where(_orders.c.number == bindparam("number")),
    select(_folded.c.order_id).where(_folded.c.number == bindparam("number")),
).limit(1)
_ORDER_LINES = (
    select(_lines.c.description, _lines.c.quantity, _lines.c.unit_amount)
    .where(_lines.c.order_id == bindparam("order_id"))
    .order_by(_lines.c.position)
)
_ORDER_REFUNDS = (
    select(
        _refunds.c.amount,
        _refunds.c.currency,
        _refunds.c.reason,
        _refunds.c.note,
        _refunds.c.requested_by,
        _refunds.c.created_at,
    )
    .where(_refunds.c.order_id == bindparam("order_id"))
    .order_by(_refunds.c.created_at, _refunds.c.id)
)


def order_record(
    reader: Reader,
    order_id: int,
    back: CardState | None,
    *,
    payments_shown: int = 12,
    history_shown: int = 0,
    history_page: int = 0,
) -> OrderRecord:
    """An order record in four statements (five while a refund awaits Stripe's answer), and one more for a page
    of its History when `history_shown` (its page size) is set."""
    order = reader.execute(_ORDER_HEADER, {"order_id": order_id}).first()
    if order is None:
        raise RecordNotFound("order", order_id)
    if back is None or back.customer_id != order.customer_id:
        back = CardState(order.customer_id)
    lines = reader.execute(_ORDER_LINES, {"order_id": order.id}).all()
    refunds = reader.execute(_ORDER_REFUNDS, {"order_id": order.id}).all()
    payments = (
        [
            _payment_line(p)
            for p in reader.execute(_ORDER_PAYMENTS, {"order_id": order.id, "limit": payments_shown})
        ]
        if order.payment_count and payments_shown
        else []
    )
    billing = BillingAddress(
        order.billing_name,
        order.billing_line1,
        order.billing_line2,
        order.billing_city,
        order.billing_state,
        order.billing_postal_code,
        order.billing_country,
    )
    recurring = (
        RecurringLink(order.recurring_id, order.recurring_kind, order.recurring_product)  # type: ignore[arg-type]
        if order.recurring_kind is not None
        else None
    )
    paid_with = next((p.card for p in payments if p.card is not None), None)
    return OrderRecord(
        back=back,
        customer_name=shown_name(order.customer_name, order.customer_email),
        id=order.id,
        number=order.number,
        created_at=order.created_at,
        status=order.status,
        source=order.source,
        lines=[
            OrderLineView(
                line.description,
                line.quantity,
                Money(line.unit_amount, order.currency),
                Money(line.quantity * line.unit_amount, order.currency),
            )
            for line in lines
        ],
        total=Money(order.total, order.currency),
        refunded=Money(order.amount_refunded, order.currency),
        card=paid_with,
        billing=billing if billing.lines() else None,
        refunds=[
            RefundLine(Money(r.amount, r.currency), r.reason, r.note, r.requested_by, r.created_at)
            for r in refunds
        ],
        recurring=recurring,
        payments=payments,
        payment_count=order.payment_count,
        refundable=Money(int(order.refundable), order.currency),
        refundable_payments=order.refundable_payments,
        receipt_payments=order.receipt_payments,
        refund_pending=int(order.refund_pending),
        awaiting=_awaiting_refunds(reader, order.id) if order.refund_pending else [],
        disputes=_order_disputes(reader, order.id) if order.dispute_count else [],
        history=read_history(reader, ("order", order.id), history_page, history_shown)
        if history_shown
        else None,
    )


_ORDER_AWAITING = (
    select(_attempts.c.request)
    .where(
        _attempts.c.target_type == "payment",
        _attempts.c.target_id.in_(
            select(_payments.c.id).where(_payments.c.order_id == bindparam("order_id"))
        ),
        _attempts.c.status == AttemptStatus.PENDING.value,
    )
    .order_by(_attempts.c.id)
    .limit(MOST_AWAITING)
)


def _awaiting_refunds(reader: Reader, order_id: int) -> list[str]:
    """Refunds of an order's payments asked of Stripe and still awaiting its answer, oldest first."""
    requests = reader.execute(_ORDER_AWAITING, {"order_id": order_id}).scalars().all()
    return [(request or {}).get("asked", "a refund") for request in requests]


_ORDER_DISPUTES = (
    select(
        _disputes.c.stripe_dispute_id,
        _disputes.c.amount,
        _disputes.c.currency,
        _disputes.c.status,
        _disputes.c.reason,
        _disputes.c.due_by,
        _disputes.c.created_at,
        _disputes.c.amount_lost,
    )
    .where(_disputes.c.order_id == bindparam("order_id"))
    .order_by(_disputes.c.created_at.desc(), _disputes.c.id.desc())
    .limit(MOST_DISPUTES)
)


def _order_disputes(reader: Reader, order_id: int) -> list[DisputeLine]:
    """An order's disputes, newest first: read only for an order that has one."""
    return [dispute_line(d) for d in reader.execute(_ORDER_DISPUTES, {"order_id": order_id})]


def dispute_line(d) -> DisputeLine:
    return DisputeLine(
        stripe_dispute_id=d.stripe_dispute_id,
        amount=Money(d.amount, d.currency),
        status=d.status,
        reason=d.reason,
        due_by=d.due_by,
        opened_at=d.created_at,
        lost=Money(d.amount_lost, d.currency),
    )


class Records(Shared):
    """The records as the listeners read them: each a few statements on a read connection (see Database.read)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def find(
        self, text: str, *, recurring_page_size: int, orders_page_size: int
    ) -> tuple[SearchResult, CustomerCard | None]:
        """The customers `text` finds, and the record of the one when it finds exactly one."""

        def read(connection: Connection) -> tuple[SearchResult, CustomerCard | None]:
            result = find_customers(connection, text)
            if len(result.matches) != 1 or result.capped:
                return result, None
            state = CardState(result.matches[0].customer_id)
            card = customer_card(
                connection, state, recurring_page_size=recurring_page_size, orders_page_size=orders_page_size
            )
            return result, card

        return self.db.read(read)

    def order_numbered(self, text: str, *, payments_shown: int, history_shown: int = 0) -> OrderRecord | None:
        """The record of the order `text` names by its number (`100234` or `#100234`), if there is one."""
        number = order_number(text)
        if number is None:
            return None

        def read(connection: Connection) -> OrderRecord | None:
            order_id = connection.scalar(_ORDER_ID_BY_NUMBER, {"number": number})
            if order_id is None:
                return None
            return order_record(
                connection, order_id, None, payments_shown=payments_shown, history_shown=history_shown
            )

        return self.db.read(read)

    def customer_card(
        self, state: CardState, *, recurring_page_size: int, orders_page_size: int
    ) -> CustomerCard:
        return self.db.read(
            lambda connection: customer_card(
                connection, state, recurring_page_size=recurring_page_size, orders_page_size=orders_page_size
            )
        )

    def recurring_record(
        self,
        recurring_id: int,
        back: CardState | None,
        *,
        payments_shown: int,
        history_shown: int = 0,
        history_page: int = 0,
    ) -> RecurringRecord:
        return self.db.read(
            lambda connection: recurring_record(
                connection,
                recurring_id,
                back,
                payments_shown=payments_shown,
                history_shown=history_shown,
                history_page=history_page,
            )
        )

    def order_record(
        self,
        order_id: int,
        back: CardState | None,
        *,
        payments_shown: int,
        history_shown: int = 0,
        history_page: int = 0,
    ) -> OrderRecord:
        return self.db.read(
            lambda connection: order_record(
                connection,
                order_id,
                back,
                payments_shown=payments_shown,
                history_shown=history_shown,
                history_page=history_page,
            )
        )

    def customer_history(self, back: CardState, *, page: int, page_size: int) -> CustomerHistory:
        """A customer's History (everything of theirs), shown from their card: two statements."""

        def read(connection: Connection) -> CustomerHistory:
            customer = connection.execute(_CUSTOMER_NAME, {"customer_id": back.customer_id}).first()
            if customer is None:
                raise RecordNotFound("customer", back.customer_id)
            history = read_history(connection, ("customer", back.customer_id), page, page_size)
            return CustomerHistory(back, shown_name(customer.name, customer.email), history)

        return self.db.read(read)


_CUSTOMER_NAME = select(_customers.c.name, _customers.c.email).where(
    _customers.c.id == bindparam("customer_id")
)
