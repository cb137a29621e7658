"""A payment plan's schedule: what is left to pay, and when the instalments still to come are due.

A plan is a price split into a fixed number of instalments, billed every interval from its next bill date. The
instalments still to come are those not yet paid: a failed one is among them until it is paid (it is also a missed
payment), so what is left always adds up to the instalments not paid.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.money import Money

MOST_SHOWN = 24  # upcoming instalments one schedule lists; the rest are counted
_ENDED = ("canceled", "completed")


@dataclass(frozen=True)
class Instalment:
    number: int  # 1-based, of the plan's total
    due_at: datetime | None  # None while payments are paused with no date to resume
    amount: Money


@dataclass(frozen=True)
class PlanSchedule:
    remaining: Money  # the instalments not paid yet
    upcoming: list[Instalment]  # the next ones, at most MOST_SHOWN, in order
    not_shown: int  # upcoming instalments beyond those listed


def add_interval(moment: datetime, interval: str, count: int) -> datetime:
    """`moment` moved on by `count` billing intervals, as Stripe bills: a month later is the same day of the month,
    or the month's last day when it is shorter (Jan 31 → Feb 28)."""
    if interval == "day":
        return moment + timedelta(days=count)
    if interval == "week":
        return moment + timedelta(weeks=count)
    months = count * (12 if interval == "year" else 1)
    year, month = divmod(moment.month - 1 + months, 12)
    year += moment.year
    month += 1
    return moment.replace(year=year, month=month, day=min(moment.day, _days_in_month(year, month)))


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def plan_schedule(
    *,
    price: Money,
    installments_total: int,
    installments_paid: int,
    next_bill_at: datetime | None,
    interval: str,
    interval_count: int,
    status: str,
    paused_until: datetime | None = None,
    payments_paused: bool = False,
) -> PlanSchedule:
    """The schedule of a plan as our record has it. An ended plan has nothing upcoming; a paused one resumes on
    `paused_until` (or, paused until resumed, has no dates)."""
    paid_count = max(0, min(installments_paid, installments_total))
    left = installments_total - paid_count
    currency = price.currency
    remaining = Money(left * price.amount, currency)
    if status in _ENDED or left == 0:
        return PlanSchedule(remaining, [], 0)
    first = next_bill_at
    if payments_paused:
        first = max(paused_until, next_bill_at) if paused_until and next_bill_at else paused_until
    shown = min(left, MOST_SHOWN)
    upcoming = [
        Instalment(
            paid_count + k + 1,
            add_interval(first, interval, k * interval_count) if first is not None else None,
            price,
        )
        for k in range(shown)
    ]
    return PlanSchedule(remaining, upcoming, left - shown)
