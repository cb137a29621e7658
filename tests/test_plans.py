"""A payment plan's schedule as plain arithmetic: what is left, and when each instalment still to come is due."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.money import Money
from bot.plans import MOST_SHOWN, add_interval, plan_schedule

JAN_31 = datetime(2027, 1, 31, 9, 30, tzinfo=UTC)


def test_a_month_on_is_the_same_day_or_the_months_last():
    assert add_interval(JAN_31, "month", 1) == datetime(2027, 2, 28, 9, 30, tzinfo=UTC)
    assert add_interval(datetime(2028, 1, 31, tzinfo=UTC), "month", 1) == datetime(2028, 2, 29, tzinfo=UTC)
    assert add_interval(JAN_31, "month", 3) == datetime(2027, 4, 30, 9, 30, tzinfo=UTC)
    assert add_interval(JAN_31, "month", 12) == datetime(2028, 1, 31, 9, 30, tzinfo=UTC)
    assert add_interval(JAN_31, "year", 1) == datetime(2028, 1, 31, 9, 30, tzinfo=UTC)
    assert add_interval(JAN_31, "week", 2) == datetime(2027, 2, 14, 9, 30, tzinfo=UTC)
    assert add_interval(JAN_31, "day", 1) == datetime(2027, 2, 1, 9, 30, tzinfo=UTC)


def plan(**changes):
    values = {
        "price": Money(15000, "usd"),
        "installments_total": 6,
        "installments_paid": 2,
        "next_bill_at": JAN_31,
        "interval": "month",
        "interval_count": 1,
        "status": "active",
    }
    return plan_schedule(**(values | changes))


def test_what_is_left_and_when_each_instalment_is_due():
    schedule = plan()
    assert schedule.remaining == Money(60000, "usd")
    assert [(i.number, i.due_at.date().isoformat(), i.amount.amount) for i in schedule.upcoming] == [
        (3, "2027-01-31", 15000),
        (4, "2027-02-28", 15000),
        (5, "2027-03-31", 15000),
        (6, "2027-04-30", 15000),
    ]
    assert schedule.not_shown == 0


def test_every_other_month_and_zero_decimal_currencies():
    schedule = plan(price=Money(50000, "jpy"), interval_count=2, installments_paid=4)
    assert schedule.remaining == Money(100000, "jpy")
    assert [i.due_at.month for i in schedule.upcoming] == [1, 3]


def test_an_ended_or_fully_paid_plan_has_nothing_upcoming():
    assert plan(status="completed", installments_paid=6).upcoming == []
    assert plan(status="canceled").upcoming == [] and plan(status="canceled").remaining == Money(60000, "usd")
    assert plan(installments_paid=6).remaining == Money(0, "usd")


def test_a_paused_plan_resumes_on_its_date_or_has_none():
    resumes = datetime(2027, 3, 15, tzinfo=UTC)
    paused = plan(payments_paused=True, paused_until=resumes)
    assert [i.due_at.date().isoformat() for i in paused.upcoming[:2]] == ["2027-03-15", "2027-04-15"]
    until_resumed = plan(payments_paused=True, paused_until=None)
    assert [i.due_at for i in until_resumed.upcoming] == [None] * 4


def test_a_long_plan_lists_its_next_instalments_and_counts_the_rest():
    schedule = plan(installments_total=100, installments_paid=10, interval="week")
    assert len(schedule.upcoming) == MOST_SHOWN and schedule.not_shown == 90 - MOST_SHOWN
    assert schedule.remaining == Money(90 * 15000, "usd")
