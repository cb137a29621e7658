"""The `customer-bot` command line."""

from __future__ import annotations

import argparse
import logging
import sys

from bot.settings import MissingSetting, Settings

DEMO_CUSTOMERS = 300


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="customer-bot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("shell", help="the bot in this terminal, on the embedded SQLite database with demo data")
    sub.add_parser("web", help="serve Slack over HTTP on $PORT (POST /slack/events, GET /healthz)")
    sub.add_parser("socket", help="connect to Slack with Socket Mode (needs SLACK_APP_TOKEN)")
    sub.add_parser(
        "scheduler",
        help="the clock process: missed-payment alerts, settling lost Stripe answers, daily email check",
    )
    job = sub.add_parser("run-job", help="run one scheduled job now")
    job.add_argument("job", choices=["missed-payments", "email-sync", "settle-unanswered"])
    sub.add_parser(
        "import-stripe", help="backfill customers, subscriptions, payments and refunds from Stripe"
    )
    seed = sub.add_parser("seed", help="write deterministic demo data into an empty database")
    seed.add_argument("--customers", type=int, required=True, metavar="N")
    seed.add_argument(
        "--big-customer-orders", type=int, default=0, metavar="K", help="also one customer with K orders"
    )
    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("upgrade", help="apply every migration")
    args = parser.parse_args(argv)

    # The shell is a conversation: only warnings belong between its messages.
    level = logging.WARNING if args.command == "shell" else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    try:
        settings = Settings.from_env()
        return _run(args, settings)
    except MissingSetting as missing:
        print(f"customer-bot: {missing}", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"customer-bot: {error}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from bot.db import Database

    if args.command == "shell":
        from bot.shell import run_shell

        return run_shell(settings)
    if args.command == "web":
        from bot.server import serve_http

        settings.require_slack()
        return serve_http(settings)
    if args.command == "socket":
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        from bot.app import create_app

        settings.require_slack(socket_mode=True)
        db = Database(settings.database_url)
        db.upgrade()
        SocketModeHandler(create_app(settings, db), settings.slack_app_token).start()
        return 0
    if args.command in ("scheduler", "run-job"):
        from bot.jobs import scheduled_jobs

        jobs = scheduled_jobs(settings)
        if args.command == "run-job":
            print(jobs[args.job]())
            return 0
        from bot.scheduler import run_scheduler

        return run_scheduler(settings, jobs)
    db = Database(settings.database_url)
    if args.command == "db":
        db.upgrade()
        print("Database is up to date.")
        return 0
    if args.command == "import-stripe":
        return _import(settings, db)
    if args.command == "seed":
        from bot.seed import seed

        db.upgrade()
        summary = seed(
            db,
            args.customers,
            big_customer_orders=args.big_customer_orders,
            progress=_progress(args.customers),
        )
        print(
            f"\nSeeded {summary.customers:,} customers, {summary.orders:,} orders, "
            f"{summary.subscriptions:,} subscriptions, {summary.payment_plans:,} payment plans, "
            f"{summary.payments:,} payments and {summary.refunds:,} refunds in {summary.seconds:.1f} s."
        )
        return 0
    raise AssertionError(f"unhandled command {args.command}")  # argparse only admits the commands above


def _import(settings: Settings, db) -> int:
    from bot.importer import import_stripe
    from bot.stripe_gateway import StripeGateway

    if not settings.stripe_api_key:
        raise MissingSetting("STRIPE_API_KEY", "the key of the Stripe account to import from")
    db.upgrade()
    gateway = StripeGateway.connect(settings.stripe_api_key, api_base=settings.stripe_api_base)

    def show(step: str, done: int) -> None:
        if sys.stderr.isatty():
            print(f"\r  {step}: {done:,} from Stripe   ", end="", file=sys.stderr, flush=True)

    summary = import_stripe(db, gateway, progress=show)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print("Imported from Stripe:")
    for line in summary.lines():
        print(f"  {line}")
    return 0


def _progress(total: int):
    def show(done: int, _total: int) -> None:
        if sys.stderr.isatty():
            print(f"\r  {done:,} of {total:,} customers", end="", file=sys.stderr, flush=True)

    return show


if __name__ == "__main__":
    sys.exit(main())
