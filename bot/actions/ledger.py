"""The action ledger: every change the bot asks of Stripe happens at most once, and our records say what Stripe
did, whatever fails and whenever.

The rules, and why they hold:
- **An attempt is what it does.** Its key is derived from the whole request and from the state of the record the
  person saw (`Intent.key`). The same request twice (a double click, a retried request, two people at once) is
  one attempt; a different amount, or the same amount asked again after the record changed, is another attempt.
- **One try at a time, and a try's end is known.** A try is one Stripe call under its own idempotency key, and
  the gateway bounds a call (`CallLimits.budget`, 30 s). The attempt keeps when its latest try began; until
  `IN_FLIGHT` has passed since then (ten times that bound) nobody else touches it: whoever asks again is told it
  is being confirmed. After that one process may take it over (a conditional update of the try number).
- **What Stripe made is what we record.** Taking over, a person's request first re-sends the latest try under
  its own key: Stripe replays what it made, runs it if it never arrived, or answers 409 while it still runs, so
  no timing has to be trusted. Only when Stripe answered that key with a stored server error (or the key is too
  old to be replayed) is Stripe searched for an object carrying the attempt's key in its metadata: what it made is
  recorded, with Stripe's id and amount; if nothing, a new try goes out under a fresh key. The settle job searches
  the same way and lets go of what Stripe never made; it never moves money. A webhook bringing an object with an
  attempt's key records it at once (bot.actions.settling).
- **What an attempt sets aside lives and dies with it.** A refund reserves its amount on its payment in the
  transaction that creates the attempt (the database's check constraints refuse more than was paid); the
  transaction that ends the attempt (succeeded, failed, let go) gives it back.
- **Truthful answers.** Once Stripe may have acted, nobody is told that nothing was done: it is done, or it is
  being confirmed (`Pending`), and the record shows it as awaiting Stripe.
- **Audited with the change**: each outcome's audit entry is written in the transaction that records it.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.actions.audit import AuditEntry, AuditTrail
from bot.actions.outcomes import Done, Failed, Invalid, Pending, Problems, Record
from bot.db import Database
from bot.models import ActionAttempt, AttemptStatus, Payment
from bot.money import Money
from bot.shared import Shared
from bot.stripe_gateway import IN_PROGRESS, StripeFailure

logger = logging.getLogger(__name__)

# How long after a try began it may still be on its way, at the least: ten times the longest a Stripe call may
# take (the gateway's budget, 30 s), so a second try never races a first that is still in flight. (Taking over
# also asks Stripe itself first, with the latest try's own key: see `_what_earlier_tries_made`.)
IN_FLIGHT = timedelta(minutes=5)
# How long Stripe replays an idempotency key's answer (24 hours), less a margin.
REPLAYED_FOR = timedelta(hours=23)

PENDING, SUCCEEDED, FAILED = (
    AttemptStatus.PENDING.value,
    AttemptStatus.SUCCEEDED.value,
    AttemptStatus.FAILED.value,
)

BEING_CONFIRMED = (
    "Stripe did not answer in time, so we cannot tell yet whether it went through. The record shows it as "
    "awaiting Stripe; the bot asks Stripe within a few minutes and records what happened (the audit channel, "
    "when there is one, is told). Do not do it again meanwhile."
)
ALREADY_ASKED = (
    "This very request was sent to Stripe {ago} and its answer is not known yet, so it was not sent again. The "
    "record shows it as awaiting Stripe until the answer is known."
)
STILL_RUNNING = (
    "Stripe is still working on this very request, so it was not sent again. The record shows it as awaiting "
    "Stripe until the answer is known."
)
NOT_ASKED_AGAIN = (
    "Stripe could not be asked whether the earlier try went through, so nothing new was sent. The record shows it "
    "as awaiting Stripe; try again in a few minutes, or leave it to the bot, which keeps asking."
)
NOT_RECORDED = (
    "Stripe did it ({stripe_id}), but our records could not be updated just now. The bot records it within a few "
    "minutes; the record shows it as awaiting Stripe until then. Do not do it again."
)


@dataclass(frozen=True)
class Made:
    """What Stripe made for a try: its id, the amount it moved (for money), and its answer."""

    stripe_id: str | None
    amount: int | None = None
    answer: Any = None


class Effect(Protocol):
    """The Stripe side and the records side of one attempt."""

    # Taking over, send the last sent key again before searching (money: Stripe's replay is the surest answer);
    # False for changes of state, which are read back as they stand now instead.
    resend_first: bool

    def call(self, idempotency_key: str) -> Made:
        """Ask Stripe to do it (raises StripeFailure)."""
        ...

    def find(self) -> Made | None:
        """What earlier tries made in Stripe, found by the attempt's key; None when they made nothing."""
        ...

    def made_from(self, obj: Mapping[str, Any]) -> Made:
        """Stripe's object (from a webhook) as what a try made."""
        ...

    def record(self, session: Session, made: Made, now: datetime) -> None:
        """Write what Stripe made into our records: once, however often it is called for the same Stripe id."""
        ...


