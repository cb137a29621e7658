"""Refunds: of one payment of an order (a checkout's one payment, a subscription's renewal, a plan's instalment), or
of every payment of an order at once; in full or in part, with a reason and a note; never more than is left of a
payment, counting refunds still awaiting Stripe's answer."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bot import order_book
from bot.actions.family import Family
from bot.actions.ledger import Attempt, Intent, Made
from bot.actions.outcomes import Done, Failed, Invalid, NotAllowed, Pending, Problems
from bot.actions.stripe_access import StripeSide
from bot.faults import DatabaseUnavailable
from bot.models import Customer, Order, Payment
from bot.money import InvalidAmount, Money, parse_amount
from bot.naming import shown_name
from bot.records import RecordNotFound
from bot.stripe_gateway import ACTION_KEY, StripeGateway, StripeRejected
from bot.viewmodels import (
    REFUND_NOTE_LENGTH,
    RefundQuote,
    RefundRequest,
    WholeOrderRefund,
    payment_label,
)

logger = logging.getLogger(__name__)

ACTION = "refund"
REASONS = ("requested_by_customer", "duplicate", "fraudulent")  # Stripe's
OTHER = "other"  # the form's choice for none of Stripe's reasons
MOST_PAYMENTS = 100  # payments of one subscription or plan offered in one refund form
# Payments one Refund whole order refunds at once, newest first: the confirmation carries each one's state in the
# modal's memory, which Slack keeps to 3,000 characters, beside the note. An order with more is refunded in turns.
WHOLE_ORDER_MOST = 80


class Refunds(Family):
    # The forms ------------------------------------------------------------------------------------------------

    def order_form(self, actor: str, order_id: int) -> list[RefundQuote]:
        """The payments of an order that can still be refunded, newest first; Invalid when none can."""
        self.permission.require(actor, ACTION, "order", order_id)
        with self.db.session() as session:
            order = _order(session, order_id)
            quotes = _quotes(session, Payment.order_id == order_id)
        if not quotes:
            raise Invalid(_nothing_left(order.number))
        return quotes

    def payments_form(self, actor: str, recurring_id: int) -> list[RefundQuote]:
        """The paid payments of a subscription or plan that can still be refunded, newest first."""
        self.permission.require(actor, ACTION, "recurring", recurring_id)
        with self.db.session() as session:
            quotes = _quotes(session, Payment.recurring_id == recurring_id)
        if not quotes:
            raise Invalid("No payment of this is left to refund.")
        return quotes

    def whole_order_form(self, actor: str, order_id: int) -> WholeOrderRefund:
        """The payments of an order still refundable (the newest WHOLE_ORDER_MOST), for one confirmation; Invalid
        when none is."""
        self.permission.require(actor, ACTION, "order", order_id)
        with self.db.session() as session:
            order = _order(session, order_id)
            quotes = _quotes(session, Payment.order_id == order_id, limit=WHOLE_ORDER_MOST + 1)
            customer = session.get(Customer, order.customer_id)
            assert customer is not None  # a foreign key guarantees it
            more = 0
            if len(quotes) > WHOLE_ORDER_MOST:
                quotes = quotes[:WHOLE_ORDER_MOST]
                more = session.scalar(_count_refundable(order_id)) - WHOLE_ORDER_MOST
        if not quotes:
            raise Invalid(_nothing_left(order.number))
        return WholeOrderRefund(
            order.id, order.number, customer.id, shown_name(customer.name, customer.email), quotes, more
        )

    def quote(self, payment_id: int) -> RefundQuote:
        with self.db.session() as session:
            return _quote(session, _payment(session, payment_id))

    def check(
        self,
        payment_id: int | None,
        amount_text: str,
        reason: str | None,
        note: str | None,
        *,
        offered: list[int],
    ) -> tuple[RefundQuote, RefundRequest]:
        """A filled-in refund form, checked: the payment's quote and the request to confirm, or Invalid naming the
        fields at fault. `offered` lists the payments the form offered; an empty amount means all that is
        refundable; reason "other" (or none) means no reason for Stripe."""
        if payment_id is None:
            raise Invalid.of({"order": "Choose the payment to refund."})
        if payment_id not in offered:
            raise Invalid.of({"order": "Choose one of the payments listed."})
        quote = self.quote(payment_id)
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
            payment_id, Money(amount, quote.paid.currency), reason, note or None, quote.seen
        )

    def check_whole_order(
        self, actor: str, order_id: int, reason: str | None, note: str | None
    ) -> WholeOrderRefund:
        """A filled-in Refund whole order form, checked against the order as it is now."""
        whole = self.whole_order_form(actor, order_id)
        reason = None if reason in (None, OTHER) else reason
        problems = refund_problems(whole.payments[0], whole.payments[0].refundable.amount, reason, note)
        if problems:
            raise Invalid.of(problems)
        return whole

    # Refunding ----------------------------------------------------------------------------------------------

    def refund(self, actor: str, request: RefundRequest) -> Done | Pending:
        """Refund one payment, once."""
        self.permission.require(actor, ACTION, "payment", request.payment_id)
        self.stripe.require(actor, ACTION, "payment", request.payment_id, request.amount)
        with self.db.session() as session:
            payment = _payment(session, request.payment_id)
            quote = _quote(session, payment)
            payment_intent = payment.stripe_payment_intent_id
        amount, money = request.amount.amount, request.amount
        problems = refund_problems(quote, amount, request.reason, request.note, seen=request.seen)
        if payment_intent is None:
            problems = {"amount": "This payment was not made through Stripe; refund it where it was paid."}
        what = f"{money.format()} of {quote.what} ({quote.customer_name})"
        intent = Intent(
            actor=actor,
            action=ACTION,
            target=("payment", request.payment_id),
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
            record=("order", quote.order_id),
            request={
                "payment_intent": payment_intent,
                "order_number": quote.order_number,
                "amount": amount,
                "reason": request.reason,
                "note": request.note,
            },
            money=money,
            reserved=amount,
            reserve=lambda session: _reserve(session, request.payment_id, amount, request.seen),
            note=request.note,
        )
        return self.ledger.perform(intent, problems)

    def refund_whole_order(
        self,
        actor: str,
        order_id: int,
        confirmed: list[RefundRequest],
    ) -> Done | Pending:
        """Refund every payment the confirmation stated, each once through the ledger (so a double click or a
        retry refunds none twice), and say exactly how each went. A payment that fails does not stop the others:
        each is its own refund in Stripe."""
        self.permission.require(actor, ACTION, "order", order_id)
        with self.db.session() as session:
            order = _order(session, order_id)
            customer = session.get(Customer, order.customer_id)
            assert customer is not None  # a foreign key guarantees it
            what = f"order #{order.number} ({shown_name(customer.name, customer.email)})"
            customer_id = order.customer_id
            labels = {
                payment.id: payment_label(payment.kind, payment.paid_at or payment.due_at)
                for payment in session.scalars(
                    select(Payment).where(Payment.id.in_([r.payment_id for r in confirmed]))
                )
            }
        done: list[tuple[RefundRequest, Done]] = []
        pending: list[tuple[RefundRequest, Pending]] = []
        refused: list[tuple[RefundRequest, str]] = []
        for request in confirmed:
            try:
                outcome = self.refund(actor, request)
            except (Invalid, Failed) as error:
                refused.append((request, error.message))
                continue
            except NotAllowed:
                raise
            except Exception as error:  # an outage or a bug: the others still get their own answer
                logger.exception("refund of payment %s in a whole-order refund", request.payment_id)
                refused.append((request, _unexpected(error)))
                continue
            if isinstance(outcome, Pending):
                pending.append((request, outcome))
            else:
                done.append((request, outcome))
        return whole_order_outcome(what, customer_id, order_id, labels, done, pending, refused)


def refund_problems(
    quote: RefundQuote,
    amount: int,
    reason: str | None,
    note: str | None,
    *,
    seen: tuple[int, int] | None = None,
) -> Problems:
    """Field → what is wrong, for a refund of `amount` of the payment `quote` describes; empty when it may go."""
    if seen is not None and seen != quote.seen:
        awaiting = f", and {quote.awaiting.format()} awaits Stripe's answer" if quote.awaiting.amount else ""
        changed = "This order" if quote.payment_count <= 1 else "This payment"
        return {
            "amount": f"{changed} changed since you opened this form: {quote.refunded.format()} has been "
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
        problems["amount"] = f"At most {quote.refundable.format()} can be refunded on {quote.what}{awaiting}."
    return problems


def _reserve(session: Session, payment_id: int, amount: int, seen: tuple[int, int]) -> None:
    """Set the refund's amount aside on its payment, if the payment is as the person saw it and it still fits."""
    refunded, awaiting = seen
    reserved = session.execute(
        update(Payment)
        .where(
            Payment.id == payment_id,
            Payment.amount_refunded == refunded,
            Payment.amount_refund_pending == awaiting,
            Payment.amount_refunded + Payment.amount_refund_pending + amount <= Payment.amount,
        )
        .values(amount_refund_pending=Payment.amount_refund_pending + amount)
    )
    if reserved.rowcount != 1:
        quote = _quote(session, _payment(session, payment_id, fresh=True))
        changed = refund_problems(quote, amount, None, None, seen=seen)
        raise Invalid.of(changed or refund_problems(quote, amount, None, None))


