"""Benchmark: the fast path of /customer, measured against a no-op Bolt app on the same server in the same run.

A shared or busy machine makes absolute times drift by more than the differences worth seeing. So this starts two
servers side by side: `customer-bot web` on a seeded database, and bench/anchor_app.py, a Bolt app whose /customer
only acks, on the same waitress front with the same settings. It sends both the same signed slash commands (the
bytes SlackPerson sends, signed afresh each time, over devkit's http_transport), one request to each per pair in a
random order, so whatever slows the machine slows both. It prints, per query kind, p50 / p90 / p99 of each and
the ratio of the bot to the anchor:

- surname: the surname of a random customer (on a million customers, a list of the best 10 of thousands);
- email: a random customer's whole email, which opens their record;
- #order: a random order's number (`/customer 1234567`), which opens the record of the customer who placed it;
- record, 5,000 orders: the name of the customer with 5,000 orders, which opens their record.

Then requests per second with 8 concurrent clients (the four kinds in turn), each server alone in alternating
windows (A B B A A B …), with the CPU each server used per request and each one's resident memory after the load
(from /proc). The CPU per request is also given for each query kind: it depends far less than the time at the
client on what else the machine is doing (on PostgreSQL it leaves out the database server's own CPU). The
targets of issue 14 are printed beside the results for comparison; nothing is asserted.

    python bench/fast_path_bench.py --customers 100000                # a quick look: seeds bench/data/bench-100k.db
    python bench/fast_path_bench.py                                   # the README figures: a million customers
    python bench/fast_path_bench.py --database-url postgresql://postgres@127.0.0.1:5432/bench --customers 1000000

The first run on a database seeds it (deterministic demo data, a customer with 5,000 orders among them; a
million customers took 2 minutes on a quiet 2-core machine and 24 on a busy one); later runs reuse it, whatever
--customers says, so give each size its own PostgreSQL database. Both servers get the same environment, so a
WEB_THREADS set for a run applies to both. The client runs on the same machine as both servers: on a few cores
the throughput is the machine's, client included, and the same for both servers. Absolute times are printed for
reference; the ratios and the CPU per request are the figures to compare between runs and machines.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.seeded import BIG_CUSTOMER_ORDERS, seeded_database  # noqa: E402
from bot.models import Customer, Order  # noqa: E402
from devkit.local_slack import LocalSlack, SlackPerson, http_transport, sign  # noqa: E402

SECRET = "bench-signing-secret"
FORM = "application/x-www-form-urlencoded"
WARM_UP_ROUNDS = 10  # of every kind, on each server, before anything is measured
RECORD_LABEL = "Lifetime value"  # on every record card, never on a list (docs: DESIGN.md, stable interface)
ORDER_LABEL = "Still refundable"  # on every order record: `#order` opens the order itself

SURNAME, EMAIL, ORDER, BIG_RECORD = "surname", "email", "#order", "record, 5,000 orders"
KINDS = (SURNAME, EMAIL, ORDER, BIG_RECORD)
# Issue 14's targets at a million customers: the largest p50 ratio to the no-op app, per query kind.
LATENCY_TARGETS = {
    "sqlite": {SURNAME: 1.5, EMAIL: 2.0, ORDER: 2.0, BIG_RECORD: 2.5},
    "postgresql": {SURNAME: 2.5, EMAIL: 3.0, ORDER: 3.0, BIG_RECORD: 3.5},
}
THROUGHPUT_TARGETS = {"sqlite": 0.4}  # the smallest ratio of requests per second, 8 clients
TARGET_CUSTOMERS = 1_000_000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--database-url", help="default: a SQLite file bench/data/bench-<size>.db (bench-1m.db for a million)"
    )
    parser.add_argument("--customers", type=int, default=1_000_000, help="seeded when the database is empty")
    parser.add_argument("--requests", type=int, default=500, help="pairs of requests per query kind")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients for the throughput")
    parser.add_argument("--window-seconds", type=float, default=5.0)
    parser.add_argument("--windows", type=int, default=4, help="throughput windows per server")
    parser.add_argument("--random-seed", type=int, default=7)
    args = parser.parse_args()
    database_url = args.database_url or f"sqlite:///{ROOT}/bench/data/bench-{_size_label(args.customers)}.db"

    rng = random.Random(args.random_seed)
    _progress(f"database {database_url}")
    queries, customers, backend = prepare_database(database_url, args.customers, args.requests, rng)
    started_at = datetime.now(UTC)
    _progress("starting the two servers")
    load_before = os.getloadavg()
    with LocalSlack() as slack, tempfile.TemporaryDirectory() as logs:
        servers = [
            Server.launch("no-op", [str(ROOT / "bench" / "anchor_app.py")], database_url, slack, logs),
            Server.launch("bot", ["-m", "runtime.cli", "web"], database_url, slack, logs),
        ]
        try:
            anchor, bot = servers
            latency, load, memory = measure(slack, anchor, bot, queries, rng, args)
        finally:
            for server in servers:
                server.process.terminate()
            for server in servers:
                server.wait()
    report(
        Run(backend, customers, started_at, load_before, os.getloadavg(), args.clients, args.window_seconds),
        latency,
        load,
        memory,
    )


def measure(
    slack: LocalSlack,
    anchor: Server,
    bot: Server,
    queries: dict[str, list[str]],
    rng: random.Random,
    args: argparse.Namespace,
) -> tuple[Latency, dict[str, Load], dict[str, tuple[float, float]]]:
    """Latency per kind, throughput and memory of both servers, once both are listening."""
    for server in (anchor, bot):
        server.wait_until_listening()
    check_answers(slack, bot, queries)
    schedule = [(kind, command_body(slack, text)) for kind, texts in queries.items() for text in texts]
    rng.shuffle(schedule)
    for server in (anchor, bot):
        for _, body in _warm_up(schedule):
            server.send(body)
    _progress(f"servers up; {len(schedule)} pairs of requests, interleaved")
    latency = measure_latency(anchor, bot, schedule, rng)
    _progress(f"{args.windows} throughput windows of {args.window_seconds:g} s per server")
    loads = measure_throughput(
        (anchor, bot), [body for _, body in schedule], args.clients, args.window_seconds, args.windows
    )
    memory = {server.name: server.memory_mib() for server in (anchor, bot)}
    return latency, loads, memory


def _progress(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


# --- The database and the queries ----------------------------------------------------------------------------


def prepare_database(
    database_url: str, customers: int, requests: int, rng: random.Random
) -> tuple[dict[str, list[str]], int, str]:
    """Seed the database if it is empty; return `requests` queries of each kind, the customer count and the
    backend."""
    db, count = seeded_database(database_url, customers)
    try:
        with db.session() as session:
            big_id, big_name, big_orders = session.execute(
                select(Customer.id, Customer.name, func.count(Order.id))
                .join(Order, Order.customer_id == Customer.id)
                .where(Customer.id == select(func.max(Customer.id)).scalar_subquery())
                .group_by(Customer.id, Customer.name)
            ).one()
            if big_orders < BIG_CUSTOMER_ORDERS:
                raise SystemExit(
                    f"the last customer has {big_orders:,} orders, not {BIG_CUSTOMER_ORDERS:,}: this database "
                    "was not seeded by this benchmark; give it an empty one"
                )
            sample = {rng.randint(1, big_id - 1) for _ in range(1000)}
            people = session.execute(
                select(Customer.name, Customer.email).where(Customer.id.in_(sample))
            ).all()
            numbers = list(session.scalars(select(Order.number).where(Order.customer_id.in_(sample))))
        backend = db.engine.url.get_backend_name()
    finally:
        db.dispose()
    surnames = [name.split()[-1] for name, _ in people]
    emails = [email for _, email in people]
    # The surname checked first is the commonest: it must answer with a list even on a small database.
    commonest = Counter(surnames).most_common(1)[0][0]
    queries = {
        SURNAME: [commonest, *(rng.choice(surnames) for _ in range(requests - 1))],
        EMAIL: [rng.choice(emails) for _ in range(requests)],
        ORDER: [rng.choice(numbers) for _ in range(requests)],
        BIG_RECORD: [big_name] * requests,
    }
    return queries, count, backend


def _size_label(customers: int) -> str:
    if customers % 1_000_000 == 0:
        return f"{customers // 1_000_000}m"
    if customers % 1000 == 0:
        return f"{customers // 1000}k"
    return str(customers)


def command_body(slack: LocalSlack, text: str) -> bytes:
    """The form Slack posts for `/customer <text>`, as SlackPerson builds it (signed when sent)."""
    sent: list[bytes] = []

    def keep(_path: str, body: bytes, _headers: dict[str, str]) -> tuple[int, bytes]:
        sent.append(body)
        return 200, b""

    SlackPerson(slack, keep, SECRET).command(text)
    return sent[0]


def check_answers(slack: LocalSlack, bot: Server, queries: dict[str, list[str]]) -> None:
    """Make sure each kind measures what it says: a surname answers with a list, the others open a record."""
    person = SlackPerson(slack, http_transport(bot.url), SECRET)
    for kind, texts in queries.items():
        message = person.command(texts[0])
        if person.last_status != 200 or message is None:
            raise SystemExit(f"the bot answered /customer {texts[0]} with HTTP {person.last_status}")
        is_record = (ORDER_LABEL if kind == ORDER else RECORD_LABEL) in json.dumps(message.blocks)
        if is_record != (kind != SURNAME):
            answer = "a record" if is_record else "no record"
            raise SystemExit(
                f"/customer {texts[0]} ({kind}) answered with {answer}: not what this kind measures"
            )


def _warm_up(schedule: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """WARM_UP_ROUNDS requests of every kind, taken from the end of the schedule."""
    picked: list[tuple[str, bytes]] = []
    for kind in KINDS:
        picked += [entry for entry in reversed(schedule) if entry[0] == kind][:WARM_UP_ROUNDS]
    return picked


# --- The two servers -----------------------------------------------------------------------------------------


@dataclass
class Server:
    """A server process on a loopback port, and the signed-request client that times its answers."""

    name: str
    process: subprocess.Popen
    port: int
    log: Path

    @classmethod
    def launch(
        cls, name: str, arguments: list[str], database_url: str, slack: LocalSlack, logs: str
    ) -> Server:
        port = _free_port()
        log = Path(logs) / f"{name}.log"
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),  # the tree this file is in, whatever is installed
            "DATABASE_URL": database_url,
            "SLACK_BOT_TOKEN": "xoxb-bench",
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": slack.api_url,
            "PORT": str(port),
        }
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, *arguments], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
            )
        return cls(name, process, port, log)

    def wait_until_listening(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"the {self.name} server did not start:\n{self.log.read_text()[-2000:]}")

    def __post_init__(self) -> None:
        self.url = f"http://127.0.0.1:{self.port}"
        self._transport = http_transport(self.url)

    def send(self, body: bytes) -> tuple[float, bytes]:
        """Post a signed command; the milliseconds until the whole answer was read, and the answer."""
        headers = {"Content-Type": FORM, **sign(SECRET, body)}
        started = time.perf_counter()
        status, answer = self._transport("/slack/events", body, headers)
        elapsed = (time.perf_counter() - started) * 1000
        if status != 200:
            raise RuntimeError(f"the {self.name} server answered HTTP {status}: {answer[:200]!r}")
        return elapsed, answer

    def cpu_seconds(self) -> float:
        """User and system CPU time the process has used so far, all its threads together."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory_mib(self) -> tuple[float, float]:
        """Resident memory now and at its peak (VmRSS, VmHWM) of the server's process."""
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines()
        )
        return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024

    def wait(self) -> None:
        """Wait for the process to end after a SIGTERM (a drain of the requests in hand), killing it if stuck."""
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- Measuring -----------------------------------------------------------------------------------------------