@dataclass(frozen=True)
class Intent:
    """One request, checked and ready to go: who, what, on which record, and the words for it."""

    actor: str
    action: str
    target: tuple[str, int]  # (target type, id): a payment, a subscription or plan ("recurring"), a customer
    identity: Mapping[str, Any]  # everything that makes this request this request, seen state included
    asked: str  # "refund $12.50 of order #100021 (Jane Doe)"
    done: str  # "refunded $12.50 of order #100021 (Jane Doe)"
    customer_id: int
    record: Record  # the record to show afterwards
    request: Mapping[str, Any] = field(default_factory=dict)  # what rebuilding the effect needs (JSON)
    money: Money | None = None
    reserved: int = 0  # minor units set aside on the target payment while the attempt is open
    reserve: Callable[[Session], None] | None = None  # sets them aside, or raises Invalid
    # What the person wrote with the request: kept with the attempt (its request) and every audit entry of it.
    # It is not part of what the request is (its identity): the same change asked again with other words is the
    # same change. A refund's identity names its note, as it always has; a refund holds its amount back anyway.
    note: str | None = None

    def pending(self, why: str, stripe_id: str | None = None) -> Pending:
        return Pending(self.asked, self.customer_id, self.record, why, stripe_id)

    @property
    def key(self) -> str:
        digest = hashlib.sha256(json.dumps(self.identity, sort_keys=True, default=str).encode()).hexdigest()
        return f"{self.action}:{self.target[0]}:{self.target[1]}:{digest[:40]}"


@dataclass(frozen=True)
class Attempt:
    """An attempt as read from its row."""

    id: int
    key: str
    action: str
    target: tuple[str, int]
    actor: str
    status: str
    tries: int
    tried_at: datetime
    sent_at: datetime
    stripe_key: str
    reserved: int
    request: Mapping[str, Any]
    money: Money | None
    stripe_id: str | None

    @classmethod
    def of(cls, row: ActionAttempt) -> Attempt:
        money = Money(row.amount, row.currency) if row.amount is not None and row.currency else None
        return cls(
            row.id,
            row.key,
            row.action,
            (row.target_type, row.target_id),
            row.actor,
            row.status,
            row.tries,
            row.tried_at,
            row.sent_at,
            row.stripe_idempotency_key,
            row.reserved,
            row.request or {},
            money,
            row.stripe_id,
        )

    @property
    def asked(self) -> str:
        return self.request.get("asked", self.action.replace("_", " "))

    @property
    def done(self) -> str:
        return self.request.get("done", self.asked)


EffectFor = Callable[[Attempt], Effect]  # an attempt's effect, made from what its row keeps


class ClaimState(enum.Enum):
    NEW = "new"  # a request never asked before: its first try goes out
    TAKEN_OVER = "taken_over"  # open, its latest try must have ended: this process tries again
    SUCCEEDED = "succeeded"  # done already: the answer is that
    BUSY = "busy"  # open, and its latest try may still be on its way: nothing is sent


@dataclass(frozen=True)
class _Claim:
    attempt: Attempt
    state: ClaimState


