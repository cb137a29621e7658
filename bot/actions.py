"""Acting on records: refunds, cancelling, pausing and resuming payments, moving a next bill date, new orders
and email changes. Slack, the shell and the scheduler all act through here.

Every action
- is allowed only to payment admins (anyone else is refused, and the refusal is audited);
- happens at most once per key: the key is derived from what the person saw when they asked (the order's refunds
  so far, the subscription's state), so a double click, a retried request or two people asking at once land on one
  `action_attempts` row, and Stripe gets an idempotency key tied to that row;
- changes our records only after Stripe said yes; when Stripe says no, nothing is half-written;
- is written to the audit trail, whatever its outcome.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.crm import Crm, CrmError
from bot.db import Database
from bot.models import (
    ActionAttempt,
    AttemptStatus,
    AuditEvent,
    Customer,
    Order,
    OrderLine,
    OrderSource,
    OrderStatus,
    Product,
    Recurring,
    RecurringStatus,
    Refund,
    order_number,
)
from bot.money import Money
from bot.records import RecordNotFound, recurring_fingerprint, shown_name
from bot.search import index_customer
from bot.stripe_gateway import (
    ACTION_KEY,
    ChargeResult,
    RefundResult,
    StripeFailure,
    StripeGateway,
    SubscriptionResult,
)
from bot.viewmodels import RefundQuote

REFUND_REASONS = ("requested_by_customer", "duplicate", "fraudulent")
# Stripe's largest charge is eight digits in the smallest unit for most currencies.
MAX_AMOUNT = 99_999_999
MAX_QUANTITY = 1000
# A pending attempt this old was abandoned (its process died mid-request); retrying it with its key is safe.
STALE_ATTEMPT = timedelta(minutes=2)
# A refund or charge whose answer never reached us is settled from Stripe's side once this long has passed since
# its last try: far longer than any request can still be on its way (stripe-python gives up within minutes).
SETTLE_AFTER = timedelta(minutes=15)
SETTLED_ACTIONS = ("refund", "new_order")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")


class NotAllowed(Exception):
    """The person may not do this."""

    def __init__(self, admins: frozenset[str]) -> None:
        super().__init__("not a payment admin")
        self.admins = admins


class Invalid(Exception):
    """What was asked cannot be done as asked; nothing changed. `field` names the form input at fault."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class Failed(Exception):
    """Stripe did not do it; our records are unchanged. The message says what happened and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Done:
    summary: str  # one sentence in plain words: what happened
    customer_id: int
    record: tuple[str, int]  # the record to show afterwards: ("order" | "recurring" | "customer", id)
    already: bool = False  # an identical earlier request had already done it


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    action: str
    target_type: str
    target_id: int | None
    outcome: str  # refused, invalid, succeeded, failed, unknown, already_done
    summary: str
    amount: Money | None = None
    stripe_id: str | None = None


def _now() -> datetime:
    return datetime.now(UTC)


class Actions:
    def __init__(
        self,
        db: Database,
        gateway: StripeGateway | None,
        admins: frozenset[str],
        *,
        on_audit: Callable[[AuditEntry], None] | None = None,
        clock: Callable[[], datetime] = _now,
        crms: Sequence[Crm] = (),
    ) -> None:
        self.crms = list(crms)
        self.db = db
        self.gateway = gateway
        self.admins = admins
        self.on_audit = on_audit
        self.clock = clock

    # Who may act ---------------------------------------------------------------------------------------------

    def require_admin(self, actor: str, action: str, target_type: str, target_id: int | None) -> None:
        if actor not in self.admins:
            self.audit(AuditEntry(actor, action, target_type, target_id, "refused", "not a payment admin"))
            raise NotAllowed(self.admins)

    # Refunds -------------------------------------------------------------------------------------------------

    def refund_quote(self, order_id: int) -> RefundQuote:
        with self.db.session() as session:
            return _quote(session, _order(session, order_id))

    def refundable_orders(self, recurring_id: int, limit: int = 100) -> list[RefundQuote]:
        """The paid payments of a subscription or plan that can still be refunded, newest first."""
        with self.db.session() as session:
            orders = session.scalars(
                select(Order)
                .where(
                    Order.recurring_id == recurring_id,
                    Order.amount_refunded + Order.amount_refund_pending < Order.total,
                    Order.stripe_payment_intent_id.is_not(None),
                )
                .order_by(Order.created_at.desc(), Order.id.desc())
                .limit(limit)
            ).all()
            return [_quote(session, order) for order in orders]

    def refund(
        self,
        actor: str,
        order_id: int,
        amount: int,
        *,
        reason: str | None,
        note: str | None,
        refunded_seen: int,
    ) -> Done:
        self.require_admin(actor, "refund", "order", order_id)
        with self.db.session() as session:
            order = _order(session, order_id)
            quote = _quote(session, order)
            payment_intent = order.stripe_payment_intent_id
        money = Money(amount, quote.paid.currency)
        key = f"refund:order:{order_id}:after:{refunded_seen}"
        summary = f"refunded {money.format()} of order #{quote.order_number} ({quote.customer_name})"
        earlier = self._already_done(
            actor, "refund", ("order", order_id), key, money, summary, quote.customer_id
        )
        if earlier:
            return earlier
        try:
            if reason is not None and reason not in REFUND_REASONS:
                raise Invalid("Choose one of the reasons offered.", "reason")
            if amount <= 0:
                raise Invalid("Enter an amount above zero.", "amount")
            if quote.refunded_seen != refunded_seen:
                raise Invalid(
                    f"This order changed since you opened this form: {quote.refunded.format()} has been refunded "
                    "so far. Close the form and open it again.",
                    "amount",
                )
            if payment_intent is None:
                raise Invalid(
                    "This order has no Stripe payment to refund; refund it where it was paid.", "amount"
                )
        except Invalid as invalid:
            self.audit(AuditEntry(actor, "refund", "order", order_id, "invalid", invalid.message, money))
            raise

        def reserve(session: Session) -> None:
            reserved = session.execute(
                update(Order)
                .where(
                    Order.id == order_id,
                    Order.amount_refunded + Order.amount_refund_pending + amount <= Order.total,
                )
                .values(amount_refund_pending=Order.amount_refund_pending + amount)
            )
            if reserved.rowcount != 1:
                raise Invalid(
                    f"That is more than can be refunded: at most {quote.refundable.format()} is left on this order.",
                    "amount",
                )

        def release(session: Session) -> None:
            _release_refund(session, order_id, amount)

        def call(stripe_key: str) -> tuple[RefundResult, str]:
            result = self._stripe().refund(
                payment_intent,  # type: ignore[arg-type]
                amount,
                reason=reason,
                metadata={"order_number": quote.order_number, "requested_by": actor, ACTION_KEY: key},
                idempotency_key=stripe_key,
            )
            return result, result.id

        def record(session: Session, refund: RefundResult) -> None:
            _record_refund(session, order_id, amount, refund.id, reason, note, actor, self.clock())

        return self._once(
            actor,
            "refund",
            ("order", order_id),
            key,
            money,
            summary,
            customer_id=quote.customer_id,
            reserve=reserve,
            release=release,
            call=call,
            record=record,
            find_earlier=lambda: _found(self._stripe().find_refund(payment_intent, key)),  # type: ignore[arg-type]
            request={"reason": reason, "note": note},
        )

    # Subscriptions and payment plans --------------------------------------------------------------------------

    def cancel(self, actor: str, recurring_id: int, *, at_period_end: bool, seen: str) -> Done:
        when = "at the end of the period" if at_period_end else "now"
        return self._change_recurring(
            actor,
            "cancel",
            recurring_id,
            seen,
            f"{'at-period-end' if at_period_end else 'now'}",
            lambda gateway, sub_id, key: gateway.cancel_subscription(
                sub_id, at_period_end=at_period_end, idempotency_key=key
            ),
            lambda name: f"canceled {name} {when}",
        )

    def pause_payments(
        self, actor: str, recurring_id: int, *, resumes_at: datetime | None, seen: str
    ) -> Done:
        if resumes_at is not None and resumes_at <= self.clock():
            self.audit(
                AuditEntry(actor, "pause_payments", "recurring", recurring_id, "invalid", "date in the past")
            )
            raise Invalid("Choose a date after today, or pause until you resume them.", "resumes_at")
        until = f"until {resumes_at:%b %-d, %Y}" if resumes_at else "until resumed"
        return self._change_recurring(
            actor,
            "pause_payments",
            recurring_id,
            seen,
            resumes_at.date().isoformat() if resumes_at else "until-resumed",
            lambda gateway, sub_id, key: gateway.pause_payments(
                sub_id, resumes_at=resumes_at, idempotency_key=key
            ),
            lambda name: f"paused payments of {name} {until}",
        )

    def resume_payments(self, actor: str, recurring_id: int, *, seen: str) -> Done:
        return self._change_recurring(
            actor,
            "resume_payments",
            recurring_id,
            seen,
            "resume",
            lambda gateway, sub_id, key: gateway.resume_payments(sub_id, idempotency_key=key),
            lambda name: f"resumed payments of {name}",
        )

    def move_next_bill_date(self, actor: str, recurring_id: int, *, to: datetime, seen: str) -> Done:
        if to <= self.clock():
            self.audit(
                AuditEntry(
                    actor, "move_next_bill_date", "recurring", recurring_id, "invalid", "date in the past"
                )
            )
            raise Invalid("Choose a date after today.", "next_bill_date")
        return self._change_recurring(
            actor,
            "move_next_bill_date",
            recurring_id,
            seen,
            to.date().isoformat(),
            lambda gateway, sub_id, key: gateway.move_next_bill_date(sub_id, to, idempotency_key=key),
            lambda name: f"moved the next bill date of {name} to {to:%b %-d, %Y}",
        )

    def _change_recurring(
        self,
        actor: str,
        action: str,
        recurring_id: int,
        seen: str,
        detail: str,
        call_stripe: Callable[[StripeGateway, str, str], SubscriptionResult],
        describe: Callable[[str], str],
    ) -> Done:
        self.require_admin(actor, action, "recurring", recurring_id)
        with self.db.session() as session:
            recurring = _recurring(session, recurring_id)
            customer = session.get(Customer, recurring.customer_id)
            assert customer is not None
            name = f"{recurring.product} ({shown_name(customer.name, customer.email)})"
            current = recurring_fingerprint(recurring)
            subscription_id = recurring.stripe_subscription_id
            ended = recurring.status in (RecurringStatus.CANCELED.value, RecurringStatus.COMPLETED.value)
            customer_id = customer.id
        key = f"{action}:recurring:{recurring_id}:{detail}:seen:{seen}"
        earlier = self._already_done(
            actor, action, ("recurring", recurring_id), key, None, describe(name), customer_id
        )
        if earlier:
            return earlier
        try:
            if current != seen:
                raise Invalid("This changed since you opened it. Close it and open the record again.")
            if ended:
                raise Invalid(f"{recurring.product} has already ended; there is nothing to change.")
            if subscription_id is None:
                raise Invalid(
                    f"{recurring.product} is not linked to a Stripe subscription, so it can't be changed here."
                )
        except Invalid as invalid:
            self.audit(AuditEntry(actor, action, "recurring", recurring_id, "invalid", invalid.message))
            raise

        def call(stripe_key: str) -> tuple[SubscriptionResult, str]:
            result = call_stripe(self._stripe(), subscription_id, stripe_key)  # type: ignore[arg-type]
            return result, result.id

        def record(session: Session, result: SubscriptionResult) -> None:
            row = session.get(Recurring, recurring_id, with_for_update=True)
            assert row is not None
            apply_subscription(row, result, now=self.clock())

        return self._once(
            actor,
            action,
            ("recurring", recurring_id),
            key,
            None,
            describe(name),
            customer_id=customer_id,
            call=call,
            record=record,
        )

    # New orders ---------------------------------------------------------------------------------------------

    def products(self, currency: str | None = None, limit: int = 100) -> list[tuple[int, str, Money]]:
        with self.db.session() as session:
            query = (
                select(Product)
                .where(Product.active.is_(True))
                .order_by(Product.name, Product.currency)
                .limit(limit)
            )
            if currency:
                query = query.where(Product.currency == currency)
            return [(p.id, p.name, Money(p.unit_amount, p.currency)) for p in session.scalars(query)]

    def new_order_context(self, customer_id: int) -> tuple[str, str, str | None, int]:
        """(customer name, default currency, card label or None, last order id) for the New order form."""
        with self.db.session() as session:
            customer = session.get(Customer, customer_id)
            if customer is None:
                raise RecordNotFound("customer", customer_id)
            usual = session.execute(
                select(Order.currency, func.count())
                .where(Order.customer_id == customer_id)
                .group_by(Order.currency)
                .order_by(func.count().desc(), Order.currency)
                .limit(1)
            ).first()
            last = session.scalar(select(func.max(Order.id)).where(Order.customer_id == customer_id)) or 0
            card = None
            if customer.default_payment_method_id and customer.stripe_customer_id and customer.card_last4:
                card = f"{(customer.card_brand or 'card').title()} •••• {customer.card_last4}"
            return shown_name(customer.name, customer.email), usual[0] if usual else "usd", card, last

    def new_order(
        self,
        actor: str,
        customer_id: int,
        *,
        description: str,
        unit_amount: int,
        currency: str,
        quantity: int,
        last_order_seen: int,
    ) -> Done:
        self.require_admin(actor, "new_order", "customer", customer_id)
        currency = currency.lower()
        total = unit_amount * quantity
        money = Money(total, currency)
        with self.db.session() as session:
            customer = session.get(Customer, customer_id)
            if customer is None:
                raise RecordNotFound("customer", customer_id)
            name = shown_name(customer.name, customer.email)
            stripe_customer, payment_method = customer.stripe_customer_id, customer.default_payment_method_id
        try:
            if not description.strip():
                raise Invalid("Say what is being sold: pick a product or describe it.", "description")
            if quantity < 1 or quantity > MAX_QUANTITY:
                raise Invalid(f"Enter a quantity from 1 to {MAX_QUANTITY}.", "quantity")
            if unit_amount <= 0:
                raise Invalid("Enter an amount above zero.", "amount")
            if total > MAX_AMOUNT:
                raise Invalid(
                    f"That is more than Stripe charges at once ({Money(MAX_AMOUNT, currency).format()}).",
                    "amount",
                )
            if not (stripe_customer and payment_method):
                raise Invalid(
                    f"{name} has no card on file, so there is nothing to charge. Send them a checkout link instead."
                )
        except Invalid as invalid:
            self.audit(
                AuditEntry(actor, "new_order", "customer", customer_id, "invalid", invalid.message, money)
            )
            raise
        fingerprint = hashlib.sha256(
            f"{description}|{unit_amount}|{quantity}|{currency}".encode()
        ).hexdigest()[:16]
        key = f"new_order:customer:{customer_id}:after:{last_order_seen}:{fingerprint}"

        def call(stripe_key: str) -> tuple[ChargeResult, str]:
            charge = self._stripe().charge_off_session(
                stripe_customer,  # type: ignore[arg-type]
                payment_method,  # type: ignore[arg-type]
                total,
                currency,
                metadata={
                    "description": description[:500],
                    "quantity": str(quantity),
                    "requested_by": actor,
                    ACTION_KEY: key,
                },
                idempotency_key=stripe_key,
            )
            return charge, charge.payment_intent_id

        def record(session: Session, charge: ChargeResult) -> None:
            _record_new_order(session, customer_id, charge, description, unit_amount, quantity, self.clock())

        return self._once(
            actor,
            "new_order",
            ("customer", customer_id),
            key,
            money,
            f"charged {money.format()} to {name}'s card for {quantity} × {description}",
            customer_id=customer_id,
            call=call,
            record=record,
            find_earlier=lambda: _found(self._stripe().find_charge(stripe_customer, key)),  # type: ignore[arg-type]
            request={"description": description, "unit_amount": unit_amount, "quantity": quantity},
        )

    # Email --------------------------------------------------------------------------------------------------

    def change_email(self, actor: str, customer_id: int, new_email: str) -> Done:
        self.require_admin(actor, "change_email", "customer", customer_id)
        new_email = new_email.strip()
        with self.db.session() as session:
            customer = session.get(Customer, customer_id)
            if customer is None:
                raise RecordNotFound("customer", customer_id)
            old_email, stripe_customer = customer.email, customer.stripe_customer_id
            name = shown_name(customer.name, customer.email)
        try:
            if not _EMAIL.match(new_email) or len(new_email) > 254:
                raise Invalid("Enter an email address like jane@example.com.", "email")
            if new_email == old_email:
                raise Invalid("That is already the email on file.", "email")
        except Invalid as invalid:
            self.audit(AuditEntry(actor, "change_email", "customer", customer_id, "invalid", invalid.message))
            raise
        digest = hashlib.sha256(new_email.encode()).hexdigest()[:16]

        def call(stripe_key: str) -> tuple[None, str | None]:
            if stripe_customer:
                self._stripe().update_email(stripe_customer, new_email, idempotency_key=stripe_key)
            return None, stripe_customer

        def record(session: Session, _result: None) -> None:
            customer = session.get(Customer, customer_id, with_for_update=True)
            assert customer is not None
            customer.email = new_email
            index_customer(session, customer)

        where = (
            "our records and Stripe" if stripe_customer else "our records (this customer is not in Stripe)"
        )
        where += self._crms_holding(old_email)
        return self._once(
            actor,
            "change_email",
            ("customer", customer_id),
            f"change_email:customer:{customer_id}:from:{hashlib.sha256(old_email.encode()).hexdigest()[:16]}:to:{digest}",
            None,
            f"changed {name}'s email from {old_email} to {new_email} in {where}",
            customer_id=customer_id,
            call=call,
            record=record,
        )

    # Exactly once ---------------------------------------------------------------------------------------------

    def _once(
        self,
        actor: str,
        action: str,
        target: tuple[str, int],
        key: str,
        money: Money | None,
        summary: str,
        *,
        customer_id: int,
        call: Callable[[str], tuple[object, str | None]],
        record: Callable[[Session, object], tuple[str, int] | None],
        reserve: Callable[[Session], None] | None = None,
        release: Callable[[Session], None] | None = None,
        find_earlier: Callable[[], tuple[object, str] | None] | None = None,
        request: dict | None = None,
    ) -> Done:
        """Claim the key, ask Stripe, then write the result; or tell what an earlier identical request did.

        Retrying a request whose outcome never reached us: money-moving actions first ask Stripe whether the
        earlier request went through (`find_earlier`), and record it if so. Otherwise the earlier request did
        nothing, and a fresh idempotency key is used, because Stripe would only replay the earlier error.
        `request` keeps what `settle_unanswered` needs to record the result if nobody retries."""
        target_type, target_id = target
        attempt_id, stripe_key, earlier = self._claim(actor, action, target, key, money, reserve, request)
        if earlier == AttemptStatus.SUCCEEDED:
            return self._done_before(actor, action, target, money, summary, customer_id)
        if earlier == AttemptStatus.PENDING and attempt_id is None:
            self.audit(
                AuditEntry(actor, action, target_type, target_id, "invalid", "already in progress", money)
            )
            raise Invalid(
                "Someone is doing exactly this right now. Open the record again in a moment to see it."
            )
        found = None
        try:
            if earlier == AttemptStatus.PENDING:
                found = find_earlier() if find_earlier else None
                if found is None:
                    stripe_key = self._fresh_key(attempt_id, stripe_key)  # type: ignore[arg-type]
            result, stripe_id = found or call(stripe_key)
        except StripeFailure as failure:
            self._finish_failed(attempt_id, failure, release)  # type: ignore[arg-type]
            outcome = "unknown" if failure.outcome_unknown else "failed"
            self.audit(
                AuditEntry(actor, action, target_type, target_id, outcome, failure.user_message, money)
            )
            raise Failed(failure.user_message) from failure
        with self.db.session() as session:
            finished = _finish(session, attempt_id, stripe_id, self.clock())  # type: ignore[arg-type]
            shown = (record(session, result) or target) if finished else target
        if not finished:  # settle_unanswered found it in Stripe and recorded it meanwhile
            return self._done_before(actor, action, target, money, summary, customer_id)
        self.audit(AuditEntry(actor, action, target_type, target_id, "succeeded", summary, money, stripe_id))
        return Done(summary, customer_id, shown)

    def _fresh_key(self, attempt_id: int, seen_key: str) -> str:
        """A new idempotency key for another try, unless the attempt changed since `seen_key` was read (settled
        by `settle_unanswered`, or taken over by another retry): the key is the attempt's version."""
        with self.db.session() as session:
            attempt = session.get(ActionAttempt, attempt_id)
            assert attempt is not None
            tries = int((attempt.details or {}).get("tries", 1)) + 1
            fresh = f"{seen_key.split('~')[0]}~{tries}"
            details = {**(attempt.details or {}), "tries": tries, "tried_at": self.clock().isoformat()}
            taken = session.execute(
                update(ActionAttempt)
                .where(
                    ActionAttempt.id == attempt_id,
                    ActionAttempt.status == AttemptStatus.PENDING.value,
                    ActionAttempt.stripe_idempotency_key == seen_key,
                )
                .values(stripe_idempotency_key=fresh, details=details)
            )
            if taken.rowcount != 1:
                raise Invalid(
                    "While you were trying again, the bot checked with Stripe and settled this request. "
                    "Open the record again to see what happened."
                )
            return fresh

    def _already_done(
        self,
        actor: str,
        action: str,
        target: tuple[str, int],
        key: str,
        money: Money | None,
        summary: str,
        customer_id: int,
    ) -> Done | None:
        """The answer to a repeat of a request that already succeeded (a double submit, a retry)."""
        with self.db.session() as session:
            earlier = session.scalar(select(ActionAttempt).where(ActionAttempt.key == key))
        if earlier is None or earlier.status != AttemptStatus.SUCCEEDED.value:
            return None
        if money is not None and earlier.amount != money.amount:
            return None  # not a repeat: a stale form asking for something else, which validation turns down
        self.require_admin(actor, action, *target)
        return self._done_before(actor, action, target, money, summary, customer_id)

    def _done_before(
        self,
        actor: str,
        action: str,
        target: tuple[str, int],
        money: Money | None,
        summary: str,
        customer_id: int,
    ) -> Done:
        self.audit(AuditEntry(actor, action, target[0], target[1], "already_done", summary, money))
        return Done(f"this was already done: {summary}", customer_id, target, already=True)

    def _claim(
        self,
        actor: str,
        action: str,
        target: tuple[str, int],
        key: str,
        money: Money | None,
        reserve: Callable[[Session], None] | None,
        request: dict | None = None,
        tries: int = 0,
    ) -> tuple[int | None, str, str | None]:
        """(attempt id to carry on, Stripe idempotency key, status of an earlier attempt with this key)."""
        try:
            with self.db.session() as session:
                attempt = ActionAttempt(
                    key=key,
                    stripe_idempotency_key=key,
                    action=action,
                    target_type=target[0],
                    target_id=target[1],
                    actor=actor,
                    status=AttemptStatus.PENDING.value,
                    amount=money.amount if money else None,
                    currency=money.currency if money else None,
                    created_at=self.clock(),
                    details={"request": request} if request else None,
                )
                session.add(attempt)
                session.flush()
                attempt.stripe_idempotency_key = (
                    f"crb-{attempt.id}-{hashlib.sha256(key.encode()).hexdigest()[:24]}"
                )
                if reserve is not None:
                    reserve(session)
                return attempt.id, attempt.stripe_idempotency_key, None
        except IntegrityError:
            pass
        with self.db.session() as session:
            earlier = session.scalar(select(ActionAttempt).where(ActionAttempt.key == key))
            if (
                earlier is None and tries < 3
            ):  # the other attempt failed and freed the key meanwhile: try afresh
                return self._claim(actor, action, target, key, money, reserve, request, tries + 1)
            if earlier is None:
                return None, "", AttemptStatus.PENDING.value
            if earlier.status == AttemptStatus.PENDING.value and self._outcome_unknown(earlier):
                # Stripe's answer never reached us: asking again with the same idempotency key is safe.
                return earlier.id, earlier.stripe_idempotency_key, AttemptStatus.PENDING.value
            return None, earlier.stripe_idempotency_key, earlier.status

    def _finish_failed(
        self, attempt_id: int, failure: StripeFailure, release: Callable[[Session], None] | None
    ) -> None:
        with self.db.session() as session:
            attempt = session.get(ActionAttempt, attempt_id)
            assert attempt is not None
            details = {**(attempt.details or {}), "error": failure.user_message, "code": failure.code}
            still_pending = (
                ActionAttempt.id == attempt_id,
                ActionAttempt.status == AttemptStatus.PENDING.value,
            )
            if failure.outcome_unknown:
                # Keep the key and any reservation: a retry, or settle_unanswered, finds out what Stripe did.
                session.execute(
                    update(ActionAttempt)
                    .where(*still_pending)
                    .values(details={**details, "outcome_unknown": True})
                )
                return
            failed = session.execute(
                update(ActionAttempt)
                .where(*still_pending)
                .values(
                    status=AttemptStatus.FAILED.value,
                    finished_at=self.clock(),
                    key=f"{attempt.key}!failed:{attempt.id}",  # frees the key for a fresh try
                    details=details,
                )
            )
            if failed.rowcount == 1 and release is not None:
                release(session)

    def _crms_holding(self, old_email: str) -> str:
        """Which connected CRMs still have the old address: the email check's push changes them."""
        if not self.crms:
            return "; no CRMs are connected to the bot, so no other system holds the old address"
        holding, unasked = [], []
        for crm in self.crms:
            try:
                if crm.find_contact(old_email) is not None:
                    holding.append(crm.name)
            except CrmError:
                unasked.append(crm.name)
        if holding:
            verb = "has" if len(holding) == 1 else "have"
            text = f"; {' and '.join(holding)} still {verb} the old address (push it from the email check)"
        else:
            text = "; no connected CRM has the old address"
        if unasked:
            text += f" ({' and '.join(unasked)} could not be asked)"
        return text

    def _outcome_unknown(self, attempt: ActionAttempt) -> bool:
        """Stripe's answer never reached us, or the process asking died: a retry with the same key is safe."""
        if attempt.details and attempt.details.get("outcome_unknown"):
            return True
        return attempt.created_at < self.clock() - STALE_ATTEMPT

    # Requests whose answer was lost ---------------------------------------------------------------------------

    def settle_unanswered(self, limit: int = 100) -> Settled:
        """Refunds and charges whose answer from Stripe never reached us, and that nobody retried: ask Stripe
        what each made (by its action key). What Stripe made is recorded; what it never made is let go, so its
        reserved amount can be refunded again. Safe beside a person retrying the same request at that moment."""
        if self.gateway is None:
            return Settled(0, 0, 0)
        cutoff = self.clock() - SETTLE_AFTER
        with self.db.session() as session:
            waiting = session.scalars(
                select(ActionAttempt)
                .where(
                    ActionAttempt.status == AttemptStatus.PENDING.value,
                    ActionAttempt.action.in_(SETTLED_ACTIONS),
                    ActionAttempt.created_at < cutoff,
                )
                .order_by(ActionAttempt.id)
                .limit(limit)
            ).all()
            session.expunge_all()
        recorded = let_go = unreachable = 0
        for attempt in waiting:
            if _last_try(attempt) >= cutoff:
                continue
            try:
                outcome = self._settle(attempt)
            except StripeFailure:
                unreachable += 1  # the next run asks again
                continue
            recorded += outcome == "succeeded"
            let_go += outcome == "failed"
        return Settled(recorded, let_go, unreachable)

    def _settle(self, attempt: ActionAttempt) -> str | None:
        """Settle one attempt: "succeeded" (recorded), "failed" (let go), or None (someone else settled it)."""
        request = (attempt.details or {}).get("request", {})
        money = Money(attempt.amount or 0, attempt.currency or "usd")
        with self.db.session() as session:
            if attempt.action == "refund":
                order = _order(session, attempt.target_id)
                label = f"refund {money.format()} of order #{order.number}"
                customer_id, payment_intent = order.customer_id, order.stripe_payment_intent_id
            else:
                what = f"{request.get('quantity', 1)} × {request.get('description', 'a new order')}"
                label = f"charge {money.format()} for {what}"
                customer_id, payment_intent = attempt.target_id, None
            customer = session.get(Customer, customer_id)
            assert customer is not None
            name, stripe_customer = shown_name(customer.name, customer.email), customer.stripe_customer_id
        stripe = self._stripe()
        if attempt.action == "refund":
            found = _found(stripe.find_refund(payment_intent, attempt.key) if payment_intent else None)
        else:
            found = _found(stripe.find_charge(stripe_customer, attempt.key) if stripe_customer else None)
        target = (attempt.target_type, attempt.target_id)
        with self.db.session() as session:
            if found is not None:
                result, stripe_id = found
                if not _finish(session, attempt.id, stripe_id, self.clock()):
                    return None
                self._record_settled(session, attempt, result)
                outcome = "succeeded"
                summary = (
                    f"{label} ({name}) went through: Stripe made it, though its answer was lost at the time"
                )
            else:
                stripe_id = None
                if not _let_go(session, attempt, self.clock()):
                    return None
                if attempt.action == "refund":
                    _release_refund(session, attempt.target_id, attempt.amount or 0)
                outcome = "failed"
                summary = (
                    f"{label} ({name}) did not happen: its answer from Stripe was lost, and Stripe never made it. "
                    "Nothing moved; it can be asked for again"
                )
        self.audit(AuditEntry(attempt.actor, attempt.action, *target, outcome, summary, money, stripe_id))
        return outcome

    def _record_settled(self, session: Session, attempt: ActionAttempt, result: object) -> None:
        request = (attempt.details or {}).get("request", {})
        if isinstance(result, RefundResult):
            _record_refund(
                session,
                attempt.target_id,
                attempt.amount or 0,
                result.id,
                request.get("reason"),
                request.get("note"),
                attempt.actor,
                self.clock(),
            )
        elif isinstance(result, ChargeResult):
            _record_new_order(
                session,
                attempt.target_id,
                result,
                request.get("description") or "New order",
                int(request.get("unit_amount") or result.amount),
                int(request.get("quantity") or 1),
                self.clock(),
            )

    # Audit ---------------------------------------------------------------------------------------------------

    def audit(self, entry: AuditEntry) -> None:
        """Write an entry to the audit trail (and post it to the audit channel, when there is one)."""
        with self.db.session() as session:
            session.add(
                AuditEvent(
                    at=self.clock(),
                    actor=entry.actor,
                    action=entry.action,
                    target_type=entry.target_type,
                    target_id=entry.target_id,
                    outcome=entry.outcome,
                    amount=entry.amount.amount if entry.amount else None,
                    currency=entry.amount.currency if entry.amount else None,
                    stripe_id=entry.stripe_id,
                    details={"summary": entry.summary},
                )
            )
        if self.on_audit is not None:
            self.on_audit(entry)

    def _stripe(self) -> StripeGateway:
        if self.gateway is None:
            raise StripeFailure(
                "Stripe is not connected to the bot (STRIPE_API_KEY is not set), so nothing was changed.",
                code=None,
                outcome_unknown=False,
            )
        return self.gateway