@dataclass(frozen=True)
class RefundEffect(StripeSide):
    """A refund of one payment in Stripe, and in our records."""

    resend_first: ClassVar[bool] = True

    key: str  # the attempt's, kept in the refund's metadata so a later look finds it
    actor: str
    payment_id: int
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
        order_book.add_refund(
            session,
            _payment(session, self.payment_id),
            amount=made.amount if made.amount is not None else self.request["amount"],
            stripe_refund_id=made.stripe_id or "",
            created_at=now,
            reason=self.request["reason"],
            note=self.request["note"],
            requested_by=self.actor,
        )


def whole_order_outcome(
    what: str,
    customer_id: int,
    order_id: int,
    labels: dict[int, str],
    done: list[tuple[RefundRequest, Done]],
    pending: list[tuple[RefundRequest, Pending]],
    refused: list[tuple[RefundRequest, str]],
) -> Done | Pending:
    """One answer for a whole-order refund of `what` ("order #100021 (Jane Doe)") that says exactly which payments
    were refunded, which await Stripe's answer and which were not refunded, and why. Nothing refunded at all is a
    failure; a part left undone is the answer's `left`, which asking again (the same request) completes: what was
    done is answered as done, and only the rest is sent."""
    record = ("order", order_id)
    count = len(done) + len(pending) + len(refused)

    def named(request: RefundRequest) -> str:
        label = labels.get(request.payment_id, "payment")
        return f"the {label[:1].lower()}{label[1:]} ({request.amount.format()})"

    not_done = "; ".join(f"{named(request)} — {why.rstrip('.')}" for request, why in refused)
    if not done and not pending:
        raise Failed(f"Nothing was refunded on {what}. Not refunded: {not_done}.")
    summary = (
        f"refunded {_sum(r.amount for r, _ in done).format()} of {what}" if done else f"refund of {what}"
    )
    if len(done) == count > 1:
        summary += f" in {count} payments"
    elif count > 1:
        summary += f" ({_payments(len(done))} of {count})" if done else f" ({count} payments)"
    if done and all(outcome.already for _, outcome in done) and not pending and not refused:
        return Done(summary + ", already done before", customer_id, record, already=True)
    left = f"Not refunded: {not_done}. Try again refunds only those." if refused else None
    if pending:
        whys = list(dict.fromkeys(outcome.why for _, outcome in pending))
        waiting = ", ".join(named(request) for request, _ in pending)
        return Pending(
            summary, customer_id, record, f"Awaiting Stripe's answer: {waiting}. " + " ".join(whys), left=left
        )
    return Done(summary, customer_id, record, left=left)


