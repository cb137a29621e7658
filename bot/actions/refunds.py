"""Refunds: of an order, or of one payment of a subscription or payment plan; in full or in part, with a reason and
a note; never more than is left, counting refunds still awaiting Stripe's answer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot import order_book
from bot.actions.family import Family
from bot.actions.ledger import Attempt, Intent, Made
from bot.actions.outcomes import Done, Invalid, Pending, Problems
from bot.actions.stripe_access import StripeSide
from bot.models import Customer, Order
from bot.money import InvalidAmount, Money, parse_amount
from bot.naming import shown_name
from bot.records import RecordNotFound
from bot.stripe_gateway import ACTION_KEY, StripeGateway, StripeRejected
from bot.viewmodels import REFUND_NOTE_LENGTH, RefundQuote, RefundRequest

ACTION = "refund"
REASONS = ("requested_by_customer", "duplicate", "fraudulent")  # Stripe's
OTHER = "other"  # the form's choice for none of Stripe's reasons
MOST_PAYMENTS = 100  # payments of one subscription or plan offered in one refund form


class Refunds(Family):
    # The form -------------------------------------------------------------------------------------------------

    def order_form(self, actor: str, order_id: int) -> RefundQuote:
        """What the refund form of one order shows; Invalid when nothing is left to refund there."""
        self.permission.require(actor, ACTION, "order", order_id)
        quote = self.quote(order_id)
        if quote.refundable.amount <= 0:
            awaiting = f" ({quote.awaiting.format()} awaits Stripe's answer)" if quote.awaiting.amount else ""
            raise Invalid(f"Nothing is left to refund on order #{quote.order_number}{awaiting}.")
        return quote

    def payments_form(self, actor: str, recurring_id: int) -> list[RefundQuote]:
        """The paid payments of a subscription or plan that can still be refunded, newest first."""
        self.permission.require(actor, ACTION, "recurring", recurring_id)
        with self.db.session() as session:
            orders = session.scalars(
                select(Order)
                .where(
                    Order.recurring_id == recurring_id,
                    Order.amount_refunded + Order.amount_refund_pending < Order.total,
                    Order.stripe_payment_intent_id.is_not(None),
                )
                .order_by(Order.created_at.desc(), Order.id.desc())
                .limit(MOST_PAYMENTS)
            ).all()
            quotes = [_quote(session, order) for order in orders]
        if not quotes:
            raise Invalid("No payment of this is left to refund.")
        return quotes

    def quote(self, order_id: int) -> RefundQuote:
        with self.db.session() as session:
            return _quote(session, _order(session, order_id))

    def check(
        self,
        order_id: int | None,
        amount_text: str,
        reason: str | None,
        note: str | None,
        *,
        offered: list[int],
    ) -> tuple[RefundQuote, RefundRequest]:
        """A filled-in refund form, checked: the order's quote and the request to confirm, or Invalid naming the
        fields at fault. `offered` lists the orders the form offered; an empty amount means all that is
        refundable; reason "other" (or none) means no reason for Stripe."""
        if order_id is None:
            raise Invalid.of({"order": "Choose the payment to refund."})
        if order_id not in offered:
            raise Invalid.of({"order": "Choose one of the payments listed."})
        quote = self.quote(order_id)
        reason = None if reason in (None, OTHER) else reason
        problems: Problems = {}
        amount = quote.refundable.amount
        if amount_text.strip():
            try:
                amount = parse_amount(amount_text, quote.paid.currency)
            except InvalidAmount as invalid:
                problems["amount"] = str(invalid)
        problems = problems or refund_problems(quote, amount, reason, note)
        if problems:
            raise Invalid.of(problems)
        return quote, RefundRequest(
            order_id, Money(amount, quote.paid.currency), reason, note or None, quote.seen
        )

    # Refunding ----------------------------------------------------------------------------------------------

    def refund(self, actor: str, request: RefundRequest) -> Done | Pending:
        self.permission.require(actor, ACTION, "order", request.order_id)
        self.stripe.require(actor, ACTION, "order", request.order_id, request.amount)
        with self.db.session() as session:
            order = _order(session, request.order_id)
            quote = _quote(session, order)
            payment_intent = order.stripe_payment_intent_id
        amount, money = request.amount.amount, request.amount
        problems = refund_problems(quote, amount, request.reason, request.note, seen=request.seen)
        if payment_intent is None:
            problems = {"amount": "This order has no Stripe payment to refund; refund it where it was paid."}
        what = f"{money.format()} of order #{quote.order_number} ({quote.customer_name})"
        intent = Intent(
            actor=actor,
            action=ACTION,
            target=("order", request.order_id),
            identity={
                "amount": amount,
                "currency": money.currency,
                "reason": request.reason,
                "note": request.note,
                "seen": list(request.seen),
            },
            asked=f"refund {what}",
            done=f"refunded {what}",
            customer_id=quote.customer_id,
            record=("order", request.order_id),
            request={
                "payment_intent": payment_intent,
                "order_number": quote.order_number,
                "amount": amount,
                "reason": request.reason,
                "note": request.note,
            },
            money=money,
            reserved=amount,
            reserve=lambda session: _reserve(session, request.order_id, amount, request.seen),
        )
        return self.ledger.perform(intent, problems)


def refund_problems(
    quote: RefundQuote,
    amount: int,
    reason: str | None,
    note: str | None,
    *,
    seen: tuple[int, int] | None = None,
) -> Problems:
    """Field → what is wrong, for a refund of `amount` of the order `quote` describes; empty when it may go."""
    if seen is not None and seen != quote.seen:
        awaiting = f", and {quote.awaiting.format()} awaits Stripe's answer" if quote.awaiting.amount else ""
        return {
            "amount": f"This order changed since you opened this form: {quote.refunded.format()} has been "
            f"refunded so far{awaiting}. Close the form and open it again."
        }
    problems: Problems = {}
    if reason is not None and reason not in REASONS:
        problems["reason"] = "Choose one of the reasons offered."
    if note is not None and len(note) > REFUND_NOTE_LENGTH:
        problems["note"] = f"Keep the note to {REFUND_NOTE_LENGTH} characters."
    if amount <= 0:
        problems["amount"] = "Enter an amount above zero."
    elif amount > quote.refundable.amount:
        awaiting = f" ({quote.awaiting.format()} awaits Stripe's answer)" if quote.awaiting.amount else ""
        problems["amount"] = (
            f"At most {quote.refundable.format()} can be refunded on order #{quote.order_number}{awaiting}."
        )
    return problems


def _reserve(session: Session, order_id: int, amount: int, seen: tuple[int, int]) -> None:
    """Set the refund's amount aside on its order, if the order is as the person saw it and it still fits."""
    refunded, awaiting = seen
    reserved = session.execute(
        update(Order)
        .where(
            Order.id == order_id,
            Order.amount_refunded == refunded,
            Order.amount_refund_pending == awaiting,
            Order.amount_refunded + Order.amount_refund_pending + amount <= Order.total,
        )
        .values(amount_refund_pending=Order.amount_refund_pending + amount)
    )
    if reserved.rowcount != 1:
        quote = _quote(session, _order(session, order_id, fresh=True))
        changed = refund_problems(quote, amount, None, None, seen=seen)
        raise Invalid.of(changed or refund_problems(quote, amount, None, None))


