"""Missed payments: which to announce, claiming each one once, and which announced ones were paid since.

A payment is missed while it failed or was written off (Stripe's `uncollectible`) and was not paid since: the
customer card counts it whatever became of its subscription or plan. The alerts announce only the missed payments
of subscriptions and plans that have not ended: one Stripe canceled for non-payment (or the merchant canceled) is
no longer anyone's to chase from the channel, and announcing it would be noise; its money stays outstanding on the
card. A missed payment announced before its subscription ended keeps its alert, which is updated if it is paid
after all. Each is announced once: the
job first inserts its row in `missed_payment_alerts` (unique per payment), and only the process whose insert
succeeds posts. So repeated runs, restarts and two schedulers at once never announce a payment twice.

A claim that was never marked posted may still have a message behind it (the process died after Slack took the
post, or Slack's answer was lost). Each alert carries message metadata naming its payment, so before such a claim
is taken again the job looks for that message in the channel's history and, if it is there, records it instead of
posting a second one.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from bot.db import Database
from bot.models import (
    ENDED_STATUSES,
    MISSED_PAYMENT_STATUSES,
    Customer,
    MissedPaymentAlert,
    Payment,
    PaymentStatus,
    Recurring,
)
from bot.money import Money
from bot.naming import shown_name
from bot.viewmodels import MissedPayment

# A claim not marked posted after this long belongs to a run that died (claim, post and mark take seconds, each
# Slack call being bounded by the jobs' client timeout): a later run may take it over, after looking in the channel.
ABANDONED_CLAIM = timedelta(minutes=10)
# How far before an abandoned claim the channel's history is searched: our clock against Slack's timestamps.
HISTORY_MARGIN = timedelta(minutes=5)
ALERT_EVENT = "missed_payment_alert"  # the metadata event type of every missed-payment alert
_ENDED = sorted(s.value for s in ENDED_STATUSES)
_MISSED = sorted(s.value for s in MISSED_PAYMENT_STATUSES)


@dataclass(frozen=True)
class Abandoned:
    """A claim whose run died or lost Slack's answer: its alert may be in `channel` already, posted after
    `claimed_at`."""

    channel: str
    claimed_at: datetime

    @property
    def search_from(self) -> datetime:
        return self.claimed_at - HISTORY_MARGIN


@dataclass(frozen=True)
class Due:
    missed: MissedPayment
    abandoned: Abandoned | None  # None: nobody has claimed this alert yet


def to_announce(db: Database, *, limit: int, now: datetime) -> list[Due]:
    """Missed payments with no alert yet, oldest first, then those whose claim was abandoned: so alerts waiting for
    the channel's history to be readable never hold new ones back."""
    with db.session() as session:
        rows = session.execute(
            select(Payment, Recurring, Customer, MissedPaymentAlert)
            .join(Recurring, Recurring.id == Payment.recurring_id)
            .join(Customer, Customer.id == Recurring.customer_id)
            .outerjoin(MissedPaymentAlert, MissedPaymentAlert.payment_id == Payment.id)
            .where(
                Payment.status.in_(_MISSED),
                Recurring.status.not_in(_ENDED),
                (MissedPaymentAlert.id.is_(None)) | _abandoned(now),
            )
            .order_by(MissedPaymentAlert.id.is_not(None), Payment.due_at, Payment.id)
            .limit(limit)
        ).all()
        return [
            Due(
                _missed(payment, recurring, customer),
                Abandoned(alert.channel, alert.claimed_at) if alert else None,
            )
            for payment, recurring, customer, alert in rows
        ]


def _abandoned(now: datetime) -> ColumnElement[bool]:
    return MissedPaymentAlert.posted_at.is_(None) & (MissedPaymentAlert.claimed_at <= now - ABANDONED_CLAIM)


def alert_metadata(payment_id: int) -> dict[str, Any]:
    """The message metadata each alert is posted with, so the alert of a payment can be found in the channel."""
    return {"event_type": ALERT_EVENT, "event_payload": {"payment_id": payment_id}}


