"""Acting on records: refunds, subscription and payment plan changes, new orders, email changes, receipts. Slack, the shell
and the scheduler all act through here.

One module per family of actions (`refunds`, `recurring`, `new_orders`, `email`, `receipts`); each checks a request with its
rules (field → problem, for the form to show), then hands it to the exactly-once `ledger`. `settling` ends the
requests whose answer from Stripe was lost; `permission` says who may act; `audit` keeps the trail.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from bot.actions.audit import AuditEntry, AuditTrail
from bot.actions.email import EmailChanges, EmailEffect
from bot.actions.ledger import IN_FLIGHT, Ledger
from bot.actions.new_orders import ChargeEffect, NewOrders
from bot.actions.notes import Notes
from bot.actions.permission import Permission
from bot.actions.receipts import ReceiptEffect, Receipts
from bot.actions.recurring import (
    BILL_CHANGES,
    CHANGES,
    FailedBillEffect,
    SubscriptionChanges,
    SubscriptionEffect,
)
from bot.actions.refunds import RefundEffect, Refunds
from bot.actions.settling import Settler
from bot.actions.stripe_access import StripeAccess
from bot.crm import Crm
from bot.db import Database
from bot.stripe_gateway import StripeGateway


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Actions:
    refunds: Refunds
    subscriptions: SubscriptionChanges
    new_orders: NewOrders
    email: EmailChanges
    settler: Settler
    permission: Permission
    audit: AuditTrail
    notes: Notes  # Add note: no ledger, no permission (a note moves no money)
    receipts: Receipts


def build_actions(
    db: Database,
    gateway: StripeGateway | None,
    admins: frozenset[str],
    *,
    crms: Sequence[Crm] = (),
    on_audit: Callable[[AuditEntry], None] | None = None,
    clock: Callable[[], datetime] = _now,
) -> Actions:
    """Every family of actions on one ledger and one audit trail."""
    audit = AuditTrail(db, clock, on_audit)
    permission = Permission(admins, audit)
    stripe = StripeAccess(gateway, audit)
    # A try may be on its way for ten times the longest a Stripe call takes, and never less than IN_FLIGHT.
    in_flight = max(IN_FLIGHT, timedelta(seconds=10 * gateway.limits.budget)) if gateway else IN_FLIGHT
    effects = {
        "refund": partial(RefundEffect.of, gateway),
        "new_order": partial(ChargeEffect.of, gateway),
        "change_email": partial(EmailEffect.of, gateway),
        "send_receipt": partial(ReceiptEffect.of, gateway),
        **dict.fromkeys(CHANGES, partial(SubscriptionEffect.of, gateway)),
        **dict.fromkeys(BILL_CHANGES, partial(FailedBillEffect.of, gateway)),
    }
    ledger = Ledger(db, audit, clock, effects, in_flight=in_flight)
    refunds = Refunds(db, ledger, permission, stripe, clock)
    subscriptions = SubscriptionChanges(db, ledger, permission, stripe, clock)
    new_orders = NewOrders(db, ledger, permission, stripe, clock)
    email = EmailChanges(db, ledger, permission, stripe, crms, clock)
    receipts = Receipts(db, ledger, permission, stripe, clock)
    settler = Settler(ledger, connected=gateway is not None)
    return Actions(
        refunds, subscriptions, new_orders, email, settler, permission, audit, Notes(db, clock), receipts
    )
