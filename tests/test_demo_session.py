"""A merchant's first day in `customer-bot shell`: the whole demo, typed into the real command, works against the
local Stripe it starts, with no "cannot tell" and no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.db import Database
from devkit.seed import seed

SESSION_LIMIT = 60  # seconds: a hung shell fails the test instead of holding the suite

SUCCESSES = (
    "Zoë Lefèvre",  # the README's `/customer zoe`
    "Reason: Requested by customer",  # the reason the refund form offers first, kept
    "✅ Refunded $10.00 of order #100010 (Jane Doe).",
    "Partially refunded ($10.00 back)",
    "✅ Refunded $224.75 of order #100006 (Jane Doe) in 8 payments.",
    "✅ Paused payments of Yoga Teacher Training (Jane Doe) until",
    "✅ Moved the next bill date of Yoga Teacher Training (Jane Doe) to",
    "✅ Set Yoga Teacher Training (Jane Doe) back to active.",
    "✅ Charged $12.50 to Jane Doe's card for 1 × E-book: Deep Work Habits.",
    "── posted in #",
)


def run_shell(tmp_path: Path, lines: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    database = f"sqlite:///{tmp_path}/demo.db"
    db = Database(database)
    db.upgrade()
    seed(db, 30)  # as of today; Jane Doe is customer 1, Zoë Lefèvre customer 21
    db.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "STRIPE_", "DATABASE_URL"))}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "shell"],
        input="".join(line + "\n" for line in lines),
        env={**env, "DATABASE_URL": database},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=SESSION_LIMIT,
    )
    return result, time.monotonic() - started


def test_a_whole_demo_session_works_against_the_local_stripe(tmp_path):
    today = datetime.now(UTC).date()
    resume_on, bill_on = today + timedelta(days=30), today + timedelta(days=45)
    # Jane's card: 7 opens her payment plan, 8 her newest order (a checkout), 12 her Pro Membership's order (its
    # eight payments), 18 New order. An order's record: 1 Refund, 2 Refund whole order, 3 Send receipt, then Add note and
    # Back. The plan's record: 2 Pause payments, 3 Change next bill date, 4 Change status, 8 Back (after Open
    # order and Add note); History and its Newer / Older come last. Every action form ends with an optional note. In a modal, an
    # empty line keeps what the form shows (Enter), then confirms.
    lines = [
        "/customer zoe",
        "/customer jane doe",
        *("8", "1", "10.00", "", "", "", ""),  # refund $10 of the newest order, with the reason offered first
        "5",  # back to Jane's card (after Send receipt and Add note)
        *("12", "2", "", "", "", ""),  # refund the whole Pro Membership order: every payment left, at once
        "4",  # back to Jane's card (nothing left to refund: Send receipt, Open subscription, Add note, Back)
        "7",  # open her payment plan
        *("2", "", resume_on.isoformat(), "", ""),  # pause payments until a date (no note)
        *("3", bill_on.isoformat(), "", ""),  # move the next bill date
        *("4", "1", "", ""),  # change status: back to active
        "8",  # back to Jane's card (after Open order and Add note)
        *("18", "7", "", "", "", "", "", "", ""),  # new order: the e-book, at its price, confirmed
        "23",  # share the card in the channel (an eleventh order added a page: Older is 18 now)
        "quit",
    ]

    result, seconds = run_shell(tmp_path, lines)

    said = result.stdout
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in said + result.stderr
    assert "cannot tell" not in said, said
    assert "✗" not in said, "no form was refused"
    missing = [success for success in SUCCESSES if success not in said]
    assert not missing, f"missing {missing} in:\n{said}"
    assert seconds < SESSION_LIMIT
