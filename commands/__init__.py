"""Slack listeners: parse what Slack sent, ask bot/ for the answer, send back what blocks/ renders.

One module per surface. Listeners are named, typed functions; the services they need come in by name through
Bolt's context (`provide_services`), so a listener reads `refunds: Refunds` and holds no rules of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from slack_bolt import App, BoltContext

from bot.actions import Actions
from bot.actions.email import EmailChanges
from bot.actions.new_orders import NewOrders
from bot.actions.notes import Notes
from bot.actions.receipts import Receipts
from bot.actions.recurring import SubscriptionChanges
from bot.actions.refunds import Refunds
from bot.records import Records


@dataclass(frozen=True)
class Services:
    """What listeners may ask for, by these names."""

    records: Records
    refunds: Refunds
    subscriptions: SubscriptionChanges
    new_orders: NewOrders
    email: EmailChanges
    notes: Notes
    receipts: Receipts

    @classmethod
    def of(cls, records: Records, actions: Actions) -> Services:
        return cls(
            records,
            actions.refunds,
            actions.subscriptions,
            actions.new_orders,
            actions.email,
            actions.notes,
            actions.receipts,
        )


def register(app: App, services: Services) -> None:
    from commands import (
        customer,
        email,
        email_sync,
        new_orders,
        notes,
        receipts,
        records,
        recurring,
        refunds,
    )

    named: dict[str, Any] = {field.name: getattr(services, field.name) for field in fields(services)}

    def provide_services(context: BoltContext, next_: Any) -> None:
        context.update(named)
        next_()

    app.middleware(provide_services)
    for surface in (customer, records, refunds, recurring, new_orders, email, email_sync, notes, receipts):
        surface.register(app)