def apply_subscription(row: Recurring, result: SubscriptionResult, *, now: datetime) -> None:
    """Bring our row in line with what Stripe says the subscription now is."""
    row.cancel_at_period_end = result.cancel_at_period_end
    row.payments_paused = result.payments_paused
    row.paused_until = result.paused_until
    if result.current_period_end:
        row.current_period_end = result.current_period_end
    if result.status == "canceled":
        row.status = RecurringStatus.CANCELED.value
        row.canceled_at = result.canceled_at or now
        row.next_bill_at = None
    elif result.payments_paused:
        row.status = RecurringStatus.PAUSED.value
    elif result.status in ("active", "trialing", "past_due"):
        row.status = result.status
    if result.trial_end and result.status == "trialing":
        row.next_bill_at = result.trial_end
    elif result.current_period_end and result.status != "canceled":
        row.next_bill_at = result.current_period_end


@dataclass(frozen=True)
class Settled:
    """What one run of `settle_unanswered` did."""

    recorded: int  # Stripe had made them: now in our records
    let_go: int  # Stripe never made them: reservations released, keys freed
    unreachable: int  # Stripe could not be asked; the next run tries again


def _last_try(attempt: ActionAttempt) -> datetime:
    tried_at = (attempt.details or {}).get("tried_at")
    return datetime.fromisoformat(tried_at) if tried_at else attempt.created_at


