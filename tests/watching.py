"""Test parts that catch a Stripe call made while a database transaction is open: `Transactions` counts the units
of work open on each thread, `WatchedGateway` notes every Stripe request and which of them ran inside one."""

from __future__ import annotations

import contextlib
import threading

import pytest

from bot.db import Database
from bot.stripe_gateway import StripeGateway


class Transactions:
    """Wraps a database's `session`, so that each thread knows how many units of work it has open."""

    def __init__(self, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
        self._here = threading.local()
        self._lock = threading.Lock()
        self.begun = 0  # units of work begun so far, on any thread
        unwatched = db.session

        @contextlib.contextmanager
        def session():
            with self._lock:
                self.begun += 1
            self._here.open = self.open_here + 1
            try:
                with unwatched() as session:
                    yield session
            finally:
                self._here.open -= 1

        monkeypatch.setattr(db, "session", session)

    @property
    def open_here(self) -> int:
        return getattr(self._here, "open", 0)


class WatchedGateway(StripeGateway):
    """The gateway on the same client, noting each request; `inside_transaction` lists those made while the
    calling thread had a unit of work open (there must be none). `read_rounds` groups the single-object reads
    by the units of work between them."""

    def __init__(self, gateway: StripeGateway, transactions: Transactions) -> None:
        super().__init__(gateway._client, gateway.limits)
        self.transactions = transactions
        self.requests: list[str] = []
        self.inside_transaction: list[str] = []
        self.retrieved: list[tuple[str, str]] = []
        self.read_rounds: list[list[tuple[str, str]]] = []
        self._round_begun_after = -1

    def _call(self, what, noun, request):  # every Stripe request passes through here
        self.requests.append(what)
        if self.transactions.open_here:
            self.inside_transaction.append(what)
        return super()._call(what, noun, request)

    def retrieve(self, kind: str, object_id: str):
        self.retrieved.append((kind, object_id))
        if self._round_begun_after != self.transactions.begun:
            self._round_begun_after = self.transactions.begun
            self.read_rounds.append([])
        self.read_rounds[-1].append((kind, object_id))
        return super().retrieve(kind, object_id)
