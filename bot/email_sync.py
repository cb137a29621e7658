"""The email-sync check: which customers' emails in Stripe and in connected CRMs differ from ours, and pushing
ours to them. Our record is the source of truth: nothing here ever changes it.

Comparing with Stripe costs one list call per 100 Stripe customers and one query of ours per page (the page's
ids, `IN (…)`), never a call or a query per customer, so every run compares every customer with Stripe.

CRMs offer no cheap way to match their contacts to our customers in bulk (a contact carries no Stripe or customer
id we could join on, and listing a whole CRM to compare address books would flag everyone who simply is not in
it), so they are asked one contact at a time, by address: do you have our address, and if not, one of the old
ones? An old address is what makes a CRM's contact recognisably this customer's, so the CRMs are asked about the
customers with one, kept in `old_emails`:
- every change of our record's email notes the address it replaces (`note_old_email`: the change-email action, and
  Stripe's `customer.updated` synced into our record), and Stripe's address is noted when the check finds it
  differing;
- a noted address is *due*: the next check asks the CRMs about its customer, and clears it once no system holds an
  address of theirs other than ours (Stripe agrees; each CRM has ours, or neither). While one still does, it stays
  due, and the customer is listed (with a Push button) at every check until the push fixes it;
- a full check (`full=True`) makes every noted address due again: for a CRM connected since, or one that took an
  old address back.
A customer with no old address is not asked about: a CRM could only answer that it has our address, or nothing
the check could tell is theirs.

Each run asks the CRMs at most `crm_calls` times, due customers in order (never asked first, then those asked
longest ago); the rest stay due for the next run. A run that dies or is stopped part-way loses nobody: an address
stops being due only in the transaction written after every CRM answered for its customer, and only the rows read
before asking (a change made meanwhile is a new row, still due).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from bot.crm import Crm, CrmError, distinct_emails, same_email
from bot.db import Database
from bot.models import Customer, OldEmail
from bot.naming import shown_name
from bot.stripe_gateway import StripeFailure, StripeGateway
from bot.viewmodels import Difference

logger = logging.getLogger(__name__)

# CRM requests one run may make, at most (a lookup is one request; its retries are not counted). ActiveCampaign
# allows 5 requests a second, so this is 200 seconds of its quota.
CRM_CALLS = 1_000
NOT_CONNECTED = "Stripe is not connected to the bot (STRIPE_API_KEY is not set), so no emails were compared."


@dataclass(frozen=True)
class EmailCheck:
    """What one run of the check found. Unpacks as `differences, checked = check_emails(...)`."""

    differences: list[Difference]
    checked: int  # our customers compared with Stripe (those found in Stripe)
    crms: list[str] = field(default_factory=list)  # the CRMs connected
    problems: list[str] = field(default_factory=list)  # plain sentences: what could not be checked, and why
    asked: int = 0  # customers the CRMs were asked about
    waiting: int = 0  # customers still due that this run did not ask about: the next run does
    calls: int = 0  # CRM requests made

    def __iter__(self) -> Iterator[object]:
        return iter((self.differences, self.checked))


def note_old_email(session: Session, customer_id: int, old_email: str, now: datetime) -> None:
    """Our record of this customer is changing its email from `old_email`: the next check asks the CRMs about
    them. Called in the transaction that makes the change, so the two stand or fall together."""
    if old_email and old_email.strip():
        session.add(OldEmail(customer_id=customer_id, email=old_email.strip(), noted_at=now, due=True))


def old_emails(difference: Difference) -> list[str]:
    """The addresses other systems still hold for this customer, to look up and replace when pushing."""
    found = [difference.stripe_email or ""] + [email or "" for _crm, email in difference.crm_differences]
    return distinct_emails(e for e in found if e and not same_email(e, difference.our_email))


def check_emails(
    db: Database,
    gateway: StripeGateway | None,
    crms: Sequence[Crm],
    *,
    full: bool = False,
    crm_calls: int = CRM_CALLS,
    progress: Callable[[str, int], None] | None = None,
    stopping: threading.Event | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> EmailCheck:
    """Compare every customer linked to Stripe with Stripe's email, page by page; then ask the CRMs about the
    customers due (see the module docstring), within `crm_calls` requests. A CRM that fails is reported once and
    not asked again this run (its customers stay due); a Stripe failure ends the comparison with Stripe where it
    got to and is reported. When `stopping` is set, no more customers are asked about and the report says what
    was found so far."""
    crm_names = [crm.name for crm in crms]
    if gateway is None:
        return EmailCheck([], 0, crm_names, [NOT_CONNECTED])
    started = clock()
    if full:
        with db.session() as session:
            session.execute(update(OldEmail).values(due=True))
    problems: list[str] = []
    in_stripe, checked = _compare_with_stripe(db, gateway, started, problems, progress, stopping)
    asked: dict[int, Asked] = {}
    calls = 0
    if crms:
        asked, calls = _ask_crms(db, crms, in_stripe, crm_calls, started, problems, progress, stopping)
    differences = [d for d in (_difference(c, in_stripe.get(c.customer_id)) for c in asked.values()) if d]
    differences += [d for cid, d in in_stripe.items() if d.stripe_email is not None and cid not in asked]
    differences.sort(key=lambda d: (d.name.lower(), d.customer_id))
    waiting = _still_waiting(db, started) if crms else 0
    logger.info(
        "email check: %s of %s customers differ; CRMs asked about %s customers in %s requests, %s left for the "
        "next run",
        len(differences),
        checked,
        len(asked),
        calls,
        waiting,
    )
    return EmailCheck(differences, checked, crm_names, problems, len(asked), waiting, calls)


def _compare_with_stripe(
    db: Database,
    gateway: StripeGateway,
    now: datetime,
    problems: list[str],
    progress: Callable[[str, int], None] | None,
    stopping: threading.Event | None,
) -> tuple[dict[int, Difference], int]:
    """Every customer of ours found in Stripe, by id: a Difference whose `stripe_email` is None when Stripe
    agrees. Stripe's address for those who differ is noted, due, unless noted already."""
    found: dict[int, Difference] = {}
    cursor: str | None = None
    while True:
        if stopping is not None and stopping.is_set():
            problems.append("The check was stopped before it had compared every customer with Stripe.")
            break
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
            differing = {}
            for customer_id, name, our_email, stripe_id in ours:
                stripe_email = theirs[stripe_id] or ""
                differs = not same_email(stripe_email, our_email)
                found[customer_id] = Difference(
                    customer_id, shown_name(name, our_email), our_email, stripe_email if differs else None
                )
                if differs and stripe_email.strip():
                    differing[customer_id] = stripe_email
            _note_unless_noted(session, differing, now)
        if progress:
            progress("customers compared with Stripe", len(found))
        if cursor is None:
            break
    return found, len(found)


