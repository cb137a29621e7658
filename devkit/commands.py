"""The `customer-bot` commands the dev tooling adds, `shell` and `seed`, offered to the command line through the
`customer_bot.commands` entry points (see pyproject.toml), so the runtime never imports this package."""

from __future__ import annotations

import argparse
import logging
from datetime import date

from bot.settings import Settings


class Shell:
    help = "the bot in this terminal, on the embedded SQLite database with demo data"
    # Until the shell starts: from then on its log lines go to a file it names (see devkit.shell), never
    # between the conversation's messages.
    log_level = logging.WARNING

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        pass

    @staticmethod
    def run(args: argparse.Namespace, settings: Settings) -> int:
        from devkit.shell import run_shell

        return run_shell(settings)


class Seed:
    help = "write deterministic demo data into an empty database"
    log_level = logging.INFO

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--customers", type=int, required=True, metavar="N", help="how many customers")
        parser.add_argument(
            "--big-customer-orders", type=int, default=0, metavar="K", help="also one customer with K orders"
        )
        parser.add_argument(
            "--today",
            type=date.fromisoformat,
            metavar="YYYY-MM-DD",
            help="the day the data is as of (default: today in UTC); the same day gives the same data",
        )
        parser.epilog = "Reads: DATABASE_URL (the database must have no customers yet)."

    @staticmethod
    def run(args: argparse.Namespace, settings: Settings) -> int:
        from bot.db import Database
        from devkit.seed import seed
        from runtime.progress import Progress

        db = Database(settings.database_url)
        db.upgrade()
        with Progress(total=args.customers) as progress:
            summary = seed(
                db,
                args.customers,
                big_customer_orders=args.big_customer_orders,
                progress=lambda done, _total: progress("customers", done),
                today=args.today,
            )
        print(
            f"Seeded {summary.customers:,} customers, {summary.orders:,} orders, "
            f"{summary.subscriptions:,} subscriptions, {summary.payment_plans:,} payment plans, "
            f"{summary.payments:,} payments and {summary.refunds:,} refunds in {summary.seconds:.1f} s."
        )
        return 0
