"""Stripe webhooks: verified on the raw body, each event processed once, the object it names re-read from Stripe.

Re-reading makes late, repeated and out-of-order deliveries harmless: whatever order events arrive in, the record
ends as Stripe has it now. The event id is stored in the same transaction as the changes, so an event that fails
half-way is not marked done and Stripe's retry processes it again.

A dispute's events (`charge.dispute.*`) record the dispute on its payment; once the transaction has committed, the
alerts due for it (opened, closed) are posted through `announce_dispute`, each claimed once per dispute and step.

No Stripe call happens inside that transaction (on SQLite it would hold the write lock for as long as Stripe takes):
the event's object, and a refunded charge's refunds, are read first; anything else the records need from Stripe (a
customer or subscription we have not seen yet, a card, a product) rolls the transaction back, is read, and the
event is applied again (bot.stripe_sync.Gathered).

Every signed delivery gets a final answer except while Stripe or our database cannot be reached (503, delivered
again): an object Stripe no longer has is recorded as gone (a customer unlinked, a subscription ended) and answered
200; a malformed event 400; what the database refuses of Stripe's data 200, logged and not stored.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import stripe
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from bot import stripe_sync
from bot.db import Database
from bot.faults import DatabaseUnavailable
from bot.models import StripeEvent
from bot.stripe_gateway import StripeFailure, StripeGateway

logger = logging.getLogger("customer_bot.webhooks")

HANDLED = frozenset(
    {
        "customer.created",
        "customer.updated",
        "customer.deleted",
        # A tax id added, changed or removed: the customer is read again, tax ids and all.
        "customer.tax_id.created",
        "customer.tax_id.updated",
        "customer.tax_id.deleted",
        "payment_method.attached",
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "charge.refunded",
        "invoice.paid",
        "invoice.payment_succeeded",
        "invoice.payment_failed",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        *(
            f"charge.dispute.{step}"
            for step in ("created", "updated", "closed", "funds_withdrawn", "funds_reinstated")
        ),
    }
)
DISPUTE_EVENTS = "charge.dispute."
TAX_ID_EVENTS = "customer.tax_id"  # the kind of these events: they name a tax id and are about its customer
TOLERANCE_SECONDS = 300
REFUNDS = "refunds_of_charge"  # read like one object: a charge's refunds, as Stripe lists them
_KINDS = {
    "customer": "customer",
    "payment_intent": "payment_intent",
    "invoice": "invoice",
    "customer.subscription": "subscription",
    "charge.dispute": "dispute",
}  # the kind of object an event names, as the gateway reads it


class StripeWebhooks:
    def __init__(
        self,
        db: Database,
        gateway: StripeGateway,
        secret: str,
        *,
        bot_made: stripe_sync.BotMade | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        announce_dispute: Callable[[str], bool] | None = None,
    ) -> None:
        self.db = db
        self.gateway = gateway
        self.secret = secret
        self.bot_made = (
            bot_made  # records what Stripe made for one of the bot's own requests (bot.actions.settling)
        )
        self.clock = clock
        # Posts what is due of a dispute's alerts (runtime.dispute_alerts), given its Stripe id; False when one
        # could not be posted and nothing went up, so the delivery is answered 503 and Stripe sends it again.
        self.announce_dispute = announce_dispute

    def handle(self, payload: bytes, signature: str | None) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body) for one delivery. Every answer but 503 is final: 503 only when Stripe or our
        database could not be reached, so that Stripe delivers again."""
        try:
            stripe.WebhookSignature.verify_header(payload, signature or "", self.secret, TOLERANCE_SECONDS)
        except (ValueError, stripe.SignatureVerificationError) as error:  # ValueError: a body not UTF-8
            logger.warning("refused a Stripe webhook: %s", error)
            return 400, {"error": "bad signature or payload"}
        try:
            event = json.loads(payload)
        except ValueError:
            return _malformed("the body is not JSON")
        problem = _event_problem(event)
        if problem:
            return _malformed(problem)
        event_id, event_type = event["id"], event["type"]
        if event_type not in HANDLED:
            return 200, {"ignored": event_type}
        data = event.get("data")
        obj = data.get("object") if isinstance(data, dict) else None
        problem = _object_problem(event_type, obj)
        if problem:
            return _malformed(f"{event_type} {event_id}: {problem}")
        try:
            answer = self._process(event_id, event_type, obj)
        except (DatabaseUnavailable, OperationalError) as error:
            # The database is down, locked or shedding load: it may take the event later, so ask for it again.
            logger.warning("could not reach the database for %s %s: %s", event_type, event_id, error)
            return 503, {"error": "the database is unavailable; deliver again later"}
        except (SQLAlchemyError, ValueError, TypeError, KeyError, AttributeError) as error:
            # What Stripe holds cannot be stored as it is: the same event would fail the same way every time.
            # Logged for whoever runs the bot; `customer-bot import-stripe` brings the record in once it is fixed.
            logger.exception("could not store %s %s; it is answered and not stored", event_type, event_id)
            return 200, {"not_stored": event_id, "error": type(error).__name__}
        # After the transaction, and on repeated deliveries too: each alert is claimed once per dispute and step, so
        # a repeat posts nothing, and a post that failed is made when Stripe delivers again.
        announcing = event_type.startswith(DISPUTE_EVENTS) and answer[0] == 200 and self.announce_dispute
        if announcing and not self.announce_dispute(obj["id"]):  # type: ignore[misc]
            return 503, {"error": "the dispute's alert could not be posted; deliver again later"}
        return answer

    def _process(self, event_id: str, event_type: str, obj: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self._processed(event_id):
            return 200, {"duplicate": event_id}  # a repeated delivery costs no Stripe call
        gathered = stripe_sync.Gathered()
        wanted = _rereads(event_type, obj)
        collided: IntegrityError | None = None
        for _try in range(stripe_sync.ROUNDS):
            try:
                self._read(gathered, wanted)
            except StripeFailure as failure:
                logger.warning(
                    "could not read from Stripe for %s %s: %s", event_type, event_id, failure.user_message
                )
                return 503, {"error": "Stripe did not answer; deliver again later"}
            collided = None
            try:
                with self.db.session() as session:
                    if session.get(StripeEvent, event_id) is not None:
                        return 200, {"duplicate": event_id}
                    session.add(StripeEvent(id=event_id, type=event_type, received_at=self.clock()))
                    session.flush()
                    finished_plan = _apply(session, event_type, obj, gathered.fetch, self.bot_made)
                break
            except stripe_sync.NotGathered as missing:
                wanted = [missing.key]  # rolled back: read it, then go again
            except stripe_sync.Gone as gone:
                return self._gone(event_id, event_type, gone.key)
            except IntegrityError as error:
                # Either this very event was processed at the same moment (then it is done), or another event
                # created the same customer or subscription first: then go again, and find it this time.
                if self._processed(event_id):
                    return 200, {"duplicate": event_id}
                wanted, collided = [], error
        else:
            if collided is not None:
                raise collided  # the same refusal every time: not a collision but what the data is
            logger.error(
                "event %s (%s) kept needing more from Stripe; it will be delivered again",
                event_id,
                event_type,
            )
            return 503, {"error": "busy; deliver again later"}
        if finished_plan:
            self._end_plan(finished_plan)
        return 200, {"processed": event_id}

    def _gone(self, event_id: str, event_type: str, key: stripe_sync.Key) -> tuple[int, dict[str, Any]]:
        """The event names, or needs, an object Stripe no longer has: record that where it means something (a
        customer unlinked, a subscription ended), mark the event done, and answer so it is not delivered again."""
        kind, object_id = key
        try:
            with self.db.session() as session:
                if session.get(StripeEvent, event_id) is not None:
                    return 200, {"duplicate": event_id}
                session.add(StripeEvent(id=event_id, type=event_type, received_at=self.clock()))
                if kind == "customer":
                    stripe_sync.customer_gone(session, object_id)
                elif kind == "subscription":
                    stripe_sync.subscription_gone(session, object_id, self.clock())
        except IntegrityError:
            return 200, {"duplicate": event_id}  # processed at the same moment
        logger.info("%s %s: %s %s is no longer in Stripe", event_type, event_id, kind, object_id)
        return 200, {"gone": f"{kind} {object_id}"}

    def _processed(self, event_id: str) -> bool:
        with self.db.session() as session:
            return session.get(StripeEvent, event_id) is not None

    def _read(self, gathered: stripe_sync.Gathered, wanted: list[stripe_sync.Key]) -> None:
        """Read from Stripe what the unit of work will look up. Called only with no transaction open."""
        for kind, object_id in wanted:
            gathered.read(kind, object_id, self._retrieve)

    def _retrieve(self, kind: str, object_id: str) -> dict[str, Any]:
        if kind == REFUNDS:
            refunds, _ = self.gateway.list_page("refund", charge=object_id)
            return {"data": refunds}
        return self.gateway.retrieve(kind, object_id)

    def _end_plan(self, subscription_id: str) -> None:
        """A payment plan is a subscription that the bot ends after its last instalment."""
        try:
            self.gateway.cancel_subscription(
                subscription_id, at_period_end=False, idempotency_key=f"plan-complete:{subscription_id}"
            )
        except StripeFailure as failure:
            logger.error(
                "could not end the finished payment plan %s: %s", subscription_id, failure.user_message
            )


def _malformed(problem: str) -> tuple[int, dict[str, Any]]:
    """A signed delivery that is not an event we can read: Stripe sends none such, so sending it again cannot
    help."""
    logger.warning("refused a signed Stripe webhook: %s", problem)
    return 400, {"error": problem}


_STRIPE_ID = re.compile(r"[A-Za-z0-9_]{1,255}")  # Stripe's ids: a prefix, an underscore, letters and digits


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and _STRIPE_ID.fullmatch(value) is not None


def _event_problem(event: Any) -> str | None:
    """What keeps a parsed body from being a Stripe event, or None."""
    if not isinstance(event, dict):
        return "the body is not a Stripe event object"
    if not _is_id(event.get("id")):
        return "the event has no valid id"
    if not isinstance(event.get("type"), str) or not event["type"]:
        return "the event has no type"
    return None


def _object_problem(event_type: str, obj: Any) -> str | None:
    """What keeps a handled event's data.object from naming what the event is about, or None."""
    if not isinstance(obj, dict):
        return "data.object is missing or not an object"
    if not _is_id(obj.get("id")):
        return "data.object has no valid id"
    customer = obj.get("customer")
    if (
        (event_type == "payment_method.attached" or event_type.startswith(TAX_ID_EVENTS))
        and customer is not None
        and not _is_id(stripe_sync.ref_id(customer))
    ):
        return "data.object.customer is not a customer id"
    return None


def _rereads(event_type: str, obj: dict[str, Any]) -> list[stripe_sync.Key]:
    """What an event names, to read again from Stripe before its unit of work (its payload may be stale)."""
    kind = event_type.rsplit(".", 1)[0]
    if event_type in ("customer.deleted", "payment_intent.payment_failed"):
        return []
    if kind in ("payment_method", TAX_ID_EVENTS):
        return [("customer", stripe_sync.ref_id(obj["customer"]))] if obj.get("customer") else []
    if event_type == "charge.refunded":
        return [("charge", obj["id"]), (REFUNDS, obj["id"])]
    return [(_KINDS[kind], obj["id"])]


def _apply(
    session: Session,
    event_type: str,
    obj: dict[str, Any],
    fetch: stripe_sync.Fetch,
    bot_made: stripe_sync.BotMade | None,
) -> str | None:
    """Bring the event's object in; returns the Stripe id of a payment plan whose last instalment was paid.
    `fetch` answers from what was read before the transaction (no Stripe call can happen here)."""
    kind = event_type.rsplit(".", 1)[0]
    if event_type == "customer.deleted":
        stripe_sync.customer_gone(session, obj["id"])
    elif kind == "customer":
        stripe_sync.sync_customer(session, fetch("customer", obj["id"]), fetch)
    elif kind in ("payment_method", TAX_ID_EVENTS):
        # A tax id with no customer is the account's own (Stripe sends those as `tax_id.*`): nothing of ours.
        if obj.get("customer"):
            stripe_sync.sync_customer(session, fetch("customer", stripe_sync.ref_id(obj["customer"])), fetch)
    elif event_type == "payment_intent.succeeded":
        stripe_sync.sync_payment_intent(session, fetch("payment_intent", obj["id"]), fetch, bot_made=bot_made)
    elif event_type == "charge.refunded":
        charge = {**fetch("charge", obj["id"]), "refunds": fetch(REFUNDS, obj["id"])}
        stripe_sync.sync_refunds(session, charge, bot_made=bot_made)
    elif kind == "invoice":
        invoice = fetch("invoice", obj["id"])
        return stripe_sync.sync_invoice(session, invoice, fetch, bot_made=bot_made).plan_finished
    elif kind == "customer.subscription":
        stripe_sync.sync_subscription(session, fetch("subscription", obj["id"]), fetch)
    elif kind == "charge.dispute":
        stripe_sync.sync_dispute(session, fetch("dispute", obj["id"]))
    # payment_intent.payment_failed: a failed one-off payment leaves nothing to record; invoice failures
    # arrive as invoice.payment_failed.
    return None
