"""Missed payments: which to announce, claiming each one once, and which announced ones were paid since.

A payment is missed while it is `failed` and its subscription or plan has not ended. Each is announced once: the
job first inserts its row in `missed_payment_alerts` (unique per payment), and only the process whose insert
succeeds posts. So repeated runs, restarts and two schedulers at once never announce a payment twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from bot.db import Database
from bot.models import Customer, MissedPaymentAlert, Payment, PaymentStatus, Recurring, RecurringStatus
from bot.money import Money
from bot.naming import shown_name
from bot.viewmodels import MissedPayment

# A claim whose post never landed (the process died in between) is tried again after this long.
ABANDONED_CLAIM = timedelta(minutes=10)
_ENDED = (RecurringStatus.CANCELED.value, RecurringStatus.COMPLETED.value)


def to_announce(db: Database, *, limit: int, now: datetime) -> list[MissedPayment]:
    """Missed payments with no alert yet (or an abandoned one), oldest first."""
    stale = now - ABANDONED_CLAIM
    with db.session() as session:
        rows = session.execute(
            select(Payment, Recurring, Customer)
            .join(Recurring, Recurring.id == Payment.recurring_id)
            .join(Customer, Customer.id == Recurring.customer_id)
            .outerjoin(MissedPaymentAlert, MissedPaymentAlert.payment_id == Payment.id)
            .where(
                Payment.status == PaymentStatus.FAILED.value,
                Recurring.status.not_in(_ENDED),
                (MissedPaymentAlert.id.is_(None))
                | (MissedPaymentAlert.posted_at.is_(None) & (MissedPaymentAlert.claimed_at < stale)),
            )
            .order_by(Payment.due_at, Payment.id)
            .limit(limit)
        ).all()
        return [_missed(payment, recurring, customer) for payment, recurring, customer in rows]


def _missed(payment: Payment, recurring: Recurring, customer: Customer) -> MissedPayment:
    return MissedPayment(
        payment_id=payment.id,
        customer_id=customer.id,
        customer_name=shown_name(customer.name, customer.email),
        recurring_id=recurring.id,
        kind=recurring.kind,
        product=recurring.product,
        amount=Money(payment.amount, payment.currency),
        reason=payment.failure_reason,
        failed_at=payment.failed_at or payment.due_at,
        payments_paused=recurring.payments_paused,
    )


def claim(db: Database, payment_id: int, channel: str, *, now: datetime) -> bool:
    """Take the announcement of this payment; False when another run already has it."""
    try:
        with db.session() as session:
            abandoned = session.execute(
                update(MissedPaymentAlert)
                .where(
                    MissedPaymentAlert.payment_id == payment_id,
                    MissedPaymentAlert.posted_at.is_(None),
                    MissedPaymentAlert.claimed_at < now - ABANDONED_CLAIM,
                )
                .values(claimed_at=now, channel=channel)
            )
            if abandoned.rowcount == 1:
                return True
            session.add(MissedPaymentAlert(payment_id=payment_id, channel=channel, claimed_at=now))
        return True
    except IntegrityError:
        return False


def posted(db: Database, payment_id: int, message_ts: str, *, now: datetime) -> None:
    with db.session() as session:
        session.execute(
            update(MissedPaymentAlert)
            .where(MissedPaymentAlert.payment_id == payment_id)
            .values(message_ts=message_ts, posted_at=now)
        )


def release(db: Database, payment_id: int) -> None:
    """The post failed: let a later run announce it."""
    with db.session() as session:
        session.execute(
            delete(MissedPaymentAlert).where(
                MissedPaymentAlert.payment_id == payment_id, MissedPaymentAlert.posted_at.is_(None)
            )
        )


@dataclass(frozen=True)
class PaidSince:
    payment_id: int
    channel: str
    message_ts: str
    missed: MissedPayment


def paid_since(db: Database, *, limit: int) -> list[PaidSince]:
    """Announced missed payments that have been paid since, whose alert still says they are missed."""
    with db.session() as session:
        rows = session.execute(
            select(MissedPaymentAlert, Payment, Recurring, Customer)
            .join(Payment, Payment.id == MissedPaymentAlert.payment_id)
            .join(Recurring, Recurring.id == Payment.recurring_id)
            .join(Customer, Customer.id == Recurring.customer_id)
            .where(
                MissedPaymentAlert.resolved_at.is_(None),
                MissedPaymentAlert.message_ts.is_not(None),
                Payment.status == PaymentStatus.PAID.value,
            )
            .limit(limit)
        ).all()
        return [
            PaidSince(
                alert.payment_id,
                alert.channel,
                alert.message_ts,  # type: ignore[arg-type]
                _missed(payment, recurring, customer),
            )
            for alert, payment, recurring, customer in rows
        ]


def resolved(db: Database, payment_id: int, *, now: datetime) -> None:
    with db.session() as session:
        session.execute(
            update(MissedPaymentAlert)
            .where(MissedPaymentAlert.payment_id == payment_id)
            .values(resolved_at=now)
        )
