"""The email-sync check: which customers' emails in Stripe (and in connected CRMs) differ from ours, and pushing
ours to them. Our record is the source of truth: nothing here ever changes it.

Comparing with Stripe costs one list call per 100 Stripe customers and one query of ours per page (the page's
ids, `IN (…)`), never a call or a query per customer. CRMs offer no cheap way to match their contacts to our
customers in bulk (a contact carries no Stripe or customer id we could join on, and listing a whole CRM to
compare address books would flag everyone who simply is not in it), so they are asked one contact at a time —
and only for the customers whose Stripe email differs, the ones whose old address can have spread elsewhere.
A customer whose Stripe email agrees is not looked up in any CRM; a CRM still holding an older address for such
a customer is not reported.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select

from bot.actions import Actions, AuditEntry, Failed
from bot.crm import Crm, CrmError, same_email
from bot.db import Database
from bot.models import Customer
from bot.records import RecordNotFound, shown_name
from bot.stripe_gateway import StripeFailure, StripeGateway
from bot.viewmodels import Difference

logger = logging.getLogger(__name__)

CRM_LOOKUPS = 100  # customers looked up in the CRMs per run, at most (the report lists 20)
NOT_CONNECTED = "Stripe is not connected to the bot (STRIPE_API_KEY is not set), so no emails were compared."


@dataclass(frozen=True)
class EmailCheck:
    """What one run of the check found. Unpacks as `differences, checked = check_emails(...)`."""

    differences: list[Difference]
    checked: int  # our customers compared with Stripe (those found in Stripe)
    crms: list[str] = field(default_factory=list)  # the CRMs connected
    problems: list[str] = field(default_factory=list)  # plain sentences: what could not be checked, and why

    def __iter__(self) -> Iterator[object]:
        return iter((self.differences, self.checked))


def old_emails(difference: Difference) -> list[str]:
    """The addresses other systems still hold for this customer, to look up and replace when pushing."""
    found = [difference.stripe_email or ""] + [email or "" for _crm, email in difference.crm_differences]
    return _distinct(e for e in found if e and not same_email(e, difference.our_email))


def check_emails(
    db: Database,
    gateway: StripeGateway | None,
    crms: Sequence[Crm],
    *,
    crm_lookups: int = CRM_LOOKUPS,
) -> EmailCheck:
    """Compare every customer linked to Stripe with Stripe's email, page by page; then, for each customer who
    differs, ask each CRM whether it holds our address or the old one (see the module docstring for why CRMs are
    asked per customer, and only for these). A CRM that fails is reported once and not asked again this run; a
    Stripe failure ends the comparison where it got to and is reported.

    CRMs are asked about the first `crm_lookups` customers who differ (in report order) only: the report lists
    fewer than that, and a push looks the CRMs up again anyway, so a first run that finds thousands of
    differences does not spend hours on CRM rate limits. The others' `crm_differences` stay empty."""
    crm_names = [crm.name for crm in crms]
    if gateway is None:
        return EmailCheck([], 0, crm_names, [NOT_CONNECTED])
    differences: list[Difference] = []
    problems: list[str] = []
    checked = 0
    cursor: str | None = None
    while True:
        try:
            page, cursor = gateway.customer_emails(starting_after=cursor)
        except StripeFailure as failure:
            logger.warning("email check: listing Stripe customers failed: %s", failure.stripe_message)
            problems.append(
                f"Stripe's customers could not all be listed, so the check stopped early: {failure.user_message}"
            )
            break
        theirs = dict(page)
        if not theirs:
            break
        with db.session() as session:
            ours = session.execute(
                select(Customer.id, Customer.name, Customer.email, Customer.stripe_customer_id).where(
                    Customer.stripe_customer_id.in_(list(theirs))
                )
            ).all()
        for customer_id, name, our_email, stripe_id in ours:
            checked += 1
            stripe_email = theirs[stripe_id] or ""
            if not same_email(stripe_email, our_email):
                differences.append(
                    Difference(customer_id, shown_name(name, our_email), our_email, stripe_email)
                )
        if cursor is None:
            break
    differences.sort(key=lambda d: (d.name.lower(), d.customer_id))
    if crms and differences:
        looked_up = _with_crms(differences[:crm_lookups], crms, problems)
        differences = looked_up + differences[crm_lookups:]
    logger.info("email check: %s of %s customers differ", len(differences), checked)
    return EmailCheck(differences, checked, crm_names, problems)


