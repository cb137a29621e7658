"""Missed-payment alerts: one post per missed payment however often and however many times at once the job
runs, updated when the payment is made, with buttons that work; `run-job` and the clock process."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from slack_sdk import WebClient
from sqlalchemy import event, insert, select, update

from blocks.limits import message_problems
from bot.alerts import ABANDONED_CLAIM, alerted_payment, ended_since
from bot.models import MissedPaymentAlert, Order, Payment, Subscription
from devkit.local_slack import SlackPerson, wsgi_transport
from runtime.jobs import jobs_slack_client, run_missed_payments
from tests import factories as make
from tests.clock import Clock
from tests.conftest import SIGNING_SECRET
from tests.slack_text import buttons, text_of

CHANNEL = "C0ALERTS1"


def posts(slack) -> list:
    return [c for c in slack.calls if c.method == "chat.postMessage" and c.args["channel"] == CHANNEL]


@pytest.fixture
def missed(db):
    """Jane's subscription with a failed payment, and an ended subscription with an old failed payment."""
    with db.session() as s:
        jane = make.customer(s)
        sub = make.subscription(s, jane, "Pro Membership")
        payment = make.payment(s, sub, "failed", due_at=make.T0, reason="Your card was declined.")
        ended = make.subscription(s, jane, "Old Newsletter", status="canceled", canceled_at=make.T0)
        make.payment(s, ended, "failed", due_at=make.T0 - timedelta(days=90), reason="Expired card.")
        return {"customer": jane.id, "subscription": sub.id, "payment": payment.id}


def client_for(slack) -> WebClient:
    return jobs_slack_client("xoxb-test", slack.api_url)


def clock():
    return make.T0 + timedelta(days=3)


def test_each_missed_payment_is_announced_once(db, slack, missed):
    first = run_missed_payments(db, client_for(slack), CHANNEL, clock=clock)
    again = run_missed_payments(db, client_for(slack), CHANNEL, clock=clock)

    assert (first.announced, again.announced) == (1, 0)
    [alert] = posts(slack)
    message = slack.visible(CHANNEL, "U0ANYONE01")[0]
    text = text_of(message)
    assert "Missed payment" in text and "Jane Doe" in text and "$29.00" in text and "Pro Membership" in text
    assert "Your card was declined." in text and "Overdue 3 days" in text
    assert buttons(message) == ["Open record", "Pause payments", "Cancel subscription"]
    assert "Old Newsletter" not in alert.args["text"], "an ended subscription is not chased"


def test_two_runs_at_the_same_moment_announce_once(db, slack, missed):
    with db.session() as s:
        for i in range(5):
            extra = make.subscription(s, make.customer(s, f"Person Number{i}"), f"Plan {i}")
            make.payment(s, extra, "failed", reason="Insufficient funds.")
    barrier = threading.Barrier(2)
    results = []

    def run() -> None:
        barrier.wait()
        results.append(run_missed_payments(db, client_for(slack), CHANNEL, clock=clock))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(r.announced for r in results) == 6
    assert len(posts(slack)) == 6
    assert len({c.args["text"] for c in posts(slack)}) == 6


def test_a_later_payment_updates_the_alert(db, slack, missed):
    run_missed_payments(db, client_for(slack), CHANNEL, clock=clock)
    with db.session() as s:
        s.execute(update(Payment).where(Payment.id == missed["payment"]).values(status="paid"))

    result = run_missed_payments(db, client_for(slack), CHANNEL, clock=clock)

    assert result.updated == 1
    [message] = slack.visible(CHANNEL, "U0ANYONE01")
    assert "*Paid*" in text_of(message) and "has been paid" in text_of(message)
    assert buttons(message) == ["Open record"]
    assert run_missed_payments(db, client_for(slack), CHANNEL, clock=clock).updated == 0
    with db.session() as s:
        assert s.scalar(select(MissedPaymentAlert.resolved_at)) is not None