class Ledger(Shared):
    def __init__(
        self,
        db: Database,
        audit: AuditTrail,
        clock: Callable[[], datetime],
        effects: Mapping[str, EffectFor],
        *,
        in_flight: timedelta = IN_FLIGHT,
    ) -> None:
        self.db = db
        self.audit = audit
        self.clock = clock
        self.effects = (
            effects  # by action; every try of an attempt, whoever sends it, sends what its row keeps
        )
        self.in_flight = in_flight  # how long after a try began it may still be on its way

    # A person asks ---------------------------------------------------------------------------------------------

    def perform(self, intent: Intent, problems: Problems | None = None) -> Done | Pending:
        """Do `intent` once: claim its attempt, ask Stripe, record what Stripe made. Raises Invalid (`problems`,
        or what the person saw changed) and Failed (Stripe said no, for certain); anything uncertain is Pending.
        A request already claimed is answered as it stands, whatever `problems` says now: its own claim is what
        changed the record."""
        try:
            claim = self._claim(intent, problems or {})
        except Invalid as invalid:
            self.audit.write(self._entry(intent, "invalid", invalid.message))
            raise
        attempt = claim.attempt
        effect = self.effects[attempt.action](attempt)  # the request as its row keeps it, whoever asks
        if claim.state is ClaimState.SUCCEEDED:
            self.audit.write(self._entry(intent, "already_done", intent.done, attempt.stripe_id))
            return Done(
                f"this was already done: {intent.done}", intent.customer_id, intent.record, already=True
            )
        if claim.state is ClaimState.BUSY:
            ago = _ago(self.clock() - attempt.tried_at)
            self.audit.write(
                self._entry(intent, "in_progress", f"asked again while awaiting Stripe: {intent.asked}")
            )
            return intent.pending(ALREADY_ASKED.format(ago=ago))
        if claim.state is ClaimState.TAKEN_OVER:
            earlier = self._what_earlier_tries_made(intent, attempt, effect)
            if isinstance(earlier, Pending):
                return earlier
            if earlier is not None:
                return self._recorded(intent, attempt, effect, earlier)
            fresh = self._fresh_key(attempt)
            if fresh is None:
                return intent.pending(ALREADY_ASKED.format(ago="just now"))
            attempt = fresh
        try:
            made = effect.call(attempt.stripe_key)
        except StripeFailure as failure:
            if failure.outcome_unknown:
                self._unknown(intent, attempt, failure.user_message, failure.code)
                return intent.pending(BEING_CONFIRMED)
            self._failed(intent, attempt, failure)
            raise Failed(failure.user_message) from failure
        except Exception:  # a fault of ours after the request may have left: Stripe may have acted
            logger.exception("attempt %s: the Stripe call ended in an error of ours", attempt.id)
            self._unknown(intent, attempt, "the bot failed while asking Stripe", None)
            return intent.pending(BEING_CONFIRMED)
        return self._recorded(intent, attempt, effect, made)

    def _what_earlier_tries_made(
        self, intent: Intent, attempt: Attempt, effect: Effect
    ) -> Made | Pending | None:
        """Taking an attempt over, first learn what its tries made. A money request's last sent key is sent again
        (within Stripe's replay window): Stripe replays what that try got, runs it if it never arrived, or answers
        409 while it still runs, so no timing has to be trusted. Only an answer that is not about that try (a 429,
        a key Stripe no longer keeps, a stored server error) sends the bot to search Stripe for an object carrying
        the attempt's key; a change of state is always read back that way, as it stands now. None means nothing was
        made, and a fresh try may go out."""
        if effect.resend_first and self.clock() - attempt.sent_at < REPLAYED_FOR:
            try:
                return effect.call(attempt.stripe_key)
            except StripeFailure as failure:
                if failure.code == IN_PROGRESS:
                    return intent.pending(STILL_RUNNING)
                if (
                    not failure.answered
                ):  # this very resend may still be on its way: wait for it as for any try
                    self._unknown(intent, attempt, failure.user_message, failure.code)
                    return intent.pending(BEING_CONFIRMED)
                if failure.replayed and not failure.outcome_unknown:  # how the try ended, for certain
                    self._failed(intent, attempt, failure)
                    raise Failed(failure.user_message) from failure
                # Any other answer says nothing of that try's outcome: look for what it made.
            except Exception:
                logger.exception("attempt %s: sending its latest try again failed", attempt.id)
                self._unknown(intent, attempt, "the bot failed while asking Stripe", None)
                return intent.pending(BEING_CONFIRMED)
        try:
            return effect.find()
        except Exception:  # nothing new was sent; what the earlier tries made is still to be found out
            logger.warning("could not ask Stripe about attempt %s", attempt.id, exc_info=True)
            return intent.pending(NOT_ASKED_AGAIN)

    def _claim(self, intent: Intent, problems: Problems) -> _Claim:
        for _ in range(3):
            try:
                return self._claim_once(intent, problems)
            except IntegrityError:
                continue  # the same request was claimed at this very moment: look again
            except Invalid:
                # The record changed since the person saw it, unless what changed it is this very request.
                with self.db.session() as session:
                    if (
                        session.scalar(select(ActionAttempt.id).where(ActionAttempt.key == intent.key))
                        is None
                    ):
                        raise
        raise Invalid("Someone is doing exactly this right now. Open the record again in a moment to see it.")

    def _claim_once(self, intent: Intent, problems: Problems) -> _Claim:
        now = self.clock()
        with self.db.session() as session:
            row = session.scalar(select(ActionAttempt).where(ActionAttempt.key == intent.key))
            if row is None:
                if problems:
                    raise Invalid.of(problems)
                if intent.reserve is not None:
                    intent.reserve(session)
                row = ActionAttempt(
                    key=intent.key,
                    stripe_idempotency_key=f"pending:{intent.key}",
                    action=intent.action,
                    target_type=intent.target[0],
                    target_id=intent.target[1],
                    actor=intent.actor,
                    status=PENDING,
                    amount=intent.money.amount if intent.money else None,
                    currency=intent.money.currency if intent.money else None,
                    created_at=now,
                    tries=1,
                    tried_at=now,
                    sent_at=now,
                    reserved=intent.reserved,
                    request={
                        **intent.request,
                        "asked": intent.asked,
                        "done": intent.done,
                        **({"note": intent.note} if intent.note else {}),
                    },
                )
                session.add(row)
                session.flush()
                row.stripe_idempotency_key = _stripe_key(row.id, 1, intent.key)
                return _Claim(Attempt.of(row), ClaimState.NEW)
            attempt = Attempt.of(row)
            if row.status == SUCCEEDED:
                return _Claim(attempt, ClaimState.SUCCEEDED)
            if row.tried_at > now - self.in_flight:
                return _Claim(attempt, ClaimState.BUSY)
            taken = self._take_over(session, attempt, now)
            return _Claim(taken, ClaimState.TAKEN_OVER) if taken else _Claim(attempt, ClaimState.BUSY)

    # Ends of an attempt ---------------------------------------------------------------------------------------

    def _recorded(self, intent: Intent, attempt: Attempt, effect: Effect, made: Made) -> Done | Pending:
        try:
            summary = self.succeed(attempt, effect, made, intent.done)
        except Exception:  # Stripe did it; telling the person otherwise would make them do it again
            logger.exception("attempt %s: Stripe made %s but recording it failed", attempt.id, made.stripe_id)
            why = NOT_RECORDED.format(stripe_id=made.stripe_id or "no id given")
            return intent.pending(why, made.stripe_id)
        return Done(summary or intent.done, intent.customer_id, intent.record)

    def succeed(
        self, attempt: Attempt, effect: Effect, made: Made, summary: str, session: Session | None = None
    ) -> str | None:
        """Record what Stripe made for `attempt` and end it, in `session` when given (a webhook's), else in a
        transaction of its own. Returns the summary audited; None when this very object was recorded already."""
        if session is None:
            with self.db.session() as own:
                return self.succeed(attempt, effect, made, summary, own)
        now = self.clock()
        ended = session.execute(
            update(ActionAttempt)
            .where(ActionAttempt.id == attempt.id, ActionAttempt.status == PENDING)
            .values(status=SUCCEEDED, stripe_id=made.stripe_id, finished_at=now, reserved=0)
        )
        if ended.rowcount == 1:
            self._release(session, attempt)
        else:
            current = session.get(ActionAttempt, attempt.id, populate_existing=True)
            if current is not None and current.status == SUCCEEDED and current.stripe_id == made.stripe_id:
                return None  # a webhook or the settle job recorded it first
            summary += self._made_after_all(session, attempt, made, now)
        effect.record(session, made, now)
        if made.amount is not None and attempt.money is not None and made.amount != attempt.money.amount:
            moved = Money(made.amount, attempt.money.currency)
            summary += f" (Stripe made it for {moved.format()}, not the {attempt.money.format()} asked)"
        self.audit.add(session, self._attempt_entry(attempt, "succeeded", summary, made))
        return summary

    @staticmethod
    def _made_after_all(session: Session, attempt: Attempt, made: Made, now: datetime) -> str:
        """Stripe made an object for an attempt that had ended: let go (a try outlived its window), or ended
        with another object. Stripe's word stands: it is recorded too, and said loudly."""
        logger.error(
            "attempt %s had ended, yet Stripe made %s for it: recording that", attempt.id, made.stripe_id
        )
        session.execute(
            update(ActionAttempt)
            .where(ActionAttempt.id == attempt.id)
            .values(status=SUCCEEDED, stripe_id=made.stripe_id, finished_at=now)
        )
        return " (Stripe made it after the request had ended)"

    def let_go(self, attempt: Attempt, summary: str) -> bool:
        """End an attempt Stripe never acted on: give back what it set aside and free its key for a fresh
        request. False when it changed since `attempt` was read (someone else took it over or ended it)."""
        with self.db.session() as session:
            if not self._end_failed(session, attempt, {"error": "Stripe never made it"}):
                return False
            self.audit.add(session, self._attempt_entry(attempt, "let_go", summary))
            return True

    def _failed(self, intent: Intent, attempt: Attempt, failure: StripeFailure) -> None:
        try:
            with self.db.session() as session:
                details = {"error": failure.user_message, "code": failure.code}
                if self._end_failed(session, attempt, details):
                    self.audit.add(session, self._entry(intent, "failed", failure.user_message))
        except Exception:
            # Stripe's no stands; the settle job finds nothing in Stripe and lets the attempt go.
            logger.exception("attempt %s: Stripe refused it, but ending it failed", attempt.id)

    def _end_failed(self, session: Session, attempt: Attempt, details: dict[str, Any]) -> bool:
        ended = session.execute(
            update(ActionAttempt)
            .where(*_still_held(attempt))
            .values(
                status=FAILED,
                finished_at=self.clock(),
                key=f"{attempt.key}!failed:{attempt.id}",  # frees the key: the same request may be asked again
                reserved=0,
                details=details,
            )
        )
        if ended.rowcount != 1:
            return False
        self._release(session, attempt)
        return True

    def _unknown(self, intent: Intent, attempt: Attempt, error: str, code: str | None) -> None:
        try:
            with self.db.session() as session:
                session.execute(
                    update(ActionAttempt)
                    .where(ActionAttempt.id == attempt.id, ActionAttempt.status == PENDING)
                    .values(details={"error": error, "code": code, "outcome_unknown": True})
                )
                self.audit.add(session, self._entry(intent, "unknown", f"{intent.asked}: {error}"))
        except Exception:  # the attempt stays open either way, for a retry or the settle job to end
            logger.exception("attempt %s: noting its unknown outcome failed", attempt.id)

    # Taking over an attempt whose latest try has ended -------------------------------------------------------

    def take_over(self, attempt: Attempt) -> Attempt | None:
        """Start a new try of a pending attempt whose latest try must have ended; None when it is not ours to take
        (still in flight, ended, or taken by someone else at this moment)."""
        now = self.clock()
        if attempt.status != PENDING or attempt.tried_at > now - self.in_flight:
            return None
        with self.db.session() as session:
            return self._take_over(session, attempt, now)

    def _take_over(self, session: Session, attempt: Attempt, now: datetime) -> Attempt | None:
        """Hold the attempt for this process: its try number moves on and its window starts again. Its key stays
        the one last sent, until a fresh try really goes out (`_fresh_key`)."""
        tries = attempt.tries + 1
        taken = session.execute(
            update(ActionAttempt)
            .where(*_still_held(attempt), ActionAttempt.tried_at <= now - self.in_flight)
            .values(tries=tries, tried_at=now)
        )
        if taken.rowcount != 1:
            return None
        return replace(attempt, tries=tries, tried_at=now)

    def _fresh_key(self, attempt: Attempt) -> Attempt | None:
        """Give a held attempt a key Stripe has never seen, just before a fresh try goes out under it; None when
        the attempt is no longer this process's to try. From here on this key is the one last sent."""
        stripe_key, now = _stripe_key(attempt.id, attempt.tries, attempt.key), self.clock()
        with self.db.session() as session:
            marked = session.execute(
                update(ActionAttempt)
                .where(*_still_held(attempt))
                .values(stripe_idempotency_key=stripe_key, sent_at=now)
            )
        return replace(attempt, stripe_key=stripe_key, sent_at=now) if marked.rowcount == 1 else None

    def open_attempts(self, *, limit: int) -> list[Attempt]:
        """Pending attempts whose latest try must have ended, oldest first."""
        cutoff = self.clock() - self.in_flight
        with self.db.session() as session:
            rows = session.scalars(
                select(ActionAttempt)
                .where(ActionAttempt.status == PENDING, ActionAttempt.tried_at <= cutoff)
                .order_by(ActionAttempt.tried_at, ActionAttempt.id)
                .limit(limit)
            ).all()
            return [Attempt.of(row) for row in rows]

    def effect_for(self, attempt: Attempt) -> Effect | None:
        """The attempt's effect as its row keeps it; None for an action this version does not know."""
        make = self.effects.get(attempt.action)
        return make(attempt) if make else None

    def attempt_by_key(self, session: Session, key: str) -> Attempt | None:
        row = session.scalar(select(ActionAttempt).where(ActionAttempt.key == key))
        return Attempt.of(row) if row is not None else None

    # Helpers -------------------------------------------------------------------------------------------------

    @staticmethod
    def _release(session: Session, attempt: Attempt) -> None:
        if attempt.reserved:
            session.execute(
                update(Payment)
                .where(Payment.id == attempt.target[1])
                .values(amount_refund_pending=Payment.amount_refund_pending - attempt.reserved)
            )

    @staticmethod
    def _entry(intent: Intent, outcome: str, summary: str, stripe_id: str | None = None) -> AuditEntry:
        kind, target_id = intent.target
        return AuditEntry(
            intent.actor,
            intent.action,
            kind,
            target_id,
            outcome,
            summary,
            intent.money,
            stripe_id,
            intent.note,
        )

    @staticmethod
    def _attempt_entry(attempt: Attempt, outcome: str, summary: str, made: Made | None = None) -> AuditEntry:
        money = attempt.money
        if made is not None and made.amount is not None and money is not None:
            money = Money(made.amount, money.currency)
        kind, target_id = attempt.target
        stripe_id = made.stripe_id if made else None
        note = attempt.request.get("note")
        return AuditEntry(
            attempt.actor, attempt.action, kind, target_id, outcome, summary, money, stripe_id, note or None
        )


def _still_held(attempt: Attempt) -> tuple[ColumnElement[bool], ...]:
    """The attempt is still open and still at the try it was read at: no one else has taken it since."""
    return (
        ActionAttempt.id == attempt.id,
        ActionAttempt.status == PENDING,
        ActionAttempt.tries == attempt.tries,
    )


def _stripe_key(attempt_id: int, tries: int, key: str) -> str:
    """A try's idempotency key: unique per attempt and try, and tied to what the attempt does."""
    return f"crb-{attempt_id}-{tries}-{hashlib.sha256(key.encode()).hexdigest()[:24]}"


def _ago(elapsed: timedelta) -> str:
    seconds = max(0, int(elapsed.total_seconds()))
    return f"{seconds} s ago" if seconds < 120 else f"{seconds // 60} min ago"