def _finish(session: Session, attempt_id: int, stripe_id: str | None, now: datetime) -> bool:
    """Mark a pending attempt succeeded; False when another process finished or let go of it first."""
    finished = session.execute(
        update(ActionAttempt)
        .where(ActionAttempt.id == attempt_id, ActionAttempt.status == AttemptStatus.PENDING.value)
        .values(status=AttemptStatus.SUCCEEDED.value, stripe_id=stripe_id, finished_at=now)
    )
    return finished.rowcount == 1


def _let_go(session: Session, attempt: ActionAttempt, now: datetime) -> bool:
    """Mark a pending attempt failed and free its key, unless it changed since it was read (a retry took it)."""
    details = {**(attempt.details or {}), "error": "Stripe never made it; its answer had been lost"}
    let_go = session.execute(
        update(ActionAttempt)
        .where(
            ActionAttempt.id == attempt.id,
            ActionAttempt.status == AttemptStatus.PENDING.value,
            ActionAttempt.stripe_idempotency_key == attempt.stripe_idempotency_key,
        )
        .values(
            status=AttemptStatus.FAILED.value,
            finished_at=now,
            key=f"{attempt.key}!failed:{attempt.id}",
            details=details,
        )
    )
    return let_go.rowcount == 1


def _release_refund(session: Session, order_id: int, amount: int) -> None:
    session.execute(
        update(Order)
        .where(Order.id == order_id)
        .values(amount_refund_pending=Order.amount_refund_pending - amount)
    )


