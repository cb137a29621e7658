"""Benchmark: `customer-bot import-stripe` from localstripe, for growing accounts.

For each size, a fresh localstripe gets that many customers, each with a card and a one-off payment, every third
with a monthly subscription. The import then runs into an empty SQLite database; the time (split into time in the
Stripe client, which is waiting for localstripe and parsing its answers, and our own work) and the Stripe calls it
made are printed, to show both grow linearly with the account (list pages of 100, expansions instead of one call
per object).

    python bench/import_bench.py --sizes 500 1000 2000 5000 10000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.db import Database  # noqa: E402
from bot.importer import import_stripe  # noqa: E402
from bot.stripe_gateway import StripeGateway  # noqa: E402
from devkit.local_stripe import LocalStripe  # noqa: E402
from tests.stripe_support import (  # noqa: E402
    local_stripe_client,
    paid_payment_intent,
    stripe_customer_with_card,
    stripe_subscription,
)


def fill(server: LocalStripe, customers: int) -> None:
    client = local_stripe_client(server)
    for i in range(customers):
        customer, card = stripe_customer_with_card(client, f"customer{i}@example.com", name=f"Customer {i}")
        paid_payment_intent(client, customer, card, 1000 + i)
        if i % 3 == 0:
            stripe_subscription(client, customer, 2900, "usd", "month", product_name="Pro Membership")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000, 5000, 10000])
    args = parser.parse_args()
    print(
        f"{'customers':>10}{'import s':>10}{'Stripe s':>10}{'ours s':>8}{'pages':>7}{'lookups':>9}{'calls/customer':>16}"
    )
    for size in args.sizes:
        with LocalStripe() as server, tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            fill(server, size)
            filled = time.perf_counter() - started
            db = Database(f"sqlite:///{folder}/import.db")
            db.upgrade()
            gateway = StripeGateway.connect(server.api_key, api_base=server.url)
            summary = import_stripe(db, gateway)
            ours = summary.seconds - summary.stripe_seconds
            calls = summary.pages + summary.lookups
            print(
                f"{size:>10,}{summary.seconds:>10.1f}{summary.stripe_seconds:>10.1f}{ours:>8.1f}"
                f"{summary.pages:>7,}{summary.lookups:>9,}{calls / size:>16.3f}  (filled in {filled:.0f} s)"
            )
            db.dispose()


if __name__ == "__main__":
    main()
