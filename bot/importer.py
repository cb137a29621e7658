"""`customer-bot import-stripe`: backfill our records from an existing Stripe account.

Customers (with their default card), subscriptions and payment plans, invoices (payments, and the orders paid
ones produced), one-off payments (orders), refunds and disputes are listed 100 at a time with Stripe's cursors, in that
order so each object finds what it belongs to. After every page the cursor is saved with the page's rows, so an
interrupted import carries on where it stopped; every row is an upsert on Stripe's id, so running it again
duplicates nothing. Objects the list calls can embed are expanded, so the calls grow with pages, not objects.

No Stripe call happens while a page's transaction is open. The objects a page's rows look up beyond the list
(cards, products, payment intents, charges) are read between tries of the page: a try that meets one it does not
have is rolled back, the rest of the page is tried to find every other such object, all are read, and the page
is applied again; each object is read once for the whole import.

One object never stops the import. An object the database refuses, or one that needs an object Stripe no longer
has (a subscription of a deleted customer), rolls its page back; the page is applied again without it, and it
is named in the summary. Only a database that cannot be reached, or a Stripe that does not answer, stops the
import, which then carries on from the page it stopped at.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError

from bot import stripe_sync
from bot.db import Database
from bot.faults import DatabaseUnavailable
from bot.models import ImportProgress
from bot.stripe_gateway import StripeFailure, StripeGateway

logger = logging.getLogger("customer_bot.import")

STEPS: list[tuple[str, str, dict[str, Any]]] = [
    # A customer's tax ids come only when asked for (up to 10 embedded; more are listed on their own).
    ("customers", "customer", {"expand": ["data.invoice_settings.default_payment_method", "data.tax_ids"]}),
    ("subscriptions", "subscription", {"status": "all"}),
    # An invoice names its payment intent only in `payments`, left out unless expanded (API 2025-03-31.basil on).
    ("invoices", "invoice", {"expand": ["data.payments"]}),
    ("payments", "payment_intent", {"expand": ["data.latest_charge"]}),
    ("refunds", "refund", {}),
    ("disputes", "dispute", {}),  # after the payments they are of
]


# Errors that say something about one object (what Stripe holds, or how the database takes it), so the same object
# fails the same way every time; a database that cannot be reached or is busy (OperationalError) is not one.
_OBJECT_ERRORS = (SQLAlchemyError, ValueError, TypeError, KeyError, AttributeError, stripe_sync.Gone)
_TRANSIENT = (DatabaseUnavailable, OperationalError)
SHOWN_NOT_IMPORTED = 20  # the summary names this many; the log names every one


@dataclass(frozen=True)
class NotImported:
    kind: str  # as Stripe names it: customer, subscription, invoice, payment_intent, refund, dispute
    stripe_id: str
    reason: str


@dataclass(frozen=True)
class ImportSummary:
    counts: stripe_sync.SyncCounts
    pages: int
    lookups: int  # single-object calls (cards, products, failure reasons) beyond the list calls
    resumed: bool
    seconds: float
    stripe_seconds: float  # of which waiting for Stripe
    not_imported: list[NotImported] = field(default_factory=list)

    def lines(self) -> list[str]:
        kinds = sorted(set(self.counts.created) | set(self.counts.updated))
        rows = [
            f"{kind}: {self.counts.created.get(kind, 0):,} created, {self.counts.updated.get(kind, 0):,} updated"
            for kind in kinds
        ]
        calls = f"{self.pages:,} list pages and {self.lookups:,} lookups from Stripe"
        rows.append(calls + (" (carried on from an interrupted import)" if self.resumed else ""))
        if self.not_imported:
            rows.append(
                f"not imported: {len(self.not_imported):,} (everything else was; "
                "run the import again once the cause is fixed)"
            )
            rows += [f"  {n.kind} {n.stripe_id}: {n.reason}" for n in self.not_imported[:SHOWN_NOT_IMPORTED]]
            if len(self.not_imported) > SHOWN_NOT_IMPORTED:
                rows.append(
                    f"  and {len(self.not_imported) - SHOWN_NOT_IMPORTED:,} more, each named in the log"
                )
        return rows


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
            gathered.read(kind, object_id, lambda k, i: timed(gateway.retrieve, k, i))

    not_imported: list[NotImported] = []

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
            counts.add(_apply_page(db, kind, rows, progress_row, gathered, read, bot_made, not_imported))
            done += len(rows)
            if progress is not None:
                progress(step, done)
    return ImportSummary(
        counts, pages, lookups, resumed, time.perf_counter() - started, waiting, not_imported
    )


def _apply_page(
    db: Database,
    kind: str,
    rows: list[dict[str, Any]],
    progress_row: ImportProgress,
    gathered: stripe_sync.Gathered,
    read: Callable[[set[stripe_sync.Key]], None],
    bot_made: stripe_sync.BotMade | None,
    not_imported: list[NotImported],
) -> stripe_sync.SyncCounts:
    """Apply a page's rows and save its cursor in one transaction, reading first what they look up; what it
    created and updated. A row that cannot be stored is left out (named in `not_imported`) and the page applied
    again without it: one transaction per try, no savepoints (see bot.db)."""
    rows = list(rows)
    rounds_of_reads = 0
    collided: set[str] = set()  # rows refused once as duplicates: a webhook may have stored them meanwhile
    while True:
        counts = stripe_sync.SyncCounts()
        applied = 0
        try:
            with db.session() as session:
                for obj in rows:
                    _apply(session, kind, obj, gathered.fetch, counts, bot_made)
                    session.flush()  # so that a refusal is this row's, not the next one's
                    applied += 1
                session.merge(progress_row)
            return counts
        except stripe_sync.NotGathered as missing:
            rounds_of_reads += 1
            if rounds_of_reads >= stripe_sync.ROUNDS:
                raise StripeFailure(
                    f"The import stopped at the page of {kind.replace('_', ' ')}s ending with "
                    f"{progress_row.cursor}: after {stripe_sync.ROUNDS} tries, its objects still led to more "
                    "in Stripe."
                ) from None
            # Rolled back. Find what the rest of the page looks up too, so that one round of reads serves it.
            read({missing.key} | _lookups(db, kind, rows[applied + 1 :], gathered.fetch, bot_made))
        except _TRANSIENT:
            raise
        except _OBJECT_ERRORS as error:
            if applied == len(rows):
                raise  # refused with every row applied: the page itself, not one of its objects
            obj = rows[applied]
            if isinstance(error, IntegrityError) and obj.get("id") not in collided:
                collided.add(obj.get("id"))  # rolled back: once more, finding what was stored meanwhile
                continue
            skipped = NotImported(kind, str(obj.get("id")), _why(error, kind.replace("_", " ")))
            not_imported.append(skipped)
            logger.warning("not imported: %s %s: %s", kind, skipped.stripe_id, skipped.reason, exc_info=error)
            del rows[applied]


def _why(error: Exception, what: str) -> str:
    """A line saying why an object could not be imported."""
    if isinstance(error, stripe_sync.Gone):
        kind, object_id = error.key
        return f"its {kind.replace('_', ' ')} {object_id} is no longer in Stripe"
    cause = error.orig if isinstance(error, DBAPIError) else error
    words = f"{type(cause).__name__}: {(str(cause).strip().splitlines() or [''])[0][:200]}"
    if isinstance(error, SQLAlchemyError):
        return f"the database refused it ({words})"
    return f"Stripe's {what} could not be read ({words})"


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
        except _TRANSIENT:
            raise
        except (_TriedOnly, *_OBJECT_ERRORS):
            pass  # a row that cannot be stored is left out when the page is applied
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
        stripe_sync.sync_invoice(session, obj, fetch, counts, bot_made=bot_made)
    elif kind == "payment_intent":
        stripe_sync.sync_payment_intent(session, obj, fetch, counts, bot_made=bot_made)
    elif kind == "refund":
        stripe_sync.sync_refund(session, obj, counts, bot_made=bot_made)
    elif kind == "dispute":
        stripe_sync.sync_dispute(session, obj, counts)