def _record_refund(
    session: Session,
    order_id: int,
    amount: int,
    stripe_refund_id: str,
    reason: str | None,
    note: str | None,
    actor: str,
    now: datetime,
) -> None:
    """Move a reserved amount to refunded, and keep the refund."""
    order = session.get(Order, order_id, with_for_update=True)
    assert order is not None
    order.amount_refund_pending -= amount
    order.amount_refunded += amount
    order.status = (
        OrderStatus.REFUNDED.value
        if order.amount_refunded == order.total
        else OrderStatus.PARTIALLY_REFUNDED.value
    )
    session.add(
        Refund(
            order_id=order_id,
            amount=amount,
            currency=order.currency,
            reason=reason,
            note=note or None,
            stripe_refund_id=stripe_refund_id,
            requested_by=actor,
            created_at=now,
        )
    )


def _record_new_order(
    session: Session,
    customer_id: int,
    charge: ChargeResult,
    description: str,
    unit_amount: int,
    quantity: int,
    now: datetime,
) -> None:
    """The order a charge on the card on file paid for."""
    customer = session.get(Customer, customer_id)
    assert customer is not None
    order = Order(
        number=f"pending-{charge.payment_intent_id}",
        customer_id=customer_id,
        created_at=now,
        currency=charge.currency,
        total=charge.amount,
        amount_refunded=0,
        status=OrderStatus.PAID.value,
        source=OrderSource.INTERNAL.value,
        stripe_payment_intent_id=charge.payment_intent_id,
        stripe_charge_id=charge.charge_id,
        card_brand=charge.card_brand or customer.card_brand,
        card_last4=charge.card_last4 or customer.card_last4,
    )
    session.add(order)
    session.flush()
    order.number = order_number(order.id)
    session.add(
        OrderLine(
            order_id=order.id, position=0, description=description, quantity=quantity, unit_amount=unit_amount
        )
    )