def alerted_payment(metadata: dict[str, Any] | None) -> int | None:
    """The payment a message's metadata names, when the message is a missed-payment alert."""
    if not metadata or metadata.get("event_type") != ALERT_EVENT:
        return None
    payment_id = (metadata.get("event_payload") or {}).get("payment_id")
    if isinstance(payment_id, str) and payment_id.isdigit():  # in case Slack hands numbers back as strings
        return int(payment_id)
    return payment_id if isinstance(payment_id, int) and not isinstance(payment_id, bool) else None


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
        written_off=payment.status == PaymentStatus.UNCOLLECTIBLE.value,
        status=recurring.status,
        payment_status=payment.status,
    )


def claim(db: Database, payment_id: int, channel: str, *, now: datetime) -> bool:
    """Take the announcement of this payment; False when another run already has it."""
    try:
        with db.session() as session:
            session.add(MissedPaymentAlert(payment_id=payment_id, channel=channel, claimed_at=now))
        return True
    except IntegrityError:
        return False


def take_over(db: Database, payment_id: int, abandoned: Abandoned, channel: str, *, now: datetime) -> bool:
    """Take over an abandoned claim once the channel's history showed no alert for it; False when another run
    took it over first."""
    with db.session() as session:
        taken = session.execute(
            update(MissedPaymentAlert)
            .where(
                MissedPaymentAlert.payment_id == payment_id,
                MissedPaymentAlert.posted_at.is_(None),
                MissedPaymentAlert.claimed_at == abandoned.claimed_at,
            )
            .values(claimed_at=now, channel=channel)
        )
        return taken.rowcount == 1


def posted(db: Database, payment_id: int, channel: str, message_ts: str, *, now: datetime) -> None:
    """The alert is in `channel` (posted now, or found there from an abandoned claim)."""
    with db.session() as session:
        session.execute(
            update(MissedPaymentAlert)
            .where(MissedPaymentAlert.payment_id == payment_id, MissedPaymentAlert.posted_at.is_(None))
            .values(channel=channel, message_ts=message_ts, posted_at=now)
        )


def give_up(db: Database, payment_id: int, *, now: datetime) -> None:
    """The post failed in a way that may have left the alert in the channel: abandon the claim at once, so the
    next run looks in the channel before posting again."""
    with db.session() as session:
        session.execute(
            update(MissedPaymentAlert)
            .where(
                MissedPaymentAlert.payment_id == payment_id,
                MissedPaymentAlert.posted_at.is_(None),
                MissedPaymentAlert.claimed_at == now,
            )
            .values(claimed_at=now - ABANDONED_CLAIM)
        )


def release(db: Database, payment_id: int) -> None:
    """The post certainly left nothing in the channel: let a later run announce it afresh."""
    with db.session() as session:
        session.execute(
            delete(MissedPaymentAlert).where(
                MissedPaymentAlert.payment_id == payment_id, MissedPaymentAlert.posted_at.is_(None)
            )
        )


@dataclass(frozen=True)
class Ended:
    """An announced missed payment that has ended since: paid after all, voided or written off."""

    payment_id: int
    channel: str
    message_ts: str
    missed: MissedPayment


# How a missed payment ends, for its alert: paid; or no longer retried, voided (nothing owed) or written off.
ENDINGS = (PaymentStatus.PAID.value, PaymentStatus.VOID.value, PaymentStatus.UNCOLLECTIBLE.value)


def ended_since(db: Database, *, limit: int, just_posted: Collection[int] = ()) -> list[Ended]:
    """Announced missed payments that have ended since (paid, voided or written off), whose alert still says
    they are missed. The alerts of `just_posted` payments (this run's) already say how their payment stands."""
    with db.session() as session:
        # Start from the alerts still unresolved, a few, not from the paid payments, every payment ever made: the
        # payment's status is checked in a subquery per alert, so no planner walks the payments by status.
        payment = aliased(Payment)
        ended = exists().where(payment.id == MissedPaymentAlert.payment_id, payment.status.in_(ENDINGS))
        rows = session.execute(
            select(MissedPaymentAlert, Payment, Recurring, Customer)
            .join(Payment, Payment.id == MissedPaymentAlert.payment_id)
            .join(Recurring, Recurring.id == Payment.recurring_id)
            .join(Customer, Customer.id == Recurring.customer_id)
            .where(
                MissedPaymentAlert.resolved_at.is_(None),
                MissedPaymentAlert.message_ts.is_not(None),
                MissedPaymentAlert.payment_id.not_in(list(just_posted)),
                ended,
            )
            .limit(limit)
        ).all()
        return [
            Ended(
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