@pytest.mark.parametrize(
    ("status", "said"),
    [
        ("void", "*Voided* · *Jane Doe*\n$29.00 for the subscription *Pro Membership*, missed "),
        (
            "uncollectible",
            "*Written off* · *Jane Doe*\n$29.00 for the subscription *Pro Membership*, missed ",
        ),
    ],
)
def test_a_bill_voided_or_written_off_since_ends_its_alert(db, slack, missed, status, said):
    """A pause that stopped the failed bill (or Stripe) voided or wrote it off: the alert says so, once."""
    run_missed_payments(db, client_for(slack), CHANNEL, clock=clock)
    with db.session() as s:
        s.execute(update(Payment).where(Payment.id == missed["payment"]).values(status=status))

    assert run_missed_payments(db, client_for(slack), CHANNEL, clock=clock).updated == 1

    [message] = slack.visible(CHANNEL, "U0ANYONE01")
    text = text_of(message)
    assert said in text and "Stripe no longer retries it" in text
    assert ("the customer still owes it" in text) == (status == "uncollectible")
    assert buttons(message) == ["Open record"], "nothing left to pause or cancel for it"
    assert message_problems(message.blocks, message.text) == []
    assert run_missed_payments(db, client_for(slack), CHANNEL, clock=clock).updated == 0


def test_a_failed_post_is_tried_again_next_run(db, slack, missed):
    unreachable = jobs_slack_client("xoxb-test", "http://127.0.0.1:9/api/")

    assert run_missed_payments(db, unreachable, CHANNEL, clock=clock).announced == 0
    assert run_missed_payments(db, client_for(slack), CHANNEL, clock=clock).announced == 1


def test_the_alert_buttons_work_for_whoever_clicks(harness, missed):
    run_missed_payments(harness.db, client_for(harness.slack), CHANNEL, clock=clock)
    colleague = SlackPerson(
        harness.slack, wsgi_transport(harness.web), SIGNING_SECRET, user_id="U0COLLEAG1", channel_id=CHANNEL
    )
    [alert] = colleague.visible()

    colleague.click(alert, f"open_customer-{missed['customer']}")

    private = [m for m in colleague.visible() if m.ephemeral]
    assert len(private) == 1 and "Lifetime value" in text_of(private[0])
    assert text_of(harness.slack.message(alert.ts)) == text_of(alert), "the alert itself is unchanged"
    colleague.click(alert, f"pause_payments-{missed['subscription']}")
    assert "Only payment admins" in text_of(colleague.visible()[-1])


def cli_env(db, slack, **extra) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "STRIPE_", "DATABASE_URL", "ALERTS_"))
    }
    return {
        **base,
        "DATABASE_URL": db.url,
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_API_URL": slack.api_url,
        **extra,
    }


def test_run_job_posts_now(db, slack, missed, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "run-job", "missed-payments"],
        env=cli_env(db, slack, ALERTS_CHANNEL=CHANNEL),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert len(posts(slack)) == 1


def test_run_job_without_an_alerts_channel_says_which_variable(db, slack, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "run-job", "missed-payments"],
        env=cli_env(db, slack),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("customer-bot: ALERTS_CHANNEL is not set")


def test_the_clock_process_runs_the_alerts_and_stops_cleanly_on_sigterm(db, slack, missed, tmp_path):
    log = tmp_path / "clock.log"
    with open(log, "w") as out:
        clock_process = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", "scheduler"],
            env=cli_env(db, slack, ALERTS_CHANNEL=CHANNEL),
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            slack.wait_for(lambda: len(posts(slack)) == 1, timeout=60)
        finally:
            clock_process.send_signal(signal.SIGTERM)
            clock_process.wait(timeout=30)
    output = log.read_text()
    assert clock_process.returncode == 0, output
    assert "scheduler started" in output and "SIGTERM received" in output and "scheduler stopped" in output


# Exactly once when the job dies or loses Slack's answer at the worst moment ------------------------------------


def alert_row(db) -> MissedPaymentAlert:
    with db.session() as s:
        row = s.scalar(select(MissedPaymentAlert))
        s.expunge(row)
        return row


def job_process(db, slack, tmp_path, *command: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", *command],
        env=cli_env(db, slack, ALERTS_CHANNEL=CHANNEL),
        cwd=tmp_path,
        stdout=open(tmp_path / "job.log", "w"),
        stderr=subprocess.STDOUT,
    )