def _payments(count: int) -> str:
    return "1 payment" if count == 1 else f"{count} payments"


_REFUNDABLE = order_book.REFUNDABLE


def _count_refundable(order_id: int):
    return select(func.count()).select_from(Payment).where(Payment.order_id == order_id, *_REFUNDABLE)


def _sum(amounts) -> Money:
    amounts = list(amounts)
    return Money(sum(m.amount for m in amounts), amounts[0].currency)


def _unexpected(error: Exception) -> str:
    if isinstance(error, DatabaseUnavailable):
        return "our database did not answer, so Stripe was not asked"
    return "an unexpected error stopped it; open the order to see its state"


def _nothing_left(number: str) -> str:
    return f"Nothing is left to refund on order #{number}."


def _order(session: Session, order_id: int) -> Order:
    order = session.get(Order, order_id)
    if order is None:
        raise RecordNotFound("order", order_id)
    return order


def _payment(session: Session, payment_id: int, *, fresh: bool = False) -> Payment:
    payment = session.get(Payment, payment_id, populate_existing=fresh)
    if payment is None:
        raise RecordNotFound("payment", payment_id)
    return payment


def _quotes(session: Session, which, *, limit: int | None = MOST_PAYMENTS) -> list[RefundQuote]:
    """Quotes of the payments `which` selects that have something left to refund through Stripe, newest first."""
    statement = select(Payment).where(which, *_REFUNDABLE).order_by(Payment.due_at.desc(), Payment.id.desc())
    if limit is not None:
        statement = statement.limit(limit)
    return [_quote(session, payment) for payment in session.scalars(statement).all()]


def _quote(session: Session, payment: Payment) -> RefundQuote:
    order = _order(session, payment.order_id)
    customer = session.get(Customer, order.customer_id)
    assert customer is not None  # a foreign key guarantees it
    payment_count = session.scalar(
        select(func.count()).select_from(Payment).where(Payment.order_id == order.id)
    )
    refundable = payment.amount - payment.amount_refunded - payment.amount_refund_pending
    card = (
        f"{(payment.card_brand or 'card').title()} •••• {payment.card_last4}" if payment.card_last4 else None
    )
    return RefundQuote(
        payment_id=payment.id,
        payment=payment_label(payment.kind, payment.paid_at or payment.due_at),
        order_id=order.id,
        order_number=order.number,
        customer_id=customer.id,
        customer_name=shown_name(customer.name, customer.email),
        paid=Money(payment.amount, payment.currency),
        refunded=Money(payment.amount_refunded, payment.currency),
        awaiting=Money(payment.amount_refund_pending, payment.currency),
        refundable=Money(max(0, refundable), payment.currency),
        card=card,
        payment_count=payment_count or 1,
    )
