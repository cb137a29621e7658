"""The Stripe gateway as actions reach it: an action asked while Stripe is not connected is refused (and audited)
before anything is written."""

from __future__ import annotations

from dataclasses import dataclass

from bot.actions.audit import AuditEntry, AuditTrail
from bot.actions.outcomes import Failed
from bot.money import Money
from bot.shared import Shared
from bot.stripe_gateway import StripeGateway

NOT_CONNECTED = "Stripe is not connected to the bot (STRIPE_API_KEY is not set), so nothing was changed."


class StripeAccess(Shared):
    def __init__(self, gateway: StripeGateway | None, audit: AuditTrail) -> None:
        self.gateway = gateway
        self.audit = audit

    def require(
        self, actor: str, action: str, target_type: str, target_id: int, money: Money | None = None
    ) -> StripeGateway:
        if self.gateway is None:
            self.audit.write(
                AuditEntry(actor, action, target_type, target_id, "failed", NOT_CONNECTED, money)
            )
            raise Failed(NOT_CONNECTED)
        return self.gateway


@dataclass(frozen=True)
class StripeSide:
    """What an effect (bot.actions.ledger.Effect) reaches Stripe through. Actions are refused before they start
    when Stripe is not connected (`StripeAccess.require`), so an effect that goes on to call Stripe has it."""

    gateway: StripeGateway | None

    @property
    def stripe(self) -> StripeGateway:
        if self.gateway is None:
            raise RuntimeError("Stripe is not connected")
        return self.gateway