def test_a_job_killed_between_posting_and_marking_finds_its_alert_instead_of_posting_again(
    db, slack, missed, tmp_path
):
    held = slack.hold_answer("chat.postMessage")  # Slack posts the alert and keeps the answer
    job = job_process(db, slack, tmp_path, "run-job", "missed-payments")
    try:
        assert held.reached.wait(60), (tmp_path / "job.log").read_text()
        job.kill()  # SIGKILL: the alert is in the channel, the job never learns its ts nor marks it posted
        job.wait(timeout=30)
    finally:
        held.release()
        if job.poll() is None:
            job.kill()
    [alert] = slack.visible(CHANNEL, "U0ANYONE01")
    assert alert_row(db).posted_at is None

    later = Clock()
    too_soon = run_missed_payments(db, client_for(slack), CHANNEL, clock=later)
    later.advance(ABANDONED_CLAIM + timedelta(seconds=1))
    after = run_missed_payments(db, client_for(slack), CHANNEL, clock=later)
    again = run_missed_payments(db, client_for(slack), CHANNEL, clock=later)

    assert (too_soon.announced, too_soon.found) == (0, 0), "a fresh claim is nobody else's business"
    assert (after.announced, after.found) == (0, 1)
    assert (again.announced, again.found) == (0, 0)
    assert slack.visible(CHANNEL, "U0ANYONE01") == [alert] and len(posts(slack)) == 1
    row = alert_row(db)
    assert row.message_ts == alert.ts and row.posted_at is not None
    [looked] = [c for c in slack.calls if c.method == "conversations.history"]
    assert looked.args["channel"] == CHANNEL and looked.args["include_all_metadata"] in ("1", "true")
    assert float(looked.args["oldest"]) < float(alert.ts), "the search reaches back before the claim"


@pytest.mark.parametrize("first_try", ["answer lost", "Slack failed"])
def test_while_the_channel_history_cannot_be_read_a_maybe_posted_alert_waits_then_goes_out_once(
    db, slack, missed, first_try, caplog
):
    later = Clock()
    if first_try == "answer lost":
        slack.lose_answer("chat.postMessage")  # the alert goes up; the connection drops before the answer
    else:
        slack.refuse("chat.postMessage", "internal_error")  # Slack says part of the work may have been done

    first = run_missed_payments(db, client_for(slack), CHANNEL, clock=later)
    in_channel_after_first = len(slack.visible(CHANNEL, "U0ANYONE01"))
    slack.accept("chat.postMessage")
    slack.refuse("conversations.history", "internal_error")
    with caplog.at_level(logging.ERROR, logger="customer_bot.jobs"):
        blind = run_missed_payments(db, client_for(slack), CHANNEL, clock=later)
    slack.accept("conversations.history")
    sighted = run_missed_payments(db, client_for(slack), CHANNEL, clock=later)
    again = run_missed_payments(db, client_for(slack), CHANNEL, clock=later)

    landed = first_try == "answer lost"
    assert first.announced == 0 and in_channel_after_first == (1 if landed else 0)
    assert (blind.announced, blind.waiting) == (0, 1)
    assert any(f"payment {missed['payment']} may already be in" in r.getMessage() for r in caplog.records)
    assert (sighted.found, sighted.announced) == ((1, 0) if landed else (0, 1))
    assert (again.found, again.announced, again.waiting) == (0, 0, 0)
    [alert] = slack.visible(CHANNEL, "U0ANYONE01")
    assert alert.metadata == {
        "event_type": "missed_payment_alert",
        "event_payload": {"payment_id": missed["payment"]},
    }
    assert alert_row(db).message_ts == alert.ts