@dataclass(frozen=True)
class RefundEffect(StripeSide):
    """A refund in Stripe, and in our records."""

    resend_first: ClassVar[bool] = True

    key: str  # the attempt's, kept in the refund's metadata so a later look finds it
    actor: str
    order_id: int
    request: Mapping[str, Any]

    @classmethod
    def of(cls, gateway: StripeGateway | None, attempt: Attempt) -> RefundEffect:
        return cls(gateway, attempt.key, attempt.actor, attempt.target[1], attempt.request)

    def call(self, idempotency_key: str) -> Made:
        refund = self.stripe.refund(
            self.request["payment_intent"],
            self.request["amount"],
            reason=self.request["reason"],
            metadata={
                "order_number": self.request["order_number"],
                "requested_by": self.actor,
                ACTION_KEY: self.key,
            },
            idempotency_key=idempotency_key,
        )
        return Made(refund.id, refund.amount, refund)

    def find(self) -> Made | None:
        try:
            refund = self.stripe.find_refund(self.request["payment_intent"], self.key)
        except StripeRejected as rejected:
            if rejected.code == "resource_missing":
                return None  # the payment is gone from Stripe: no refund of it can exist
            raise
        return Made(refund.id, refund.amount, refund) if refund else None

    def made_from(self, obj: Mapping[str, Any]) -> Made:
        return Made(obj["id"], int(obj["amount"]), obj)

    def record(self, session: Session, made: Made, now: datetime) -> None:
        order = _order(session, self.order_id)
        order_book.add_refund(
            session,
            order,
            amount=made.amount if made.amount is not None else self.request["amount"],
            stripe_refund_id=made.stripe_id or "",
            created_at=now,
            reason=self.request["reason"],
            note=self.request["note"],
            requested_by=self.actor,
        )


def _order(session: Session, order_id: int, *, fresh: bool = False) -> Order:
    order = session.get(Order, order_id, populate_existing=fresh)
    if order is None:
        raise RecordNotFound("order", order_id)
    return order


def _quote(session: Session, order: Order) -> RefundQuote:
    customer = session.get(Customer, order.customer_id)
    assert customer is not None  # a foreign key guarantees it
    refundable = order.total - order.amount_refunded - order.amount_refund_pending
    card = f"{(order.card_brand or 'card').title()} •••• {order.card_last4}" if order.card_last4 else None
    return RefundQuote(
        order_id=order.id,
        order_number=order.number,
        customer_id=customer.id,
        customer_name=shown_name(customer.name, customer.email),
        paid=Money(order.total, order.currency),
        refunded=Money(order.amount_refunded, order.currency),
        awaiting=Money(order.amount_refund_pending, order.currency),
        refundable=Money(max(0, refundable), order.currency),
        card=card,
    )
