"""Benchmark: the missed-payment job when nothing is new, on the benchmark database (see search_bench.py).

Every missed payment is marked as already announced, then the job runs as the clock process would: it must find
nothing to post, and do it in well under 5 seconds on a million customers.

    python bench/alerts_bench.py [--database-url URL] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from slack_sdk import WebClient
from sqlalchemy import func, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.db import Database  # noqa: E402
from bot.models import MissedPaymentAlert, Payment, Recurring  # noqa: E402
from devkit.local_slack import LocalSlack  # noqa: E402
from runtime.jobs import run_missed_payments  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=f"sqlite:///{ROOT}/bench/data/bench-1m.db")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    db = Database(args.database_url)
    db.upgrade()
    with db.session() as session:
        recurring = session.scalar(select(func.count()).select_from(Recurring))
        failed = session.scalar(select(func.count()).select_from(Payment).where(Payment.status == "failed"))
        session.execute(text("DELETE FROM missed_payment_alerts"))
        session.execute(
            text(
                "INSERT INTO missed_payment_alerts (payment_id, channel, message_ts, claimed_at, posted_at) "
                "SELECT id, 'C0BENCH', '1.0', :now, :now FROM payments WHERE status = 'failed'"
            ),
            {
                "now": datetime.now(UTC).replace(tzinfo=None)
                if db.engine.dialect.name == "sqlite"
                else datetime.now(UTC)
            },
        )
        announced = session.scalar(select(func.count()).select_from(MissedPaymentAlert))
    print(
        f"{recurring:,} subscriptions and plans, {failed:,} failed payments, all {announced:,} already announced"
    )
    times = []
    with LocalSlack() as slack:
        client = WebClient(token="xoxb-bench", base_url=slack.api_url)
        for _ in range(args.runs):
            started = time.perf_counter()
            result = run_missed_payments(db, client, "C0BENCH")
            times.append(time.perf_counter() - started)
            assert result.announced == 0 and result.updated == 0, result
    print(
        f"job with nothing new: median {statistics.median(times):.2f} s, max {max(times):.2f} s over {args.runs} runs"
    )


if __name__ == "__main__":
    main()
