"""Changing a subscription or payment plan: cancel (now or at the period's end), pause payments (until a date or
until resumed), resume them, undo a scheduled cancel or a pause, move the next bill date, and a payment plan's
status, which is one of those.

Undo cancel takes back a cancel that has not happened yet (at the period's end, or on a date): the subscription goes
on as before. Undo pause takes back a pause before it has voided a bill. Stripe has no pause that starts later: a
pause stops collecting at once, but it moves nothing until the next bill falls due, which Stripe then voids. So a
pause whose newest bill is not a voided one has taken nothing yet, and undoing it leaves the subscription as if it
had never been paused; once a bill was voided, Resume payments ends the pause (that bill stays voided).

Pausing stops the bills that fall due while paused (Stripe voids them), not a bill that already failed: Stripe goes
on retrying that one. So the pause says what happens to such a bill: kept retrying (the default: it moves no money
and loses nothing), voided (Stripe stops retrying it and the customer no longer owes it), or marked uncollectible
(written off: Stripe stops retrying it; it stays owed). Each bill voided or written off is an attempt of its own in
the ledger, after the pause's (see `SubscriptionChanges.pause`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, ClassVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.actions.audit import AuditEntry
from bot.actions.family import Family
from bot.actions.ledger import Attempt, Intent, Made
from bot.actions.notes import clean_note, note_problems
from bot.actions.outcomes import Done, Failed, Invalid, Pending, Problems
from bot.actions.stripe_access import StripeSide
from bot.models import Payment, PaymentStatus, Recurring
from bot.money import Money
from bot.records import RecordNotFound, recurring_record
from bot.stripe_gateway import StripeFailure, StripeGateway
from bot.stripe_sync import Fetch, Gathered, Gone, NotGathered, apply_subscription_state, sync_invoice
from bot.viewmodels import CardState, FailedBill, PauseForm, RecurringRecord

logger = logging.getLogger(__name__)

# A payment plan's statuses, as its Change status form offers them, and in words.
PLAN_STATUSES = ("active", "paused", "canceled_period_end", "canceled_now")
_STATUS_WORDS = {
    "active": "active",
    "paused": "paused",
    "canceled_period_end": "canceled at the end of the period",
    "canceled_now": "canceled",
}
# What each change is called in the audit trail and the ledger.
CANCEL, PAUSE, RESUME, REACTIVATE, MOVE_BILL_DATE = (
    "cancel",
    "pause_payments",
    "resume_payments",
    "reactivate",
    "move_next_bill_date",
)
UNDO_CANCEL, UNDO_PAUSE = "undo_cancel", "undo_pause"
CHANGES = (CANCEL, PAUSE, RESUME, REACTIVATE, MOVE_BILL_DATE, UNDO_CANCEL, UNDO_PAUSE)

# What a pause does with a bill that already failed, as the pause form offers it (keep retrying is the default),
# and the ledger's action for each of the other two: one attempt per bill.
KEEP_RETRYING, STOP_RETRYING, WRITE_OFF = "keep_retrying", "void", "mark_uncollectible"
BILL_CHOICES = (KEEP_RETRYING, STOP_RETRYING, WRITE_OFF)
VOID_BILL, WRITE_OFF_BILL = "void_failed_bill", "write_off_failed_bill"
BILL_CHANGES = (VOID_BILL, WRITE_OFF_BILL)
_BILL_ACTION = {STOP_RETRYING: VOID_BILL, WRITE_OFF: WRITE_OFF_BILL}
# The invoice's status once each is done, as Stripe shows it.
_BILL_LEFT_AS = {VOID_BILL: "void", WRITE_OFF_BILL: "uncollectible"}
# In words, {} being the bill ("$20.00 bill of Jan 1, 2027"): what is asked, what was done, and what was not.
_BILL_WORDS = {
    VOID_BILL: ("void the failed {}", "voided the failed {}", "was not voided"),
    WRITE_OFF_BILL: (
        "mark the failed {} as uncollectible",
        "marked the failed {} as uncollectible (written off)",
        "was not written off",
    ),
}
MAX_FAILED_BILLS = 10  # the failed bills one pause acts on, the oldest first


def pause_problems(until_a_date: bool, resumes_on: date | None, today: date) -> Problems:
    if until_a_date and (resumes_on is None or resumes_on <= today):
        return {"resumes_at": "Choose a date after today, or pause until you resume them."}
    return {}


def failed_bill_problems(choice: str | None, bills_seen: Sequence[int]) -> Problems:
    """`choice`: what to do with the failed bills the form showed (`bills_seen`); None when it showed none."""
    if choice is None or choice == KEEP_RETRYING:
        return {}
    if choice not in BILL_CHOICES or not bills_seen:
        return {"failed_bill": "Choose one of the choices offered for the failed bill."}
    return {}


def bill_date_problems(day: date | None, today: date) -> Problems:
    if day is None or day <= today:
        return {"next_bill_date": "Choose a date after today."}
    return {}


def undo_problems(action: str, record: RecurringRecord) -> Problems:
    """Undo cancel and Undo pause need something to undo (see the module's docstring); the record's own words."""
    if action == UNDO_CANCEL and not record.summary.cancelling:
        return {"record": f"{record.summary.product} has no cancel scheduled; there is nothing to undo."}
    if action == UNDO_PAUSE and not record.pause_undoable:
        if record.summary.payments_paused:
            return {
                "record": "The pause has already voided a bill, so it can't be undone: use Resume payments."
            }
        return {"record": f"Payments of {record.summary.product} are not paused; there is nothing to undo."}
    return {}


def plan_status_problems(status: str | None) -> Problems:
    return {} if status in PLAN_STATUSES else {"status": "Choose one of the statuses offered."}


@dataclass(frozen=True)
class _Change:
    action: str
    params: dict[str, Any]  # JSON: what the change needs besides the subscription
    asked: str  # "cancel {} at the end of the period": {} is the subscription's name
    done: str
    # What Stripe is sent besides, read from the record as it stands (the state `seen` already pins): not part of
    # the request's identity, so the same request asked again after it was made is still the same one.
    sent: Mapping[str, Any] = field(default_factory=dict)


class SubscriptionChanges(Family):
    def today(self) -> date:
        return self.clock().date()

    def first_day(self) -> date:
        """The first date a pause may end on or a bill may fall on: the rules above refuse today and before."""
        return self.today() + timedelta(days=1)

    def form(
        self, actor: str, action: str, recurring_id: int, back: CardState | None = None
    ) -> RecurringRecord:
        """The record a change's form is about; Invalid when it has ended (there is nothing to change)."""
        self.permission.require(actor, action, "recurring", recurring_id)
        record = self._record(recurring_id, back)
        if record.summary.ended:
            raise Invalid(f"{record.summary.product} has already ended; there is nothing to change.")
        return record

    def cancel(
        self, actor: str, recurring_id: int, *, at_period_end: bool, seen: str, note: str | None = None
    ) -> Done | Pending:
        when = "at the end of the period" if at_period_end else "now"
        change = _Change(
            CANCEL, {"at_period_end": at_period_end}, f"cancel {{}} {when}", f"canceled {{}} {when}"
        )
        return self._change(actor, recurring_id, change, seen, note=note)

    def pause_form(self, actor: str, recurring_id: int, back: CardState | None = None) -> PauseForm:
        """The record the pause form is about, and its failed bills that Stripe is still retrying."""
        record = self.form(actor, PAUSE, recurring_id, back)
        with self.db.session() as session:
            bills = _failed_bills(session, recurring_id)
        return PauseForm(record, [b.shown for b in bills[:MAX_FAILED_BILLS]], len(bills) > MAX_FAILED_BILLS)

    def pause(
        self,
        actor: str,
        recurring_id: int,
        *,
        resumes_on: date | None,
        seen: str,
        bill: str | None = None,
        bills_seen: Sequence[int] = (),
        note: str | None = None,
    ) -> Done | Pending:
        """Pause payments, and do `bill` (one of BILL_CHOICES; None: the form showed no failed bill) with the
        failed bills the form showed (`bills_seen`, payment ids).

        The pause goes to Stripe first, each bill after it. Voiding or writing off a bill cannot be undone, and
        it belongs to the pause: done first, it would leave a bill given up on a subscription that goes on billing
        if the pause then failed. This way round, a pause that fails leaves everything as it was, and a bill that
        fails after the pause leaves that bill as it was, retried as before (the safe default). Each is an attempt
        of its own, so asking the very same request again (a double click, or Try again) pauses once and voids
        once: what was done is answered as done, and only what was not is sent."""
        problems = {
            **pause_problems(resumes_on is not None, resumes_on, self.today()),
            **failed_bill_problems(bill, bills_seen),
        }
        until = f"until {resumes_on:%b %-d, %Y}" if resumes_on else "until resumed"
        resumes_at = datetime.combine(resumes_on, time(), tzinfo=UTC).isoformat() if resumes_on else None
        change = _Change(
            PAUSE,
            {"resumes_at": resumes_at},
            f"pause payments of {{}} {until}",
            f"paused payments of {{}} {until}",
        )
        if bill not in _BILL_ACTION:  # kept retrying: nothing to ask of Stripe for the bill
            paused = self._change(actor, recurring_id, change, seen, problems, note=note)
            return self._still_retried(paused, recurring_id)
        self.permission.require(actor, PAUSE, "recurring", recurring_id)
        with self.db.session() as session:
            now_failed = _failed_bills(session, recurring_id)[:MAX_FAILED_BILLS]
            bills = _bills_by_id(session, recurring_id, bills_seen)
            name = _name(recurring_record(session, recurring_id, None, payments_shown=0))
        if [b.payment_id for b in now_failed] != list(bills_seen):
            # Checked before anything is sent; an identical request already under way is answered as it stands
            # (the ledger's rule), so a double click or a retry is not refused for what its first try did.
            problems["failed_bill"] = (
                "The failed bills changed since you opened this form (one was paid, or another failed). "
                "Close it and open it again."
            )
        paused = self._change(actor, recurring_id, change, seen, problems, note=note)
        action = _BILL_ACTION[bill]
        if isinstance(paused, Pending):
            asked, _, _ = _BILL_WORDS[action]
            bills_words = _listed(bills)
            return replace(
                paused,
                why=f"{paused.why} Nothing was done yet to the failed {bills_words}: that waits for the pause.",
                left=(
                    f"Try again in a few minutes to {asked.format(bills_words)}: once the pause is confirmed, "
                    "only that is sent to Stripe; the pause is not sent twice."
                ),
            )
        was_paused = f"payments of {name} were already paused {until}"
        return self._settle_bills(actor, paused, was_paused, action, bills)

    def _settle_bills(
        self, actor: str, paused: Done, was_paused: str, action: str, bills: list[_Bill]
    ) -> Done | Pending:
        """Void or write off each bill, after the pause succeeded; say exactly which part happened."""
        recurring_id = paused.record[1]
        asked, done, not_done = _BILL_WORDS[action]
        parts = [was_paused if paused.already else paused.summary]
        all_already = paused.already
        left: list[str] = []
        waiting: list[Pending] = []
        for bill in bills:
            intent = Intent(
                actor=actor,
                action=action,
                target=("recurring", recurring_id),
                # The invoice alone: whoever asks, and from whichever form, a bill is voided (or written off) once.
                identity={"invoice": bill.invoice_id},
                asked=asked.format(bill.words),
                done=f"{done.format(bill.words)}: Stripe no longer retries it",
                customer_id=paused.customer_id,
                record=paused.record,
                request={"invoice": bill.invoice_id, "payment": bill.payment_id},
            )
            problems = (
                {}
                if bill.failed
                else {"failed_bill": "it is no longer failed (it was paid or voided since)."}
            )
            try:
                outcome = self.ledger.perform(intent, problems)
            except Invalid as invalid:
                left.append(f"The failed {bill.words} {not_done}: {invalid.message}")
                continue
            except Failed as failed:
                left.append(
                    f"The failed {bill.words} {not_done}, so Stripe goes on retrying it: {failed.message} "
                    f"Try again to {asked.format('bill')}; the pause is not sent again."
                )
                continue
            all_already = all_already and isinstance(outcome, Done) and outcome.already
            if isinstance(outcome, Pending):
                waiting.append(outcome)
            elif outcome.already:
                parts.append(f"{done.format(bill.words)} before this request")
            else:
                parts.append(outcome.summary)
        said = "; ".join(parts)
        if waiting:
            return Pending(
                " and ".join(p.summary for p in waiting),
                paused.customer_id,
                paused.record,
                f"{said[:1].upper()}{said[1:]}: that is done. {waiting[0].why}",
                left=" ".join(left) or None,
            )
        return Done(said, paused.customer_id, paused.record, already=all_already, left=" ".join(left) or None)

    def _still_retried(self, paused: Done | Pending, recurring_id: int) -> Done | Pending:
        """A pause that keeps the failed bills retried says so, so nobody thinks the pause stopped them."""
        if isinstance(paused, Pending):
            return paused
        with self.db.session() as session:
            bills = _failed_bills(session, recurring_id)
        if not bills:
            return paused
        retried = "is still retried" if len(bills) == 1 else "are still retried"
        return replace(
            paused, summary=f"{paused.summary}; the failed {_listed(bills)} {retried} by Stripe as scheduled"
        )

    def undo_form(
        self, actor: str, action: str, recurring_id: int, back: CardState | None = None
    ) -> RecurringRecord:
        """The record Undo cancel's or Undo pause's confirmation is about; Invalid when there is nothing to undo."""
        record = self.form(actor, action, recurring_id, back)
        problems = undo_problems(action, self._record(recurring_id, back, payments_shown=1))
        if problems:
            raise Invalid.of(problems)
        return record

    def undo_cancel(
        self, actor: str, recurring_id: int, *, seen: str, note: str | None = None
    ) -> Done | Pending:
        """Take back a scheduled cancel: at the period's end (`cancel_at_period_end=false`, which clears the
        `cancel_at` Stripe set with it) or on a date (`cancel_at` unset)."""
        record = self._record(recurring_id, payments_shown=1)
        on_a_date = not record.summary.cancel_at_period_end
        change = _Change(
            UNDO_CANCEL,
            {},
            "undo the scheduled cancel of {}",
            "undid the scheduled cancel of {}: it goes on as before",
            sent={"on_a_date": on_a_date},
        )
        return self._change(actor, recurring_id, change, seen, undo_problems(UNDO_CANCEL, record), note=note)

    def undo_pause(
        self, actor: str, recurring_id: int, *, seen: str, note: str | None = None
    ) -> Done | Pending:
        """Take back a pause that has voided no bill yet (`pause_collection=""`)."""
        record = self._record(recurring_id, payments_shown=1)
        change = _Change(
            UNDO_PAUSE,
            {},
            "undo the pause of {}",
            "undid the pause of {}: it bills as scheduled",
        )
        return self._change(actor, recurring_id, change, seen, undo_problems(UNDO_PAUSE, record), note=note)

    def resume(self, actor: str, recurring_id: int, *, seen: str) -> Done | Pending:
        change = _Change(RESUME, {}, "resume payments of {}", "resumed payments of {}")
        return self._change(actor, recurring_id, change, seen)

    def move_next_bill_date(
        self, actor: str, recurring_id: int, *, to: date, seen: str, note: str | None = None
    ) -> Done | Pending:
        problems = bill_date_problems(to, self.today())
        when = datetime.combine(to, time(12), tzinfo=UTC)  # noon UTC falls on that date in most time zones
        change = _Change(
            MOVE_BILL_DATE,
            {"to": when.isoformat()},
            f"move the next bill date of {{}} to {to:%b %-d, %Y}",
            f"moved the next bill date of {{}} to {to:%b %-d, %Y}",
        )
        return self._change(actor, recurring_id, change, seen, problems, note=note)

    def change_plan_status(
        self, actor: str, recurring_id: int, *, status: str, seen: str, note: str | None = None
    ) -> Done | Pending:
        """Move a payment plan to `status`, by whichever change that takes: back to Active undoes a scheduled cancel
        and ends a pause together; the status it already has changes nothing, and says so."""
        problems = plan_status_problems(status) | note_problems(note)
        if problems:
            self.permission.require(actor, "change_plan_status", "recurring", recurring_id)
            raise Invalid.of(problems)
        record = self._record(recurring_id)
        current = record.summary.plan_status
        if status == current:
            self.permission.require(actor, "change_plan_status", "recurring", recurring_id)
            summary = f"{_name(record)} is already {_STATUS_WORDS[status]}: nothing was changed"
            entry = AuditEntry(
                actor,
                "change_plan_status",
                "recurring",
                recurring_id,
                "already_done",
                summary,
                note=clean_note(note),
            )
            self.ledger.audit.write(entry)
            return Done(summary, record.back.customer_id, ("recurring", recurring_id), already=True)
        if status == "active":
            change = _Change(REACTIVATE, {}, "set {} back to active", "set {} back to active")
            return self._change(actor, recurring_id, change, seen, note=note)
        if status == "paused":
            return self.pause(actor, recurring_id, resumes_on=None, seen=seen, note=note)
        return self.cancel(
            actor, recurring_id, at_period_end=status == "canceled_period_end", seen=seen, note=note
        )

    def _change(
        self,
        actor: str,
        recurring_id: int,
        change: _Change,
        seen: str,
        problems: Problems | None = None,
        *,
        note: str | None = None,
    ) -> Done | Pending:
        self.permission.require(actor, change.action, "recurring", recurring_id)
        self.stripe.require(actor, change.action, "recurring", recurring_id)
        record = self._record(recurring_id)
        problems = dict(problems or {}) | note_problems(note)
        note = clean_note(note)
        product = record.summary.product
        if record.fingerprint != seen:
            problems["record"] = "This changed since you opened it. Close it and open the record again."
        elif record.summary.ended:
            problems["record"] = f"{product} has already ended; there is nothing to change."
        elif record.stripe_subscription_id is None:
            problems["record"] = (
                f"{product} is not linked to a Stripe subscription, so it can't be changed here."
            )
        name = _name(record)
        intent = Intent(
            actor=actor,
            action=change.action,
            target=("recurring", recurring_id),
            identity={"params": change.params, "seen": seen},  # the note says why, not what: not part of it
            asked=change.asked.format(name),
            done=change.done.format(name),
            customer_id=record.back.customer_id,
            record=("recurring", recurring_id),
            request={"subscription": record.stripe_subscription_id, **change.params, **change.sent},
            note=note,
        )
        return self.ledger.perform(intent, problems)

    def _record(
        self, recurring_id: int, back: CardState | None = None, *, payments_shown: int = 0
    ) -> RecurringRecord:
        with self.db.session() as session:
            return recurring_record(session, recurring_id, back, payments_shown=payments_shown)


def _name(record: RecurringRecord) -> str:
    return f"{record.summary.product} ({record.customer_name})"


# Failed bills -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Bill:
    payment_id: int
    invoice_id: str
    amount: Money
    due_at: datetime
    failed: bool  # as our records have it now

    @property
    def words(self) -> str:
        return f"{self.amount.format()} bill of {self.due_at:%b %-d, %Y}"

    @property
    def shown(self) -> FailedBill:
        return FailedBill(self.payment_id, self.amount, self.due_at)


_BILL_COLUMNS = (
    Payment.id,
    Payment.stripe_invoice_id,
    Payment.amount,
    Payment.currency,
    Payment.due_at,
    Payment.status,
)


def _bill(row) -> _Bill:
    return _Bill(
        row.id,
        row.stripe_invoice_id,
        Money(row.amount, row.currency),
        row.due_at,
        row.status == PaymentStatus.FAILED.value,
    )


def _failed_bills(session: Session, recurring_id: int) -> list[_Bill]:
    """The bills of a subscription or plan that failed and that Stripe is still retrying, the oldest first (one
    more than a pause acts on, to tell there are more). Only bills from Stripe: the others have nothing to stop."""
    rows = session.execute(
        select(*_BILL_COLUMNS)
        .where(
            Payment.recurring_id == recurring_id,
            Payment.status == PaymentStatus.FAILED.value,
            Payment.stripe_invoice_id.is_not(None),
        )
        .order_by(Payment.due_at, Payment.id)
        .limit(MAX_FAILED_BILLS + 1)
    ).all()
    return [_bill(row) for row in rows]


def _bills_by_id(session: Session, recurring_id: int, payment_ids: Sequence[int]) -> list[_Bill]:
    """The bills a form showed, in its order, as our records have them now (of this subscription only)."""
    if not payment_ids:
        return []
    rows = session.execute(
        select(*_BILL_COLUMNS).where(
            Payment.recurring_id == recurring_id,
            Payment.id.in_(payment_ids),
            Payment.stripe_invoice_id.is_not(None),
        )
    ).all()
    found = {row.id: _bill(row) for row in rows}
    return [found[i] for i in payment_ids if i in found]


def _listed(bills: Sequence[_Bill]) -> str:
    """The bills after "the failed": "$20.00 bill of Jan 1, 2027", or "bills ($20.00 of Jan 1, $20.00 of …)"."""
    if len(bills) == 1:
        return bills[0].words
    return "bills (" + ", ".join(f"{b.amount.format()} of {b.due_at:%b %-d, %Y}" for b in bills) + ")"


@dataclass(frozen=True)
class SubscriptionEffect(StripeSide):
    """A change to a Stripe subscription, and the same change to our record of it."""

    resend_first: ClassVar[bool] = False

    action: str
    recurring_id: int
    request: Mapping[str, Any]

    @classmethod
    def of(cls, gateway: StripeGateway | None, attempt: Attempt) -> SubscriptionEffect:
        return cls(gateway, attempt.action, attempt.target[1], attempt.request)

    def call(self, idempotency_key: str) -> Made:
        gateway, subscription = self.stripe, self.request["subscription"]
        if self.action == CANCEL:
            at_end = bool(self.request["at_period_end"])
            obj = gateway.cancel_subscription(
                subscription, at_period_end=at_end, idempotency_key=idempotency_key
            )
        elif self.action == PAUSE:
            resumes_at = _when(self.request.get("resumes_at"))
            obj = gateway.pause_payments(subscription, resumes_at=resumes_at, idempotency_key=idempotency_key)
        elif self.action in (RESUME, UNDO_PAUSE):  # both unset pause_collection
            obj = gateway.resume_payments(subscription, idempotency_key=idempotency_key)
        elif self.action == UNDO_CANCEL:
            on_a_date = bool(self.request["on_a_date"])
            obj = gateway.undo_cancel(subscription, on_a_date=on_a_date, idempotency_key=idempotency_key)
        elif self.action == REACTIVATE:
            obj = gateway.reactivate(subscription, idempotency_key=idempotency_key)
        else:
            to = _when(self.request["to"])
            assert to is not None
            obj = gateway.move_next_bill_date(subscription, to, idempotency_key=idempotency_key)
        return Made(obj["id"], None, obj)

    def find(self) -> Made | None:
        """The subscription, when it is as the change leaves it (an earlier try made it)."""
        obj = self.stripe.retrieve("subscription", self.request["subscription"])
        return Made(obj["id"], None, obj) if self._made(obj) else None

    def _made(self, obj: Mapping[str, Any]) -> bool:
        pause = obj.get("pause_collection") or None
        if self.action == CANCEL:
            return obj.get("status") == "canceled" or (
                bool(self.request["at_period_end"]) and bool(obj.get("cancel_at_period_end"))
            )
        if self.action == PAUSE:
            resumes_at = _when(self.request.get("resumes_at"))
            asked = int(resumes_at.timestamp()) if resumes_at else None
            return pause is not None and (pause.get("resumes_at") or None) == asked
        if self.action in (RESUME, UNDO_PAUSE):
            return pause is None
        if self.action == UNDO_CANCEL:
            return (
                obj.get("status") != "canceled"
                and not obj.get("cancel_at_period_end")
                and not obj.get("cancel_at")
            )
        if self.action == REACTIVATE:
            return pause is None and not obj.get("cancel_at_period_end")
        to = _when(self.request["to"])
        return to is not None and obj.get("trial_end") == int(to.timestamp())

    def made_from(self, obj: Mapping[str, Any]) -> Made:
        return Made(obj["id"], None, obj)

    def record(self, session: Session, made: Made, now: datetime) -> None:
        row = session.get(Recurring, self.recurring_id)
        if row is None:
            raise RecordNotFound("subscription or payment plan", self.recurring_id)
        apply_subscription_state(row, made.answer)


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass(frozen=True)
class FailedBillEffect(StripeSide):
    """Voiding a failed bill (Stripe invoice), or writing it off, and our record of its payment as Stripe then has
    it (through bot.stripe_sync.sync_invoice, the one mapping of an invoice to a payment)."""

    resend_first: ClassVar[bool] = False  # a change of state: read back as it stands

    action: str
    request: Mapping[str, Any]

    @classmethod
    def of(cls, gateway: StripeGateway | None, attempt: Attempt) -> FailedBillEffect:
        return cls(gateway, attempt.action, attempt.request)

    def call(self, idempotency_key: str) -> Made:
        invoice_id = self.request["invoice"]
        if self.action == VOID_BILL:
            answer = self.stripe.void_invoice(invoice_id, idempotency_key=idempotency_key)
        else:
            answer = self.stripe.mark_invoice_uncollectible(invoice_id, idempotency_key=idempotency_key)
        return self.made_from(self._as_it_stands(answer))

    def _as_it_stands(self, answer: Mapping[str, Any]) -> Mapping[str, Any]:
        """The invoice read again from Stripe, with no transaction open, for our records. Stripe has made the
        change by now, so a read that fails must not make it look undone: the write's own answer stands in."""
        try:
            return self.stripe.retrieve("invoice", answer["id"])
        except StripeFailure:
            logger.warning("could not read invoice %s again; recording Stripe's answer", answer["id"])
            return answer

    def find(self) -> Made | None:
        """The invoice, when it is as the change leaves it (an earlier try made it)."""
        obj = self.stripe.retrieve("invoice", self.request["invoice"])
        return self.made_from(obj) if obj.get("status") == _BILL_LEFT_AS[self.action] else None

    def made_from(self, obj: Mapping[str, Any]) -> Made:
        return Made(obj["id"], None, dict(obj))

    def record(self, session: Session, made: Made, now: datetime) -> None:
        gathered = Gathered()
        gathered.add("invoice", made.answer["id"], made.answer)
        sync_invoice(session, made.answer, _gathered_only(gathered))


def _gathered_only(gathered: Gathered) -> Fetch:
    """sync_invoice's way to Stripe inside the transaction, where nothing may call Stripe: the invoice, read before
    it began. What else it would look up only adds detail our records already hold (the failed payment's reason),
    so it is left out as absent rather than read."""

    def fetch(kind: str, object_id: str) -> dict[str, Any]:
        try:
            return gathered.fetch(kind, object_id)
        except NotGathered:
            raise Gone(kind, object_id) from None

    return fetch
