"""Benchmark: /customer over the full HTTP path on a database of a million customers.

Starts the real `customer-bot web` server (waitress) on the given database, sends it signed slash commands the way
Slack does, and measures each answer at the client: a surname (a list of the best 10 of many), an email (one
record), and the name of a customer with 5,000 orders (their record card). Prints p50 / p99 / max and the server's
peak memory.

    python bench/search_bench.py                                   # SQLite file under bench/data/
    python bench/search_bench.py --database-url postgresql://postgres@127.0.0.1:5432/bench

The first run seeds the database (deterministic demo data); later runs reuse it.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.seeded import seeded_database  # noqa: E402
from bot.models import Customer  # noqa: E402
from devkit.local_slack import LocalSlack, SlackPerson, http_transport  # noqa: E402

SECRET = "bench-signing-secret"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=f"sqlite:///{ROOT}/bench/data/bench-1m.db")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=1000, help="requests per kind")
    args = parser.parse_args()

    db, count = seeded_database(args.database_url, args.customers)
    with db.session() as session:
        rng = random.Random(7)
        sample = [rng.randint(1, min(count, args.customers)) for _ in range(500)]
        people = session.execute(select(Customer.name, Customer.email).where(Customer.id.in_(sample))).all()
        whale = session.execute(select(Customer.name).order_by(Customer.id.desc()).limit(1)).scalar_one()
    db.dispose()
    surnames = [name.split()[-1] for name, _ in people]
    emails = [email for _, email in people]
    print(f"{count:,} customers on {db.engine.url.get_backend_name()}; big customer: {whale}")

    with LocalSlack() as slack:
        port = _free_port()
        server = _start_server(args.database_url, slack.api_url, port)
        try:
            person = SlackPerson(slack, http_transport(f"http://127.0.0.1:{port}"), SECRET)
            for _ in range(20):  # warm the connection pool and caches
                person.command(rng.choice(surnames))
            results = {
                "surname": _measure(person, [rng.choice(surnames) for _ in range(args.requests)]),
                "email": _measure(person, [rng.choice(emails) for _ in range(args.requests)]),
                "record, 5,000 orders": _measure(person, [whale] * max(100, args.requests // 5)),
            }
            peak = _peak_rss_mib(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"{'query':<22}{'n':>6}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for kind, times in results.items():
        ordered = sorted(times)
        p50 = statistics.median(ordered)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        print(f"{kind:<22}{len(ordered):>6}{p50:>9.1f}{p99:>9.1f}{ordered[-1]:>9.1f}")
    print(f"server peak memory (largest process, VmHWM): {peak:.0f} MiB")


def _measure(person: SlackPerson, queries: list[str]) -> list[float]:
    times = []
    for query in queries:
        started = time.perf_counter()
        person.command(query)
        times.append((time.perf_counter() - started) * 1000)
        assert person.last_status == 200, person.last_body[:200]
    return times


def _start_server(database_url: str, slack_api_url: str, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SLACK_BOT_TOKEN": "xoxb-bench",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack_api_url,
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "web"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server
        except OSError:
            time.sleep(0.1)
    server.terminate()
    raise SystemExit("the web server did not start")


def _peak_rss_mib(pid: int) -> float:
    """The largest peak resident size among the server and its workers."""
    pids = [pid] + [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    peaks = []
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return max(peaks)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