@dataclass
class Answers:
    """One server's answers to one kind of query: milliseconds at the client, and the CPU the server used."""

    milliseconds: list[float] = field(default_factory=list)
    cpu_seconds: float = 0.0
    records: int = 0  # answers that were a record card

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile."""
        ordered = sorted(self.milliseconds)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.cpu_seconds / len(self.milliseconds)


Latency = dict[str, dict[str, Answers]]  # kind -> server name -> answers


def measure_latency(
    anchor: Server, bot: Server, schedule: list[tuple[str, bytes]], rng: random.Random
) -> Latency:
    """Each command sent to both servers back to back, in a random order per pair.

    The CPU a server used for each request comes from /proc in clock ticks: too coarse for one request, but
    the rounding averages out over hundreds, and unlike the time at the client it hardly depends on how many
    other processes want the CPU."""
    latency = {kind: {anchor.name: Answers(), bot.name: Answers()} for kind in KINDS}
    for kind, body in schedule:
        pair = [anchor, bot] if rng.random() < 0.5 else [bot, anchor]
        for server in pair:
            answers = latency[kind][server.name]
            cpu_before = server.cpu_seconds()
            milliseconds, answer = server.send(body)
            answers.milliseconds.append(milliseconds)
            answers.records += RECORD_LABEL.encode() in answer or ORDER_LABEL.encode() in answer
            answers.cpu_seconds += server.cpu_seconds() - cpu_before
    return latency


@dataclass
class Load:
    requests: int = 0
    failures: int = 0
    seconds: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    failure_example: str = ""

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def measure_throughput(
    servers: tuple[Server, Server], bodies: list[bytes], clients: int, window: float, windows: int
) -> dict[str, Load]:
    """Windows of `clients` concurrent clients sending as fast as answers come, on one server at a time, in
    the order A B B A A B …, so a slow stretch of the machine falls on both alike."""
    loads = {server.name: Load() for server in servers}
    for turn in range(2 * windows):
        server = servers[(turn + 1) // 2 % 2]
        _load_window(server, bodies, clients, window, loads[server.name])
    return loads


def _load_window(server: Server, bodies: list[bytes], clients: int, window: float, load: Load) -> None:
    answered, failed = [0] * clients, [0] * clients  # one slot per client: no lock needed
    failures: list[str] = []
    deadline = time.perf_counter() + window

    def client(index: int) -> None:
        position = index * len(bodies) // clients
        while time.perf_counter() < deadline:
            try:
                server.send(bodies[position % len(bodies)])
                answered[index] += 1
            except (RuntimeError, OSError) as error:
                failed[index] += 1
                failures.append(str(error))
            position += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    cpu_before, client_before, started = server.cpu_seconds(), _own_cpu_seconds(), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    load.seconds += time.perf_counter() - started
    load.server_cpu += server.cpu_seconds() - cpu_before
    load.client_cpu += _own_cpu_seconds() - client_before
    load.requests += sum(answered)
    load.failures += sum(failed)
    load.failure_example = load.failure_example or (failures[0] if failures else "")


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- The report ----------------------------------------------------------------------------------------------


@dataclass
class Run:
    backend: str
    customers: int
    started_at: datetime
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    clients: int
    window: float
    cpus: int = field(default_factory=lambda: os.cpu_count() or 0)


def report(
    run: Run,
    latency: Latency,
    loads: dict[str, Load],
    memory: dict[str, tuple[float, float]],
) -> None:
    anchor, bot = "no-op", "bot"
    scale = "" if run.customers >= TARGET_CUSTOMERS else f" (targets are for {TARGET_CUSTOMERS:,} customers)"
    print()
    print(
        f"{run.customers:,} customers on {run.backend}, {run.started_at:%Y-%m-%d %H:%M} UTC; {run.cpus} CPUs "
        f"({_cpu_model()}), Python {platform.python_version()}; load average {run.load_before[0]:.1f} before, "
        f"{run.load_after[0]:.1f} after"
    )
    pairs = len(latency[SURNAME][anchor].milliseconds)
    print(
        f"latency, ms at the client, {pairs} pairs per kind, no-op and bot in random order per pair{scale}:"
    )
    print(
        f"{'query':<22}{'no-op p50/p90/p99':>19}{'bot p50/p90/p99':>19}{'ratio p50/p90/p99':>20}"
        f"{'CPU ms no-op/bot':>18}  target p50"
    )
    targets = LATENCY_TARGETS.get(run.backend, {})
    quantiles = (0.5, 0.9, 0.99)
    for kind in KINDS:
        a, b = latency[kind][anchor], latency[kind][bot]
        ratios = [b.percentile(q) / a.percentile(q) for q in quantiles]
        cpu = f"{a.cpu_ms_per_request:.1f}/{b.cpu_ms_per_request:.1f}"
        target = targets.get(kind)
        verdict = "" if target is None else f"≤ {target:.1f}× {'met' if ratios[0] <= target else 'MISSED'}"
        print(
            f"{kind:<22}{_triple([a.percentile(q) for q in quantiles]):>19}"
            f"{_triple([b.percentile(q) for q in quantiles]):>19}{_triple(ratios, '×'):>20}{cpu:>18}  {verdict}"
        )
    opened = "; ".join(f"{kind}: {latency[kind][bot].records}" for kind in KINDS)
    print(f"answers of the bot that were a record (the card; the order for #order), of {pairs}: {opened}")
    if run.backend != "sqlite":
        print(
            f"(CPU ms: the server process's own; {run.backend}'s work is in its own processes, not counted)"
        )
    print()
    print(f"throughput, {run.clients} clients, alternating {run.window:g} s windows, the four kinds in turn:")
    print(
        f"{'server':<8}{'req/s':>8}{'failed':>8}{'CPU ms/req':>12}{'RSS after MiB':>15}{'peak MiB':>10}"
        f"{'client CPU':>12}"
    )
    for name in (anchor, bot):
        load, (rss, peak) = loads[name], memory[name]
        cpu_per_request = 1000 * load.server_cpu / load.requests if load.requests else float("nan")
        print(
            f"{name:<8}{load.per_second:>8.0f}{load.failures:>8}{cpu_per_request:>12.1f}{rss:>15.0f}{peak:>10.0f}"
            f"{load.client_cpu / load.seconds:>11.0%}"
        )
    ratio = loads[bot].per_second / loads[anchor].per_second if loads[anchor].per_second else 0.0
    target = THROUGHPUT_TARGETS.get(run.backend)
    verdict = "" if target is None else f"  target ≥ {target:.1f}× {'met' if ratio >= target else 'MISSED'}"
    print(f"bot / no-op requests per second: {ratio:.2f}×{verdict}")
    for name, load in loads.items():
        if load.failures:
            print(f"{name}: {load.failures} requests failed, e.g. {load.failure_example}")
    print(
        "(client CPU: the share of one CPU the benchmark's own client used; it shares the machine. The no-op's "
        "memory includes what runtime.server imports: SQLAlchemy, Babel and the rest of the bot's modules)"
    )


def _triple(values: list[float], unit: str = "") -> str:
    return "/".join(f"{v:.1f}{unit}" if v < 100 else f"{v:.0f}{unit}" for v in values)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


if __name__ == "__main__":
    main()
