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

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select

from bot.crm import Crm, CrmError, distinct_emails, same_email
from bot.db import Database
from bot.models import Customer
from bot.naming import shown_name
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
    return distinct_emails(e for e in found if e and not same_email(e, difference.our_email))


def check_emails(
    db: Database,
    gateway: StripeGateway | None,
    crms: Sequence[Crm],
    *,
    crm_lookups: int = CRM_LOOKUPS,
    progress: Callable[[str, int], None] | None = None,
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
        if progress:
            progress("customers compared with Stripe", checked)
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