def _note_unless_noted(session: Session, addresses: dict[int, str], now: datetime) -> None:
    if not addresses:
        return
    """Stripe holds these addresses (customer id -> address): each is noted, or due again when noted already, so
    the CRMs are asked about the customer while Stripe differs."""
    noted = session.execute(
        select(OldEmail.id, OldEmail.customer_id, OldEmail.email, OldEmail.due).where(
            OldEmail.customer_id.in_(list(addresses))
        )
    ).all()
    again: list[int] = []
    for customer_id, address in addresses.items():
        rows = [(i, due) for i, c, e, due in noted if c == customer_id and same_email(e, address)]
        if not rows:
            note_old_email(session, customer_id, address, now)
        again += [i for i, due in rows if not due]
    if again:
        session.execute(update(OldEmail).where(OldEmail.id.in_(again)).values(due=True))


@dataclass(frozen=True)
class Asked:
    """What the CRMs answered about one customer: each CRM without our address, with the old one it holds."""

    customer_id: int
    name: str
    our_email: str
    crm_differences: list[tuple[str, str | None]]


def _ask_crms(
    db: Database,
    crms: Sequence[Crm],
    in_stripe: dict[int, Difference],
    budget: int,
    started: datetime,
    problems: list[str],
    progress: Callable[[str, int], None] | None,
    stopping: threading.Event | None,
) -> tuple[dict[int, Asked], int]:
    """Ask the CRMs about the customers due, in order, until the budget or the due customers run out (the first
    customer is asked about even when their old addresses alone need more than the budget, so none blocks the
    queue)."""
    failed: set[str] = set()
    asked: dict[int, Asked] = {}
    calls = 0
    for customer_id in _due_customers(db, started, most=max(1, budget // len(crms))):
        if stopping is not None and stopping.is_set():
            break
        live = [crm for crm in crms if crm.name not in failed]
        if not live:
            break
        with db.session() as session:
            customer = session.get(Customer, customer_id)
            if customer is None:  # deleted since: its addresses went with it
                continue
            name, ours = shown_name(customer.name, customer.email), customer.email
            rows = session.execute(
                select(OldEmail.id, OldEmail.email)
                .where(OldEmail.customer_id == customer_id)
                .order_by(OldEmail.id.desc())  # the latest first: the likeliest to have spread
            ).all()
        if not rows:
            continue
        olds = distinct_emails(e for _id, e in rows if not same_email(e, ours))
        needed = len(live) * (1 + len(olds))
        if asked and calls + needed > budget:
            break
        crm_differences: list[tuple[str, str | None]] = []
        complete = True
        for crm in live:
            try:
                calls += 1
                if crm.find_contact(ours) is not None:
                    continue  # it has our address: in step
                holding = None
                for old in olds:
                    calls += 1
                    contact = crm.find_contact(old)
                    if contact is not None:
                        holding = contact.email
                        break
            except CrmError as error:
                failed.add(crm.name)
                problems.append(f"{crm.name} could not be checked: {error.user_message}")
                complete = False
                continue
            crm_differences.append((crm.name, holding))
        asked[customer_id] = Asked(customer_id, name, ours, crm_differences)
        if complete:
            stripe = in_stripe.get(customer_id)
            in_step = not any(old for _crm, old in crm_differences) and (
                stripe is None or stripe.stripe_email is None
            )
            _looked(db, customer_id, max(i for i, _e in rows), in_step, at=started)
        if progress:
            progress("customers asked about in the CRMs", len(asked))
    return asked, calls


def _due_customers(db: Database, started: datetime, *, most: int) -> list[int]:
    """The customers due (never asked about first, then those asked longest ago), not yet asked this run."""
    never_asked = func.count() > func.count(OldEmail.looked_at)
    with db.session() as session:
        return list(
            session.scalars(
                select(OldEmail.customer_id)
                .where(OldEmail.due)
                .group_by(OldEmail.customer_id)
                .having(never_asked | (func.max(OldEmail.looked_at) < started))
                .order_by(
                    case((never_asked, 0), else_=1),
                    func.max(OldEmail.looked_at).nulls_first(),
                    func.min(OldEmail.id),
                )
                .limit(most)
            )
        )


def _looked(db: Database, customer_id: int, up_to: int, in_step: bool, *, at: datetime) -> None:
    """Every CRM answered for this customer: their addresses read (ids up to `up_to`) were asked about `at` (the
    run's start, which is how a run knows whom it asked already), and are no longer due when no system holds an
    address other than ours."""
    values: dict[str, object] = {"looked_at": at}
    if in_step:
        values["due"] = False
    with db.session() as session:
        session.execute(
            update(OldEmail).where(OldEmail.customer_id == customer_id, OldEmail.id <= up_to).values(**values)
        )


def _still_waiting(db: Database, started: datetime) -> int:
    """Due customers this run did not ask about."""
    with db.session() as session:
        waiting = (
            select(OldEmail.customer_id)
            .where(OldEmail.due, OldEmail.looked_at.is_(None) | (OldEmail.looked_at < started))
            .distinct()
            .subquery()
        )
        return session.scalar(select(func.count()).select_from(waiting)) or 0


def _difference(asked: Asked, stripe: Difference | None) -> Difference | None:
    """The report's row for a customer the CRMs were asked about: listed when Stripe or a CRM holds an old
    address (a CRM with neither address is shown beside those, not listed on its own)."""
    stripe_email = stripe.stripe_email if stripe else None
    if stripe_email is None and not any(old for _crm, old in asked.crm_differences):
        return None
    return Difference(asked.customer_id, asked.name, asked.our_email, stripe_email, asked.crm_differences)
