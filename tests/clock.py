"""A clock for the bot that runs with real time and can be moved forward: a test says how long has passed
(for the ledger's in-flight window, say) without waiting for it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    def __init__(self) -> None:
        self.ahead = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead

    def advance(self, by: timedelta) -> None:
        self.ahead += by
