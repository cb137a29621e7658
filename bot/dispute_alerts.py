"""Dispute alerts: which steps of a dispute are due in the alerts channel, and claiming each one once.

A dispute is announced when it opens and again when it closes (won, lost, an inquiry closed, or prevented). Each
(dispute, step) is a unique row in `dispute_alerts`, inserted before the post: only the process whose insert
succeeds posts, so repeated, late or simultaneous deliveries of the events that lead to a step post it once. A
dispute first seen already closed (its opening events delivered late, or never) gets its closed alert only: that it
opened is news already over, and the closed alert says when it did.

A post that certainly left nothing in the channel (Slack refused it, or it never reached Slack) releases its claim,
and the webhook answers so that Stripe delivers the event again. One whose answer was lost keeps its claim: that
alert may be missing (logged as an error), never doubled.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from bot.db import Database
from bot.models import CLOSED_DISPUTE_STATUSES, Customer, Dispute, DisputeAlert, DisputeAlertStep, Order
from bot.naming import shown_name
from bot.records import dispute_line
from bot.viewmodels import DisputeNews

_CLOSED = frozenset(s.value for s in CLOSED_DISPUTE_STATUSES)


def due(db: Database, stripe_dispute_id: str) -> list[DisputeNews]:
    """The steps of this dispute not announced yet: its opening while it is open, its close once it closed."""
    with db.session() as session:
        row = session.execute(
            select(Dispute, Order.number, Customer)
            .join(Order, Order.id == Dispute.order_id)
            .join(Customer, Customer.id == Order.customer_id)
            .where(Dispute.stripe_dispute_id == stripe_dispute_id)
        ).first()
        if row is None:
            return []  # a dispute of a payment we do not have: nothing recorded, nothing to say
        dispute, order_number, customer = row
        claimed = set(session.scalars(select(DisputeAlert.step).where(DisputeAlert.dispute_id == dispute.id)))
        step = DisputeAlertStep.CLOSED if dispute.status in _CLOSED else DisputeAlertStep.OPENED
        if step.value in claimed:
            return []
        return [
            DisputeNews(
                step=step.value,
                dispute_id=dispute.id,
                customer_id=customer.id,
                customer_name=shown_name(customer.name, customer.email),
                order_id=dispute.order_id,
                order_number=order_number,
                dispute=dispute_line(dispute),
            )
        ]


def claim(db: Database, news: DisputeNews, channel: str, *, now: datetime) -> bool:
    """Take the announcement of this step; False when another delivery already has it."""
    try:
        with db.session() as session:
            session.add(
                DisputeAlert(dispute_id=news.dispute_id, step=news.step, channel=channel, claimed_at=now)
            )
        return True
    except IntegrityError:
        return False


def posted(db: Database, news: DisputeNews, message_ts: str, *, now: datetime) -> None:
    with db.session() as session:
        session.execute(
            update(DisputeAlert)
            .where(DisputeAlert.dispute_id == news.dispute_id, DisputeAlert.step == news.step)
            .values(message_ts=message_ts, posted_at=now)
        )


def release(db: Database, news: DisputeNews) -> None:
    """The post certainly left nothing in the channel: let the next delivery announce it afresh."""
    with db.session() as session:
        session.execute(
            delete(DisputeAlert).where(
                DisputeAlert.dispute_id == news.dispute_id,
                DisputeAlert.step == news.step,
                DisputeAlert.posted_at.is_(None),
            )
        )
