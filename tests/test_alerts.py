"""Missed-payment alerts: one post per missed payment however often and however many times at once the job
runs, updated when the payment is made, with buttons that work; `run-job` and the clock process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta

import pytest
from slack_sdk import WebClient
from sqlalchemy import select, update

from bot.models import MissedPaymentAlert, Payment
from devkit.local_slack import SlackPerson, wsgi_transport
from runtime.jobs import run_missed_payments
from tests import factories as make
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
    return WebClient(token="xoxb-test", base_url=slack.api_url)


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


def test_a_failed_post_is_tried_again_next_run(db, slack, missed):
    unreachable = WebClient(token="xoxb-test", base_url="http://127.0.0.1:9/api/")
    unreachable.retry_handlers.clear()

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