def _with_crms(differences: list[Difference], crms: Sequence[Crm], problems: list[str]) -> list[Difference]:
    failed: set[str] = set()
    result = []
    for difference in differences:
        crm_differences = list(difference.crm_differences)
        for crm in crms:
            if crm.name in failed:
                continue
            try:
                if crm.find_contact(difference.our_email) is not None:
                    continue  # it has our address: in step
                contact = crm.find_contact(difference.stripe_email) if difference.stripe_email else None
            except CrmError as error:
                failed.add(crm.name)
                problems.append(f"{crm.name} could not be checked: {error.user_message}")
                continue
            crm_differences.append((crm.name, contact.email if contact else None))
        result.append(
            Difference(
                difference.customer_id,
                difference.name,
                difference.our_email,
                difference.stripe_email,
                crm_differences,
            )
        )
    return result


def push_email(
    actions: Actions,
    crms: Sequence[Crm],
    actor: str,
    customer_id: int,
    *,
    old_emails: Iterable[str] = (),
) -> str:
    """Put our email for this customer into Stripe and into each CRM holding an old address; returns one plain
    sentence saying what happened. Only payment admins may; every outcome is audited.

    Stripe is read first (one call): if it already has our address nothing is sent; otherwise its address is
    one of the old ones to look for in the CRMs, with `old_emails` (what the report showed, for when Stripe was
    fixed by an earlier push that a CRM then failed). A CRM that already has a contact under our address is left
    alone; one without a contact under any old address has nothing to change.

    A Stripe failure stops the push before any CRM is touched; a CRM failure does not stop the others. Either
    raises `Failed` (after the audit) saying what was done and what was not. Our record is never changed."""
    actions.require_admin(actor, "push_email", "customer", customer_id)
    with actions.db.session() as session:
        customer = session.get(Customer, customer_id)
        if customer is None:
            raise RecordNotFound("customer", customer_id)
        ours, stripe_id = customer.email.strip(), customer.stripe_customer_id
        name = shown_name(customer.name, customer.email)

    def audit(outcome: str, summary: str) -> None:
        actions.audit(
            AuditEntry(actor, "push_email", "customer", customer_id, outcome, summary, None, stripe_id)
        )

    olds = [e.strip() for e in old_emails if e and e.strip() and not same_email(e, ours)]
    pushed: list[str] = []
    already: list[str] = []
    if stripe_id:
        if actions.gateway is None:
            message = "Stripe is not connected to the bot (STRIPE_API_KEY is not set), so nothing was pushed."
            audit("failed", message)
            raise Failed(message)
        try:
            theirs = actions.gateway.customer_email(stripe_id)
            if same_email(theirs, ours):
                already.append("Stripe")
            else:
                if theirs:
                    olds.insert(0, theirs)
                actions.gateway.update_email(
                    stripe_id, ours, idempotency_key=_stripe_key(customer_id, ours, theirs)
                )
                pushed.append("Stripe")
        except StripeFailure as failure:
            audit(
                "unknown" if failure.outcome_unknown else "failed",
                f"pushing {ours} to Stripe: {failure.user_message}",
            )
            raise Failed(failure.user_message) from failure

    missing: list[str] = []
    failures: list[str] = []
    for crm in crms:
        try:
            if crm.find_contact(ours) is not None:
                already.append(crm.name)
                continue
            for old in _distinct(olds):
                contact = crm.find_contact(old)
                if contact is not None:
                    crm.change_email(contact, ours)
                    pushed.append(crm.name)
                    break
            else:
                missing.append(crm.name)
        except CrmError as error:
            failures.append(error.user_message)

    summary = _summary(name, ours, pushed, already, missing)
    if failures:
        done = f"Pushed {ours} to {_and(pushed)}, but " if pushed else ""
        message = f"{done}{' '.join(failures)} Our record is unchanged."
        message = message[0].upper() + message[1:]
        audit("failed", f"{summary}; failed: {' '.join(failures)}")
        raise Failed(message)
    audit("succeeded", summary)
    return summary


def _summary(name: str, ours: str, pushed: list[str], already: list[str], missing: list[str]) -> str:
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


def _stripe_key(customer_id: int, ours: str, theirs: str | None) -> str:
    """Derived from our row and what Stripe held, so a retry of the same push is one change in Stripe."""
    to = hashlib.sha256(ours.encode()).hexdigest()[:16]
    was = hashlib.sha256((theirs or "").encode()).hexdigest()[:16]
    return f"push_email:customer:{customer_id}:{to}:from:{was}"


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _distinct(emails: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for email in emails:
        if not any(same_email(email, s) for s in seen):
            seen.append(email)
    return seen
