"""The Stripe gateway as actions reach it: an action asked while Stripe is not connected is refused (and audited)
before anything is written."""

from __future__ import annotations

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

    def connected(self) -> StripeGateway:
        """The gateway, for work that only runs with Stripe connected (settling)."""
        if self.gateway is None:
            raise Failed(NOT_CONNECTED)
        return self.gateway
