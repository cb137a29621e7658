"""`customer-bot import-stripe`: backfill our records from an existing Stripe account.

Customers (with their default card), subscriptions and payment plans, invoices (payments, and the orders paid
ones produced), one-off payments (orders) and refunds are listed 100 at a time with Stripe's cursors, in that
order so each object finds what it belongs to. After every page the cursor is saved with the page's rows, so an
interrupted import carries on where it stopped; every row is an upsert on Stripe's id, so running it again
duplicates nothing. Objects the list calls can embed are expanded, so the calls grow with pages, not objects.

No Stripe call happens while a page's transaction is open. The objects a page's rows look up beyond the list
(cards, products, payment intents, charges) are read between tries of the page: a try that meets one it does not
have is rolled back, the rest of the page is tried to find every other such object, all are read, and the page
is applied again; each object is read once for the whole import.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot import stripe_sync
from bot.db import Database
from bot.models import ImportProgress
from bot.stripe_gateway import StripeFailure, StripeGateway

STEPS: list[tuple[str, str, dict[str, Any]]] = [
    ("customers", "customer", {"expand": ["data.invoice_settings.default_payment_method"]}),
    ("subscriptions", "subscription", {"status": "all"}),
    ("invoices", "invoice", {}),
    ("payments", "payment_intent", {"expand": ["data.latest_charge"]}),
    ("refunds", "refund", {}),
]


@dataclass(frozen=True)
class ImportSummary:
    counts: stripe_sync.SyncCounts
    pages: int
    lookups: int  # single-object calls (cards, products, failure reasons) beyond the list calls
    resumed: bool
    seconds: float
    stripe_seconds: float  # of which waiting for Stripe

    def lines(self) -> list[str]:
        kinds = sorted(set(self.counts.created) | set(self.counts.updated))
        rows = [
            f"{kind}: {self.counts.created.get(kind, 0):,} created, {self.counts.updated.get(kind, 0):,} updated"
            for kind in kinds
        ]
        calls = f"{self.pages:,} list pages and {self.lookups:,} lookups from Stripe"
        return [*rows, calls + (" (carried on from an interrupted import)" if self.resumed else "")]


def import_stripe(
    db: Database,
    gateway: StripeGateway,
    *,
    bot_made: stripe_sync.BotMade | None = None,
    progress: Callable[[str, int], None] | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ImportSummary:
    """Bring every object of the Stripe account into our records; `progress(step, objects so far)` per page.
    `bot_made` settles the bot's own requests whose refunds and payments the import meets."""
    counts = stripe_sync.SyncCounts()
    resumed = _start(db, clock())
    pages = 0
    gathered = stripe_sync.Gathered()
    lookups = 0
    started = time.perf_counter()
    waiting = 0.0

    def timed(call, *args, **kwargs):
        nonlocal waiting
        before = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            waiting += time.perf_counter() - before

    def read(wanted: set[stripe_sync.Key]) -> None:
        nonlocal lookups
        for kind, object_id in sorted(wanted):
            lookups += 1
            gathered.add(kind, object_id, timed(gateway.retrieve, kind, object_id))

    for step, kind, params in STEPS:
        with db.session() as session:
            state = session.get(ImportProgress, step)
            cursor, finished = (state.cursor, state.finished) if state else (None, False)
        done = 0
        while not finished:
            rows, next_cursor = timed(gateway.list_page, kind, starting_after=cursor, **params)
            pages += 1
            cursor = rows[-1]["id"] if rows else cursor
            finished = next_cursor is None
            progress_row = ImportProgress(kind=step, cursor=cursor, finished=finished, updated_at=clock())
            counts.add(_apply_page(db, kind, rows, progress_row, gathered, read, bot_made))
            done += len(rows)
            if progress is not None:
                progress(step, done)
    return ImportSummary(counts, pages, lookups, resumed, time.perf_counter() - started, waiting)


def _apply_page(
    db: Database,
    kind: str,
    rows: list[dict[str, Any]],
    progress_row: ImportProgress,
    gathered: stripe_sync.Gathered,
    read: Callable[[set[stripe_sync.Key]], None],
    bot_made: stripe_sync.BotMade | None,
) -> stripe_sync.SyncCounts:
    """Apply a page's rows and save its cursor in one transaction, reading first what they look up; what it
    created and updated."""
    for _try in range(stripe_sync.ROUNDS):
        counts = stripe_sync.SyncCounts()
        applied = 0
        try:
            with db.session() as session:
                for obj in rows:
                    _apply(session, kind, obj, gathered.fetch, counts, bot_made)
                    applied += 1
                session.merge(progress_row)
            return counts
        except stripe_sync.NotGathered as missing:
            # Rolled back. Find what the rest of the page looks up too, so that one round of reads serves it.
            read({missing.key} | _lookups(db, kind, rows[applied + 1 :], gathered.fetch, bot_made))
    raise StripeFailure(
        f"The import stopped at the page of {kind.replace('_', ' ')}s ending with {progress_row.cursor}: "
        f"after {stripe_sync.ROUNDS} tries, its objects still led to more in Stripe."
    )


class _TriedOnly(Exception):
    """Leaves a unit of work without committing it."""


def _lookups(
    db: Database,
    kind: str,
    rows: list[dict[str, Any]],
    fetch: stripe_sync.Fetch,
    bot_made: stripe_sync.BotMade | None,
) -> set[stripe_sync.Key]:
    """The objects these rows look up that were not read yet, each row tried in a transaction of its own and
    rolled back. A row stops at its first missing object, half applied, so it must not share a transaction with
    the next. Not a savepoint per row: Python's sqlite3 driver begins a transaction only at the first write, so
    releasing a savepoint taken before it would commit."""
    missing: set[stripe_sync.Key] = set()
    for obj in rows:
        try:
            with db.session() as session:
                _apply(session, kind, obj, fetch, stripe_sync.SyncCounts(), bot_made)
                raise _TriedOnly
        except stripe_sync.NotGathered as lookup:
            missing.add(lookup.key)
        except _TriedOnly:
            pass
    return missing


def _start(db: Database, now: datetime) -> bool:
    """Carry on an interrupted import, or start a new one from the first page; True when carrying on."""
    with db.session() as session:
        states = {state.kind: state for state in session.query(ImportProgress)}
        if states and not all(states.get(step) and states[step].finished for step, _, _ in STEPS):
            return True
        for state in states.values():
            session.delete(state)
    return False


def _apply(
    session,
    kind: str,
    obj: dict[str, Any],
    fetch: stripe_sync.Fetch,
    counts,
    bot_made: stripe_sync.BotMade | None,
) -> None:
    if kind == "customer":
        if not obj.get("deleted"):
            stripe_sync.sync_customer(session, obj, fetch, counts)
    elif kind == "subscription":
        stripe_sync.sync_subscription(session, obj, fetch, counts)
    elif kind == "invoice":
        stripe_sync.sync_invoice(session, obj, fetch, counts)
    elif kind == "payment_intent":
        stripe_sync.sync_payment_intent(session, obj, fetch, counts, bot_made=bot_made)
    elif kind == "refund":
        stripe_sync.sync_refund(session, obj, counts, bot_made=bot_made)
