"""A customer's email: changed in our record and in Stripe together (naming the connected CRMs that still hold the
old address, which the change notes for the email check), and pushed from our record to Stripe and the CRMs from
the email-sync report."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy.orm import Session

from bot.actions.audit import AuditEntry
from bot.actions.family import Family
from bot.actions.ledger import Attempt, Intent, Ledger, Made
from bot.actions.notes import clean_note, note_problems
from bot.actions.outcomes import Done, Failed, Pending, Problems
from bot.actions.permission import Permission
from bot.actions.stripe_access import StripeAccess, StripeSide
from bot.crm import Crm, CrmError, distinct_emails, same_email
from bot.db import Database
from bot.email_sync import note_old_email
from bot.naming import shown_name
from bot.records import customer_row, last_change
from bot.search import index_customer
from bot.stripe_gateway import StripeFailure, StripeGateway
from bot.viewmodels import EMAIL_LENGTH, EmailForm

CHANGE, PUSH = "change_email", "push_email"
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")


def email_problems(email: str, current: str | None = None) -> Problems:
    """Field → what is wrong with a new email address; empty when it may be used."""
    email = email.strip()
    if not _EMAIL.match(email) or len(email) > EMAIL_LENGTH:
        return {"email": "Enter an email address like jane@example.com."}
    if current is not None and email == current:
        return {"email": "That is already the email on file."}
    return {}


class EmailChanges(Family):
    def __init__(
        self,
        db: Database,
        ledger: Ledger,
        permission: Permission,
        stripe: StripeAccess,
        crms: Sequence[Crm],
        clock: Callable[[], datetime],
    ) -> None:
        super().__init__(db, ledger, permission, stripe, clock)
        self.crms = list(crms)

    def form(self, actor: str, customer_id: int) -> EmailForm:
        self.permission.require(actor, CHANGE, "customer", customer_id)
        with self.db.session() as session:
            customer = customer_row(session, customer_id)
            name = shown_name(customer.name, customer.email)
            return EmailForm(customer_id, name, customer.email, customer.stripe_customer_id is not None)

    def change(self, actor: str, customer_id: int, new_email: str, note: str | None = None) -> Done | Pending:
        """Our record and the Stripe customer get `new_email`; the summary names CRMs still holding the old."""
        self.permission.require(actor, CHANGE, "customer", customer_id)
        new_email = new_email.strip()
        with self.db.session() as session:
            customer = customer_row(session, customer_id)
            old_email, stripe_customer = customer.email, customer.stripe_customer_id
            name = shown_name(customer.name, customer.email)
            after = last_change(session, "customer", customer_id)
        if stripe_customer:
            self.stripe.require(actor, CHANGE, "customer", customer_id)
        problems = email_problems(new_email, old_email) | note_problems(note)
        note = clean_note(note)
        where = (
            "our records and Stripe" if stripe_customer else "our records (this customer is not in Stripe)"
        )
        if not problems:
            where += self._crms_holding(old_email)
        intent = Intent(
            actor=actor,
            action=CHANGE,
            target=("customer", customer_id),
            identity={"from": old_email, "to": new_email, "after": after},  # the note is not part of it
            asked=f"change {name}'s email from {old_email} to {new_email}",
            done=f"changed {name}'s email from {old_email} to {new_email} in {where}",
            customer_id=customer_id,
            record=("customer", customer_id),
            request={"stripe_customer": stripe_customer, "email": new_email},
            note=note,
        )
        return self.ledger.perform(intent, problems)

    def _crms_holding(self, old_email: str) -> str:
        """What the result says of the other systems: which connected CRMs still have the old address (the next
        email check lists this customer with a push button for them: the change notes the old address for it),
        or, with no CRM connected, that any other system is for people to update."""
        if not self.crms:
            return (
                "; no CRMs are connected to the bot, so any other system that has the old address "
                "must be updated by hand"
            )
        holding, unasked = [], []
        for crm in self.crms:
            try:
                if crm.find_contact(old_email) is not None:
                    holding.append(crm.name)
            except CrmError:
                unasked.append(crm.name)
        if holding:
            verb = "has" if len(holding) == 1 else "have"
            text = (
                f"; {_and(holding)} still {verb} the old address: the next email check lists this customer "
                "with a Push our email button to change it there"
            )
        else:
            text = "; no connected CRM has the old address"
        if unasked:
            text += f" ({_and(unasked)} could not be asked; the next email check asks again)"
        return text

    # Pushing from the email-sync report ---------------------------------------------------------------------

    def push(self, actor: str, customer_id: int, *, old_emails: Iterable[str] = ()) -> str:
        """Put our email for this customer into Stripe and into each CRM holding an old address; returns one plain
        sentence saying what happened. Only payment admins may; every outcome is audited.

        Stripe is read first (one call): if it already has our address nothing is sent; otherwise its address is
        one of the old ones to look for in the CRMs, with `old_emails` (what the report showed, for when Stripe was
        fixed by an earlier push that a CRM then failed). A CRM that already has a contact under our address is
        left alone; one without a contact under any old address has nothing to change.

        A Stripe failure stops the push before any CRM is touched; a CRM failure does not stop the others. Either
        raises `Failed` (after the audit) saying what was done and what was not. Our record is never changed."""
        self.permission.require(actor, PUSH, "customer", customer_id)
        with self.db.session() as session:
            customer = customer_row(session, customer_id)
            ours, stripe_id = customer.email.strip(), customer.stripe_customer_id
            name = shown_name(customer.name, customer.email)

        def audit(outcome: str, summary: str) -> None:
            self.ledger.audit.write(
                AuditEntry(actor, PUSH, "customer", customer_id, outcome, summary, None, stripe_id)
            )

        olds = [e.strip() for e in old_emails if e and e.strip() and not same_email(e, ours)]
        pushed: list[str] = []
        already: list[str] = []
        if stripe_id:
            gateway = self.stripe.require(actor, PUSH, "customer", customer_id)
            try:
                theirs = gateway.customer_email(stripe_id)
                if same_email(theirs, ours):
                    already.append("Stripe")
                else:
                    if theirs:
                        olds.insert(0, theirs)
                    gateway.update_email(stripe_id, ours, idempotency_key=_push_key(customer_id))
                    pushed.append("Stripe")
            except StripeFailure as failure:
                audit(
                    "unknown" if failure.outcome_unknown else "failed",
                    f"pushing {ours} to Stripe: {failure.user_message}",
                )
                raise Failed(failure.user_message) from failure

        missing: list[str] = []
        failures: list[str] = []
        for crm in self.crms:
            try:
                if crm.find_contact(ours) is not None:
                    already.append(crm.name)
                    continue
                for old in distinct_emails(olds):
                    contact = crm.find_contact(old)
                    if contact is not None:
                        crm.change_email(contact, ours)
                        pushed.append(crm.name)
                        break
                else:
                    missing.append(crm.name)
            except CrmError as error:
                failures.append(error.user_message)

        summary = _push_summary(name, ours, pushed, already, missing)
        if failures:
            done = f"Pushed {ours} to {_and(pushed)}, but " if pushed else ""
            message = f"{done}{' '.join(failures)} Our record is unchanged."
            message = message[0].upper() + message[1:]
            audit("failed", f"{summary}; failed: {' '.join(failures)}")
            raise Failed(message)
        audit("succeeded", summary)
        return summary


@dataclass(frozen=True)
class EmailEffect(StripeSide):
    """A new email on the Stripe customer (when there is one: else only our record changes), and on our record."""

    resend_first: ClassVar[bool] = False

    customer_id: int
    request: Mapping[str, Any]

    @classmethod
    def of(cls, gateway: StripeGateway | None, attempt: Attempt) -> EmailEffect:
        return cls(gateway, attempt.target[1], attempt.request)

    def call(self, idempotency_key: str) -> Made:
        stripe_customer = self.request["stripe_customer"]
        if stripe_customer:
            self.stripe.update_email(stripe_customer, self.request["email"], idempotency_key=idempotency_key)
        return Made(stripe_customer)

    def find(self) -> Made | None:
        stripe_customer = self.request["stripe_customer"]
        if not stripe_customer:
            return Made(None)  # nothing to ask of Stripe: only our record was to change
        email = self.stripe.customer_email(stripe_customer)
        return Made(stripe_customer) if same_email(email, self.request["email"]) else None

    def made_from(self, obj: Mapping[str, Any]) -> Made:
        return Made(obj.get("id"))

    def record(self, session: Session, made: Made, now: datetime) -> None:
        customer = customer_row(session, self.customer_id)
        if not same_email(customer.email, self.request["email"]):  # the email check asks the CRMs about it
            note_old_email(session, customer.id, customer.email, now)
        customer.email = self.request["email"]
        index_customer(session, customer)


def _push_summary(name: str, ours: str, pushed: list[str], already: list[str], missing: list[str]) -> str:
    if pushed:
        parts = [f"pushed {name}'s email {ours} to {_and(pushed)}"]
        if already:
            parts.append(f"{_and(already)} already had it")
    elif already:
        parts = [f"checked {name}'s email {ours}: {_and(already)} already had it, nothing was changed"]
    else:
        parts = [f"nothing to push for {name}: no connected system holds an old address"]
    if missing:
        verb = "has" if len(missing) == 1 else "have"
        parts.append(f"{_and(missing)} {verb} no contact under the old or the new address")
    return "; ".join(parts)


def _push_key(customer_id: int) -> str:
    """A key of its own for each push: setting an address twice is harmless, while a key used before would only
    replay the earlier answer (Stripe keeps them a day) and change nothing, if the address changed back since."""
    return f"push_email:customer:{customer_id}:{uuid.uuid4().hex}"


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
