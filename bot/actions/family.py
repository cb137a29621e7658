"""What every family of actions works with: the records, the ledger, who may act, Stripe, and the time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from bot.actions.ledger import Ledger
from bot.actions.permission import Permission
from bot.actions.stripe_access import StripeAccess
from bot.db import Database
from bot.shared import Shared


class Family(Shared):
    def __init__(
        self,
        db: Database,
        ledger: Ledger,
        permission: Permission,
        stripe: StripeAccess,
        clock: Callable[[], datetime],
    ) -> None:
        self.db = db
        self.ledger = ledger
        self.permission = permission
        self.stripe = stripe
        self.clock = clock
