"""Benchmark: one /customer answer in process, and the SQL statements it sends.

Hands signed slash commands to the real Bolt app through its WSGI routes in this process (no HTTP server, no
network), so the time is the bot's own: Bolt, our reads, Block Kit. "CPU ms" is the process's CPU time per request,
steadier than wall time on a busy machine. Compares with `/customer` and no text (the
usage answer, which reads nothing): the cost of an empty Bolt app round trip.

    python bench/record_bench.py                                     # SQLite, 100,000 customers, under bench/data/
    python bench/record_bench.py --database-url postgresql://postgres@127.0.0.1:5432/bench100k

The first run seeds the database (deterministic demo data, one customer with 5,000 orders); later runs reuse it.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

from sqlalchemy import event, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.seeded import seeded_database  # noqa: E402
from bot.db import Database  # noqa: E402
from bot.models import Customer  # noqa: E402
from bot.settings import Settings  # noqa: E402
from devkit.local_slack import LocalSlack, SlackPerson, wsgi_transport  # noqa: E402
from runtime.app import create_app  # noqa: E402
from runtime.web import WebApp  # noqa: E402

SECRET = "bench-signing-secret"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=f"sqlite:///{ROOT}/bench/data/bench-100k.db")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=500, help="requests per kind")
    args = parser.parse_args()

    db, count = seeded_database(args.database_url, args.customers)
    with db.session() as session:
        rng = random.Random(7)
        sample = [rng.randint(1, count) for _ in range(500)]
        people = session.execute(select(Customer.name, Customer.email).where(Customer.id.in_(sample))).all()
        whale = session.execute(select(Customer.email).order_by(Customer.id.desc()).limit(1)).scalar_one()
    surnames = [name.split()[-1] for name, _ in people]
    emails = [email for _, email in people]
    print(f"{count:,} customers on {db.engine.url.get_backend_name()}")

    statements = 0

    def count_statement(*_args: object) -> None:
        nonlocal statements
        statements += 1

    with LocalSlack() as slack:
        settings = Settings(
            database_url=args.database_url,
            slack_bot_token="xoxb-bench",
            slack_signing_secret=SECRET,
            slack_api_url=slack.api_url,
        )
        person = SlackPerson(slack, wsgi_transport(WebApp(create_app(settings, db), db)), SECRET)
        kinds = {
            "empty app (usage, no reads)": lambda: "",
            "/customer <surname> (list)": lambda: rng.choice(surnames),
            "/customer <email> (record)": lambda: rng.choice(emails),
            "/customer <5,000-order customer>": lambda: whale,
        }
        for make_text in kinds.values():  # warm the pool, the caches and the compiled statements
            for _ in range(30):
                person.command(make_text())
        for engine in _engines(db):
            event.listen(engine, "before_cursor_execute", count_statement)
        print(f"{'request':36} {'p50 ms':>7} {'p90 ms':>7} {'CPU ms':>7} {'statements':>10}")
        for label, make_text in kinds.items():
            texts = [make_text() for _ in range(args.requests)]
            statements = 0
            took = []
            cpu_started = time.process_time()
            for text in texts:
                started = time.perf_counter()
                person.command(text)
                took.append((time.perf_counter() - started) * 1000)
            cpu = (time.process_time() - cpu_started) * 1000 / len(texts)
            took.sort()
            print(
                f"{label:36} {statistics.median(took):7.2f} {took[int(len(took) * 0.9)]:7.2f} "
                f"{cpu:7.2f} {statements / len(texts):10.1f}"
            )
    db.dispose()


def _engines(db: Database) -> list:
    """Every engine the database sends statements through (one for reads and one for writes, or the same)."""
    engines = [db.engine]
    reader = getattr(db, "reader", None)
    if reader is not None and reader is not db.engine:
        engines.append(reader)
    return engines


if __name__ == "__main__":
    main()
