"""Benchmark: the web front's idle memory and /customer latency over real HTTP, for comparing servers.

Starts `customer-bot web` from a source tree (this one, or another checkout given with --source), on a small
SQLite database of 1,000 customers, sends signed /customer commands one after another, and prints p50 / p99 and
the resident memory of the whole process tree, idle after start-up and after the requests.

    python bench/web_front_bench.py
    python bench/web_front_bench.py --source /tmp/before    # e.g. `git archive <commit> | tar -x -C /tmp/before`
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.db import Database  # noqa: E402
from devkit.local_slack import LocalSlack, SlackPerson, http_transport  # noqa: E402
from devkit.seed import seed  # noqa: E402

SECRET = "bench-signing-secret"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", default=str(ROOT), help="the source tree whose `customer-bot web` to run")
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as where, LocalSlack() as slack:
        url = f"sqlite:///{where}/bench.db"
        db = Database(url)
        db.upgrade()
        seed(db, 1000)
        db.dispose()
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", "web"],
            cwd=args.source,
            env={
                **os.environ,
                "PYTHONPATH": args.source,
                "DATABASE_URL": url,
                "SLACK_BOT_TOKEN": "xoxb-bench",
                "SLACK_SIGNING_SECRET": SECRET,
                "SLACK_API_URL": slack.api_url,
                "PORT": str(port),
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for(port)
            time.sleep(2)  # let every worker finish importing before measuring idle memory
            idle = _tree_rss_mib(server.pid)
            person = SlackPerson(slack, http_transport(f"http://127.0.0.1:{port}"), SECRET)
            for _ in range(20):
                person.command("smith")
            times = []
            for _ in range(args.requests):
                started = time.perf_counter()
                person.command("smith")
                times.append((time.perf_counter() - started) * 1000)
                assert person.last_status == 200
            busy = _tree_rss_mib(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
    ordered = sorted(times)
    p99 = ordered[round(0.99 * (len(ordered) - 1))]
    print(f"source: {args.source}")
    print(
        f"/customer over HTTP, {len(ordered)} requests: p50 {statistics.median(ordered):.1f} ms, p99 {p99:.1f} ms"
    )
    print(
        f"resident memory of the server's processes: {idle:.0f} MiB idle, {busy:.0f} MiB after the requests"
    )


def _wait_for(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the web server did not start")


def _tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and all its children (gunicorn's workers), summed."""
    total, pending = 0.0, [pid]
    while pending:
        p = pending.pop()
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
        for task in Path(f"/proc/{p}/task").iterdir():
            pending += [int(c) for c in (task / "children").read_text().split()]
    return total


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