def _found(result: RefundResult | ChargeResult | None) -> tuple[object, str] | None:
    """What an earlier request made in Stripe, shaped as a call's answer: (result, Stripe id)."""
    if result is None:
        return None
    return result, result.id if isinstance(result, RefundResult) else result.payment_intent_id


def _order(session: Session, order_id: int) -> Order:
    order = session.get(Order, order_id)
    if order is None:
        raise RecordNotFound("order", order_id)
    return order


def _recurring(session: Session, recurring_id: int) -> Recurring:
    recurring = session.get(Recurring, recurring_id)
    if recurring is None:
        raise RecordNotFound("subscription or payment plan", recurring_id)
    return recurring


def _quote(session: Session, order: Order) -> RefundQuote:
    customer = session.get(Customer, order.customer_id)
    assert customer is not None
    refundable = order.total - order.amount_refunded - order.amount_refund_pending
    card = f"{(order.card_brand or 'card').title()} •••• {order.card_last4}" if order.card_last4 else None
    return RefundQuote(
        order_id=order.id,
        order_number=order.number,
        customer_id=customer.id,
        customer_name=shown_name(customer.name, customer.email),
        paid=Money(order.total, order.currency),
        refunded=Money(order.amount_refunded, order.currency),
        refundable=Money(max(0, refundable), order.currency),
        card=card,
        refunded_seen=order.amount_refunded,
    )
