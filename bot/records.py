"""Assembling a customer's record, and the subscription, payment plan and order records inside it."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from bot.db import Database
from bot.models import (
    LIVE_STATUSES,
    ActionAttempt,
    AttemptStatus,
    Customer,
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
from bot.search import find_customers, order_number
from bot.shared import Shared
from bot.viewmodels import (
    BillingAddress,
    Card,
    CardState,
    CustomerCard,
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
)

MOST_AWAITING = 5  # requests awaiting Stripe shown on one record

# A failed payment still counts as missed while its subscription or plan has not ended.
_ENDED = (RecurringStatus.CANCELED.value, RecurringStatus.COMPLETED.value)


def recurring_fingerprint(recurring: Recurring, last_change: int | None) -> str:
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


def awaiting_stripe(session: Session, target_type: str, target_id: int) -> list[str]:
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


def customer_card(
    session: Session, state: CardState, *, recurring_page_size: int, orders_page_size: int
) -> CustomerCard:
    customer = session.get(Customer, state.customer_id)
    if customer is None:
        raise RecordNotFound("customer", state.customer_id)
    stats, order_count = _stats(session, customer.id)
    subscriptions = _recurring_list(
        session,
        customer.id,
        RecurringKind.SUBSCRIPTION,
        state.subscriptions,
        state.subscriptions_page,
        recurring_page_size,
    )
    plans = _recurring_list(
        session, customer.id, RecurringKind.PAYMENT_PLAN, state.plans, state.plans_page, recurring_page_size
    )
    orders = _order_page(session, customer.id, order_count, state.orders_page, orders_page_size)
    awaiting = awaiting_stripe(session, "customer", customer.id)
    state = state.with_(subscriptions_page=subscriptions.page, plans_page=plans.page, orders_page=orders.page)
    return CustomerCard(
        state=state,
        name=shown_name(customer.name, customer.email),
        email=customer.email,
        created_at=customer.created_at,
        stripe_customer_id=customer.stripe_customer_id,
        card=_card(customer.card_brand, customer.card_last4, customer.card_exp_month, customer.card_exp_year),
        stats=stats,
        subscriptions=subscriptions,
        plans=plans,
        orders=orders,
        awaiting=awaiting,
    )


def _card(
    brand: str | None, last4: str | None, month: int | None = None, year: int | None = None
) -> Card | None:
    if not last4:
        return None
    return Card(brand or "card", last4, month, year)


def _stats(session: Session, customer_id: int) -> tuple[Stats, int]:
    per_currency = session.execute(
        select(Order.currency, func.count(), func.sum(Order.total - Order.amount_refunded))
        .where(Order.customer_id == customer_id)
        .group_by(Order.currency)
    ).all()
    order_count = sum(count for _, count, _ in per_currency)
    lifetime_value = sorted(
        (Money(int(value or 0), currency) for currency, _, value in per_currency),
        key=lambda m: (-m.amount, m.currency),
    )
    live = Recurring.status.in_([s.value for s in LIVE_STATUSES])
    active = dict(
        session.execute(
            select(Recurring.kind, func.count())
            .where(Recurring.customer_id == customer_id, live)
            .group_by(Recurring.kind)
        ).all()
    )
    missing = dict(
        session.execute(
            select(Recurring.kind, func.count(func.distinct(Recurring.id)))
            .join(Payment, Payment.recurring_id == Recurring.id)
            .where(
                Recurring.customer_id == customer_id,
                Recurring.status.not_in(_ENDED),
                Payment.status == PaymentStatus.FAILED.value,
            )
            .group_by(Recurring.kind)
        ).all()
    )
    stats = Stats(
        orders=order_count,
        lifetime_value=lifetime_value,
        active_subscriptions=active.get(RecurringKind.SUBSCRIPTION.value, 0),
        active_plans=active.get(RecurringKind.PAYMENT_PLAN.value, 0),
        subscriptions_missing_payment=missing.get(RecurringKind.SUBSCRIPTION.value, 0),
        plans_missing_payment=missing.get(RecurringKind.PAYMENT_PLAN.value, 0),
    )
    return stats, order_count


def _page_count(total: int, page_size: int) -> int:
    return max(1, -(-total // page_size))


def _recurring_list(
    session: Session, customer_id: int, kind: RecurringKind, which: ListFilter, page: int, page_size: int
) -> RecurringList:
    live = Recurring.status.in_([s.value for s in LIVE_STATUSES])
    counts = session.execute(
        select(func.count(), func.coalesce(func.sum(case((live, 1), else_=0)), 0)).where(
            Recurring.customer_id == customer_id, Recurring.kind == kind.value
        )
    ).one()
    all_count, active_count = int(counts[0]), int(counts[1])
    shown = active_count if which == "active" else all_count
    page_count = _page_count(shown, page_size)
    page = min(page, page_count - 1)
    query = select(Recurring).where(Recurring.customer_id == customer_id, Recurring.kind == kind.value)
    if which == "active":
        query = query.where(live)
    rows = session.scalars(
        query.order_by(case((live, 0), else_=1), Recurring.started_at.desc(), Recurring.id.desc())
        .offset(page * page_size)
        .limit(page_size)
    ).all()
    missed = _missed_counts(session, [r.id for r in rows])
    return RecurringList(
        filter=which,
        items=[_recurring_summary(r, missed.get(r.id, 0)) for r in rows],
        page=page,
        page_count=page_count,
        active_count=active_count,
        all_count=all_count,
    )


def _missed_counts(session: Session, recurring_ids: list[int]) -> dict[int, int]:
    if not recurring_ids:
        return {}
    return dict(
        session.execute(
            select(Payment.recurring_id, func.count())
            .where(Payment.recurring_id.in_(recurring_ids), Payment.status == PaymentStatus.FAILED.value)
            .group_by(Payment.recurring_id)
        ).all()
    )


def _recurring_summary(r: Recurring, missed_payments: int) -> RecurringSummary:
    return RecurringSummary(
        id=r.id,
        kind=r.kind,  # type: ignore[arg-type]
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
        missed_payments=missed_payments if r.status not in _ENDED else 0,
        installments_total=r.installments_total,
        installments_paid=r.installments_paid,
    )


def _order_page(session: Session, customer_id: int, total: int, page: int, page_size: int) -> OrderPage:
    page_count = _page_count(total, page_size)
    page = min(page, page_count - 1)
    orders = session.scalars(
        select(Order)
        .where(Order.customer_id == customer_id)
        .order_by(Order.created_at.desc(), Order.id.desc())
        .offset(page * page_size)
        .limit(page_size)
    ).all()
    descriptions = _descriptions(session, [o.id for o in orders])
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
                description=descriptions.get(o.id, ""),
            )
            for o in orders
        ],
        page=page,
        page_count=page_count,
        total=total,
    )


def _descriptions(session: Session, order_ids: Iterable[int]) -> dict[int, str]:
    lines: dict[int, list[str]] = defaultdict(list)
    ids = list(order_ids)
    if ids:
        for order_id, description in session.execute(
            select(OrderLine.order_id, OrderLine.description)
            .where(OrderLine.order_id.in_(ids))
            .order_by(OrderLine.order_id, OrderLine.position)
        ):
            lines[order_id].append(description)
    return {
        order_id: items[0] + (f" + {len(items) - 1} more" if len(items) > 1 else "")
        for order_id, items in lines.items()
    }


def recurring_record(
    session: Session, recurring_id: int, back: CardState | None, *, payments_shown: int
) -> RecurringRecord:
    recurring = session.get(Recurring, recurring_id)
    if recurring is None:
        raise RecordNotFound("subscription or payment plan", recurring_id)
    customer = session.get(Customer, recurring.customer_id)
    assert customer is not None  # a foreign key guarantees it
    if back is None or back.customer_id != customer.id:
        back = CardState(customer.id)
    payment_count = session.scalar(
        select(func.count()).select_from(Payment).where(Payment.recurring_id == recurring.id)
    )
    rows = session.execute(
        select(Payment, Order.number)
        .outerjoin(Order, Order.id == Payment.order_id)
        .where(Payment.recurring_id == recurring.id)
        .order_by(Payment.due_at.desc(), Payment.id.desc())
        .limit(payments_shown)
    ).all()
    paid = session.execute(
        select(Payment.currency, func.sum(Payment.amount))
        .where(Payment.recurring_id == recurring.id, Payment.status == PaymentStatus.PAID.value)
        .group_by(Payment.currency)
    ).all()
    missed = _missed_counts(session, [recurring.id]).get(recurring.id, 0)
    refundable = session.scalar(
        select(func.count())
        .select_from(Order)
        .where(
            Order.recurring_id == recurring.id,
            Order.amount_refunded + Order.amount_refund_pending < Order.total,
            Order.stripe_payment_intent_id.is_not(None),
        )
    )
    return RecurringRecord(
        back=back,
        customer_name=shown_name(customer.name, customer.email),
        summary=_recurring_summary(recurring, missed),
        current_period_end=recurring.current_period_end,
        stripe_subscription_id=recurring.stripe_subscription_id,
        payments=[
            PaymentLine(
                due_at=p.due_at,
                amount=Money(p.amount, p.currency),
                status=p.status,
                failure_reason=p.failure_reason,
                order_id=p.order_id,
                order_number=number,
            )
            for p, number in rows
        ],
        payment_count=payment_count or 0,
        paid_total=[Money(int(total), currency) for currency, total in paid],
        refundable_payments=refundable or 0,
        fingerprint=recurring_fingerprint(recurring, last_change(session, "recurring", recurring.id)),
        awaiting=awaiting_stripe(session, "recurring", recurring.id),
    )


def order_record(session: Session, order_id: int, back: CardState | None) -> OrderRecord:
    order = session.get(Order, order_id)
    if order is None:
        raise RecordNotFound("order", order_id)
    customer = session.get(Customer, order.customer_id)
    assert customer is not None  # a foreign key guarantees it
    if back is None or back.customer_id != customer.id:
        back = CardState(customer.id)
    lines = session.scalars(
        select(OrderLine).where(OrderLine.order_id == order.id).order_by(OrderLine.position)
    ).all()
    refunds = session.scalars(
        select(Refund).where(Refund.order_id == order.id).order_by(Refund.created_at, Refund.id)
    ).all()
    recurring = session.get(Recurring, order.recurring_id) if order.recurring_id else None
    billing = BillingAddress(
        order.billing_name,
        order.billing_line1,
        order.billing_line2,
        order.billing_city,
        order.billing_state,
        order.billing_postal_code,
        order.billing_country,
    )
    return OrderRecord(
        back=back,
        customer_name=shown_name(customer.name, customer.email),
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
                Money(line.amount, order.currency),
            )
            for line in lines
        ],
        total=Money(order.total, order.currency),
        refunded=Money(order.amount_refunded, order.currency),
        card=_card(order.card_brand, order.card_last4),
        billing=billing if billing.lines() else None,
        refunds=[
            RefundLine(Money(r.amount, r.currency), r.reason, r.note, r.requested_by, r.created_at)
            for r in refunds
        ],
        recurring=RecurringLink(recurring.id, recurring.kind, recurring.product) if recurring else None,  # type: ignore[arg-type]
        stripe_payment=order.stripe_payment_intent_id is not None,
        refund_pending=order.amount_refund_pending,
        awaiting=awaiting_stripe(session, "order", order.id) if order.amount_refund_pending else [],
    )


class Records(Shared):
    """The records as the listeners read them, each in a short read-only unit of work."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def find(
        self, text: str, *, recurring_page_size: int, orders_page_size: int
    ) -> tuple[SearchResult, CustomerCard | None]:
        """The customers `text` finds, and the record of the one when it finds exactly one."""
        with self.db.session() as session:
            result = find_customers(session, text)
            if len(result.matches) != 1 or result.capped:
                return result, None
            state = CardState(result.matches[0].customer_id)
            card = customer_card(
                session, state, recurring_page_size=recurring_page_size, orders_page_size=orders_page_size
            )
            return result, card

    def order_numbered(self, text: str) -> OrderRecord | None:
        """The record of the order `text` names by its number (`100234` or `#100234`), if there is one."""
        number = order_number(text)
        if number is None:
            return None
        with self.db.session() as session:
            order_id = session.scalar(select(Order.id).where(Order.number == number))
            return None if order_id is None else order_record(session, order_id, None)

    def customer_card(
        self, state: CardState, *, recurring_page_size: int, orders_page_size: int
    ) -> CustomerCard:
        with self.db.session() as session:
            return customer_card(
                session, state, recurring_page_size=recurring_page_size, orders_page_size=orders_page_size
            )

    def recurring_record(
        self, recurring_id: int, back: CardState | None, *, payments_shown: int
    ) -> RecurringRecord:
        with self.db.session() as session:
            return recurring_record(session, recurring_id, back, payments_shown=payments_shown)

    def order_record(self, order_id: int, back: CardState | None) -> OrderRecord:
        with self.db.session() as session:
            return order_record(session, order_id, back)
