"""Changing a subscription or payment plan: cancel (now or at the period's end), pause payments (until a date or
until resumed), resume them, move the next bill date, and a payment plan's status, which is one of those."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, ClassVar

from sqlalchemy.orm import Session

from bot.actions.audit import AuditEntry
from bot.actions.family import Family
from bot.actions.ledger import Attempt, Intent, Made
from bot.actions.outcomes import Done, Invalid, Pending, Problems
from bot.actions.stripe_access import StripeSide
from bot.models import Recurring
from bot.records import RecordNotFound, recurring_record
from bot.stripe_gateway import StripeGateway
from bot.stripe_sync import apply_subscription_state
from bot.viewmodels import CardState, RecurringRecord

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
CHANGES = (CANCEL, PAUSE, RESUME, REACTIVATE, MOVE_BILL_DATE)


def pause_problems(until_a_date: bool, resumes_on: date | None, today: date) -> Problems:
    if until_a_date and (resumes_on is None or resumes_on <= today):
        return {"resumes_at": "Choose a date after today, or pause until you resume them."}
    return {}


def bill_date_problems(day: date | None, today: date) -> Problems:
    if day is None or day <= today:
        return {"next_bill_date": "Choose a date after today."}
    return {}


def plan_status_problems(status: str | None) -> Problems:
    return {} if status in PLAN_STATUSES else {"status": "Choose one of the statuses offered."}


@dataclass(frozen=True)
class _Change:
    action: str
    params: dict[str, Any]  # JSON: what the change needs besides the subscription
    asked: str  # "cancel {} at the end of the period": {} is the subscription's name
    done: str


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

    def cancel(self, actor: str, recurring_id: int, *, at_period_end: bool, seen: str) -> Done | Pending:
        when = "at the end of the period" if at_period_end else "now"
        change = _Change(
            CANCEL, {"at_period_end": at_period_end}, f"cancel {{}} {when}", f"canceled {{}} {when}"
        )
        return self._change(actor, recurring_id, change, seen)

    def pause(self, actor: str, recurring_id: int, *, resumes_on: date | None, seen: str) -> Done | Pending:
        problems = pause_problems(resumes_on is not None, resumes_on, self.today())
        until = f"until {resumes_on:%b %-d, %Y}" if resumes_on else "until resumed"
        resumes_at = datetime.combine(resumes_on, time(), tzinfo=UTC).isoformat() if resumes_on else None
        change = _Change(
            PAUSE,
            {"resumes_at": resumes_at},
            f"pause payments of {{}} {until}",
            f"paused payments of {{}} {until}",
        )
        return self._change(actor, recurring_id, change, seen, problems)

    def resume(self, actor: str, recurring_id: int, *, seen: str) -> Done | Pending:
        change = _Change(RESUME, {}, "resume payments of {}", "resumed payments of {}")
        return self._change(actor, recurring_id, change, seen)

    def move_next_bill_date(self, actor: str, recurring_id: int, *, to: date, seen: str) -> Done | Pending:
        problems = bill_date_problems(to, self.today())
        when = datetime.combine(to, time(12), tzinfo=UTC)  # noon UTC falls on that date in most time zones
        change = _Change(
            MOVE_BILL_DATE,
            {"to": when.isoformat()},
            f"move the next bill date of {{}} to {to:%b %-d, %Y}",
            f"moved the next bill date of {{}} to {to:%b %-d, %Y}",
        )
        return self._change(actor, recurring_id, change, seen, problems)

    def change_plan_status(self, actor: str, recurring_id: int, *, status: str, seen: str) -> Done | Pending:
        """Move a payment plan to `status`, by whichever change that takes: back to Active undoes a scheduled cancel
        and ends a pause together; the status it already has changes nothing, and says so."""
        problems = plan_status_problems(status)
        if problems:
            self.permission.require(actor, "change_plan_status", "recurring", recurring_id)
            raise Invalid.of(problems)
        record = self._record(recurring_id)
        current = record.summary.plan_status
        if status == current:
            self.permission.require(actor, "change_plan_status", "recurring", recurring_id)
            summary = f"{_name(record)} is already {_STATUS_WORDS[status]}: nothing was changed"
            entry = AuditEntry(
                actor, "change_plan_status", "recurring", recurring_id, "already_done", summary
            )
            self.ledger.audit.write(entry)
            return Done(summary, record.back.customer_id, ("recurring", recurring_id), already=True)
        if status == "active":
            change = _Change(REACTIVATE, {}, "set {} back to active", "set {} back to active")
            return self._change(actor, recurring_id, change, seen)
        if status == "paused":
            return self.pause(actor, recurring_id, resumes_on=None, seen=seen)
        return self.cancel(actor, recurring_id, at_period_end=status == "canceled_period_end", seen=seen)

    def _change(
        self, actor: str, recurring_id: int, change: _Change, seen: str, problems: Problems | None = None
    ) -> Done | Pending:
        self.permission.require(actor, change.action, "recurring", recurring_id)
        self.stripe.require(actor, change.action, "recurring", recurring_id)
        record = self._record(recurring_id)
        problems = dict(problems or {})
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
            identity={"params": change.params, "seen": seen},
            asked=change.asked.format(name),
            done=change.done.format(name),
            customer_id=record.back.customer_id,
            record=("recurring", recurring_id),
            request={"subscription": record.stripe_subscription_id, **change.params},
        )
        return self.ledger.perform(intent, problems)

    def _record(self, recurring_id: int, back: CardState | None = None) -> RecurringRecord:
        with self.db.session() as session:
            return recurring_record(session, recurring_id, back, payments_shown=0)


def _name(record: RecurringRecord) -> str:
    return f"{record.summary.product} ({record.customer_name})"


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
        elif self.action == RESUME:
            obj = gateway.resume_payments(subscription, idempotency_key=idempotency_key)
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
        if self.action == RESUME:
            return pause is None
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
