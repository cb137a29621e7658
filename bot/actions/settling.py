"""Settling attempts whose answer from Stripe never reached us.

Two ways in, one rule: what Stripe made is recorded, with Stripe's id and amount; what it never made is let go, so
what the attempt set aside is given back and the same request can be asked again.
- The settle job (`settle_unanswered`, run by the clock every few minutes) takes over each open attempt whose
  latest try must have ended (bot.actions.ledger.IN_FLIGHT) and asks Stripe what it made. It never moves money.
- A webhook bringing a refund or payment that carries an attempt's key (`bot_made`, the hook bot.stripe_sync
  calls) records it at once, in the webhook's transaction.
"""

from __future__ import annotations

import enum
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from bot.actions.ledger import SUCCEEDED, Attempt, Effect, Ledger
from bot.shared import Shared
from bot.stripe_gateway import StripeFailure

logger = logging.getLogger(__name__)


class Ending(enum.Enum):
    RECORDED = "recorded"
    LET_GO = "let_go"
    NOT_YET = "not_yet"  # Stripe could not be asked, or the records not written: a later run tries again
    OTHERS = "others"  # someone else ended it meanwhile (a person, a webhook)


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
        ended: Counter[Ending] = Counter()
        for open_attempt in self.ledger.open_attempts(limit=limit) if self.connected else []:
            attempt = self.ledger.take_over(open_attempt)
            effect = self.ledger.effect_for(attempt) if attempt else None
            if attempt is None or effect is None:
                continue  # someone else is on it, or an action this version no longer knows
            try:
                ended[self._settle(attempt, effect)] += 1
            except Exception:  # one attempt's trouble must not stop the others; the next run tries again
                logger.exception("could not settle attempt %s", attempt.id)
                ended[Ending.NOT_YET] += 1
        return Settled(ended[Ending.RECORDED], ended[Ending.LET_GO], ended[Ending.NOT_YET])

    def _settle(self, attempt: Attempt, effect: Effect) -> Ending:
        try:
            made = effect.find()
        except StripeFailure as failure:
            logger.warning("could not ask Stripe about attempt %s: %s", attempt.id, failure.stripe_message)
            return Ending.NOT_YET
        if made is not None:
            summary = f"{attempt.done}: Stripe made it, though its answer was lost at the time"
            recorded = self.ledger.succeed(attempt, effect, made, summary) is not None
            return Ending.RECORDED if recorded else Ending.OTHERS
        summary = (
            f"{attempt.asked}: did not happen. Its answer from Stripe was lost, and Stripe never made it, so "
            "nothing changed; it can be asked for again"
        )
        return Ending.LET_GO if self.ledger.let_go(attempt, summary) else Ending.OTHERS

    def bot_made(self, session: Session, action_key: str, obj: Mapping[str, Any]) -> bool:
        """A refund or payment from Stripe carrying an attempt's key: record it as that attempt's outcome. False
        when no attempt of ours stands for it (it is then recorded like any other)."""
        attempt = self.ledger.attempt_by_key(session, action_key)
        effect = self.ledger.effect_for(attempt) if attempt else None
        if attempt is None or effect is None:
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
        self.ledger.succeed(
            attempt, effect, effect.made_from(obj), f"{attempt.done} (confirmed by Stripe)", session
        )
        return True
