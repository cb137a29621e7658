"""The audit trail: who asked for what, on which record, and how it ended. An entry about a change is written in
the same transaction as the change, and told to the audit channel only once that transaction has committed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from bot.db import Database, after_commit
from bot.models import AuditEvent
from bot.money import Money
from bot.shared import Shared


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    action: str
    target_type: str
    target_id: int | None
    # refused, invalid, succeeded, failed, unknown (Stripe may have acted), in_progress, already_done, let_go
    outcome: str
    summary: str
    amount: Money | None = None
    stripe_id: str | None = None
    note: str | None = None  # what the person wrote with the request (bot.actions.notes)


class AuditTrail(Shared):
    """Writes audit entries; `on_written` (posting to the audit channel) hears of each once it is committed."""

    def __init__(
        self,
        db: Database,
        clock: Callable[[], datetime],
        on_written: Callable[[AuditEntry], None] | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.on_written = on_written

    def add(self, session: Session, entry: AuditEntry) -> None:
        """Write `entry` in the caller's transaction: it stands or falls with the change it describes."""
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
                details={"summary": entry.summary, **({"note": entry.note} if entry.note else {})},
            )
        )
        if self.on_written is not None:
            tell = self.on_written
            after_commit(session, lambda: tell(entry))

    def write(self, entry: AuditEntry) -> None:
        """Write an entry that goes with no change (a refusal, an invalid request) in a transaction of its own."""
        with self.db.session() as session:
            self.add(session, entry)
