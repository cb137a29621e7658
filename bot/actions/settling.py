"""Settling attempts whose answer from Stripe never reached us.

Two ways in, one rule: what Stripe made is recorded, with Stripe's id and amount; what it never made is let go, so
what the attempt set aside is given back and the same request can be asked again.
- The settle job (`settle_unanswered`, run by the clock every few minutes) takes over each open attempt whose
  latest try must have ended (bot.actions.ledger.IN_FLIGHT) and asks Stripe what it made. It never moves money.
- A webhook bringing a refund or payment that carries an attempt's key (`bot_made`, the hook bot.stripe_sync
  calls) records it at once, in the webhook's transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from bot.actions.ledger import SUCCEEDED, Attempt, Effect, Ledger
from bot.shared import Shared
from bot.stripe_gateway import StripeFailure

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settled:
    """What one run of the settle job did, and to which attempts."""

    recorded: int = 0  # Stripe had made them: now in our records
    let_go: int = 0  # Stripe never made them: what they set aside given back, their keys freed
    unreachable: int = (
        0  # Stripe could not be asked (or the records could not be written); a later run retries
    )


class Settler(Shared):
    def __init__(self, ledger: Ledger, *, connected: bool) -> None:
        self.ledger = ledger
        self.connected = connected  # with Stripe not connected there is nothing to ask, and nothing to settle

    def settle_unanswered(self, limit: int = 100) -> Settled:
        recorded = let_go = unreachable = 0
        for open_attempt in self.ledger.open_attempts(limit=limit) if self.connected else []:
            effect_for = self.ledger.effects.get(open_attempt.action)
            attempt = self.ledger.take_over(open_attempt) if effect_for else None
            if attempt is None or effect_for is None:
                continue  # someone else is on it, or an action this version no longer knows
            try:
                outcome = self._settle(attempt, effect_for(attempt))
            except Exception:  # one attempt's trouble must not stop the others; the next run tries again
                logger.exception("could not settle attempt %s", attempt.id)
                outcome = "unreachable"
            recorded += outcome == "recorded"
            let_go += outcome == "let_go"
            unreachable += outcome == "unreachable"
        return Settled(recorded, let_go, unreachable)

    def _settle(self, attempt: Attempt, effect: Effect) -> str | None:
        try:
            made = effect.find()
        except StripeFailure as failure:
            logger.warning("could not ask Stripe about attempt %s: %s", attempt.id, failure.stripe_message)
            return "unreachable"
        if made is not None:
            summary = f"{attempt.done}: Stripe made it, though its answer was lost at the time"
            return "recorded" if self.ledger.succeed(attempt, effect, made, summary) is not None else None
        summary = (
            f"{attempt.asked}: did not happen. Its answer from Stripe was lost, and Stripe never made it, so "
            "nothing changed; it can be asked for again"
        )
        return "let_go" if self.ledger.let_go(attempt, summary) else None

    def bot_made(self, session: Session, action_key: str, obj: Mapping[str, Any]) -> bool:
        """A refund or payment from Stripe carrying an attempt's key: record it as that attempt's outcome. False
        when no attempt of ours stands for it (it is then recorded like any other)."""
        attempt = self.ledger.attempt_by_key(session, action_key)
        effect_for = self.ledger.effects.get(attempt.action) if attempt else None
        if attempt is None or effect_for is None:
            return False
        if attempt.status == SUCCEEDED:
            if attempt.stripe_id != obj.get("id"):  # a second object for one request: it must not go unseen
                logger.error(
                    "attempt %s made %s, and Stripe also has %s for it",
                    attempt.id,
                    attempt.stripe_id,
                    obj.get("id"),
                )
                return False
            return True
        effect = effect_for(attempt)
        self.ledger.succeed(
            attempt, effect, effect.made_from(obj), f"{attempt.done} (confirmed by Stripe)", session
        )
        return True