def test_sigterm_stops_the_clock_within_20_s_after_the_alert_in_hand_and_loses_none(db, slack, tmp_path):
    with db.session() as s:
        for i in range(3):
            plan = make.subscription(s, make.customer(s, f"Person Number{i}"), f"Plan {i}")
            make.payment(s, plan, "failed", reason="Insufficient funds.")
    held = slack.hold_answer("chat.postMessage")  # the job is in the middle of its first alert
    clock_process = job_process(db, slack, tmp_path, "scheduler")
    log = tmp_path / "job.log"
    try:
        assert held.reached.wait(60), log.read_text()
        signalled = time.monotonic()
        clock_process.send_signal(signal.SIGTERM)
        deadline = signalled + 20
        while "SIGTERM received" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)  # polling the process's log for the moment it heard the signal
        held.release()
        clock_process.wait(timeout=30)
        stopped_after = time.monotonic() - signalled
    finally:
        held.release()
        if clock_process.poll() is None:
            clock_process.kill()
    output = log.read_text()

    assert clock_process.returncode == 0, output
    assert stopped_after < 20, f"stopped {stopped_after:.1f} s after SIGTERM"
    assert len(posts(slack)) == 1, "the alert in hand was finished, no other begun"
    assert "scheduler stopped" in output
    next_run = run_missed_payments(db, client_for(slack), CHANNEL, clock=Clock())
    assert next_run.announced == 2
    announced = [alerted_payment(m.metadata) for m in slack.visible(CHANNEL, "U0ANYONE01")]
    with db.session() as s:
        failed = set(s.scalars(select(Payment.id).where(Payment.status == "failed")))
        assert (
            set(
                s.scalars(
                    select(MissedPaymentAlert.payment_id).where(MissedPaymentAlert.posted_at.is_not(None))
                )
            )
            == failed
        )
    assert sorted(announced) == sorted(failed), "each missed payment announced once"


STUCK_CLOCK = """
import logging, sys, threading
from bot.settings import Settings
from runtime.scheduler import run_scheduler

logging.basicConfig(level=logging.INFO)

def stuck(stopping=None):
    print("job started", flush=True)
    threading.Event().wait()  # a job that never looks at the stop flag

def idle(stopping=None):
    pass

jobs = {"missed-payments": stuck, "settle-unanswered": idle, "email-sync": idle}
sys.exit(run_scheduler(Settings(), jobs, stop_within=float(sys.argv[1])))
"""


def test_a_job_that_does_not_stop_is_left_behind_when_the_stop_budget_runs_out(tmp_path):
    log = tmp_path / "clock.log"
    with open(log, "w") as out:
        clock_process = subprocess.Popen(
            [sys.executable, "-c", STUCK_CLOCK, "1"], stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path
        )
    try:
        deadline = time.monotonic() + 30
        while "job started" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)  # polling the process's output for the job to be running
        signalled = time.monotonic()
        clock_process.send_signal(signal.SIGTERM)
        clock_process.wait(timeout=20)
        stopped_after = time.monotonic() - signalled
    finally:
        if clock_process.poll() is None:
            clock_process.kill()
    output = log.read_text()

    assert clock_process.returncode == 0, output
    assert 1 <= stopped_after < 10, f"stopped {stopped_after:.1f} s after SIGTERM"
    assert "missed-payments still running after 1.0 s" in output


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)  # it counts SQLite's virtual machine steps
def test_looking_for_paid_alerts_costs_the_same_however_many_payments_were_ever_paid(db, slack, missed):
    """The job starts from the alerts still unresolved: a shop's years of paid payments do not slow it down."""
    run_missed_payments(db, client_for(slack), CHANNEL, clock=clock)
    with db.session() as s:
        sub = s.get(Subscription, missed["subscription"])
        order_id = s.scalar(select(Order.id).where(Order.recurring_id == sub.id))
    before = _steps_to_find_paid_alerts(db)
    with db.engine.begin() as connection:
        connection.execute(
            insert(Payment),
            [
                {"recurring_id": sub.id, "due_at": make.T0 - timedelta(days=i + 1), "amount": 2900}
                | {"currency": "usd", "status": "paid", "order_id": order_id, "kind": "renewal"}
                for i in range(5000)
            ],
        )
    after = _steps_to_find_paid_alerts(db)
    assert after < before * 1.5, (before, after)


def _steps_to_find_paid_alerts(db) -> int:
    """SQLite virtual machine steps (in thousands) the job takes to find announced payments paid since."""
    steps = 0

    def step() -> int:
        nonlocal steps
        steps += 1
        return 0

    def watch(dbapi_connection, *_args) -> None:
        dbapi_connection.set_progress_handler(step, 1000)

    def unwatch(dbapi_connection, *_args) -> None:
        dbapi_connection.set_progress_handler(None, 1000)

    event.listen(db.engine, "checkout", watch)
    event.listen(db.engine, "checkin", unwatch)
    try:
        assert ended_since(db, limit=50) == []
    finally:
        event.remove(db.engine, "checkout", watch)
        event.remove(db.engine, "checkin", unwatch)
    return steps + 1
