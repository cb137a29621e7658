"""Who may act: payment admins (`PAYMENT_ADMINS`) only; an empty list means nobody. Every refusal is audited."""

from __future__ import annotations

from bot.actions.audit import AuditEntry, AuditTrail
from bot.actions.outcomes import NotAllowed
from bot.shared import Shared


class Permission(Shared):
    def __init__(self, admins: frozenset[str], audit: AuditTrail) -> None:
        self.admins = admins
        self.audit = audit

    def allows(self, actor: str) -> bool:
        return actor in self.admins

    def require(self, actor: str, action: str, target_type: str, target_id: int | None) -> None:
        """Raise NotAllowed (after auditing the refusal) unless `actor` is a payment admin."""
        if not self.allows(actor):
            self.audit.write(
                AuditEntry(actor, action, target_type, target_id, "refused", "not a payment admin")
            )
            raise NotAllowed(self.admins)
