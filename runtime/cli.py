"""The `customer-bot` command line."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from importlib.metadata import entry_points
from typing import Any

from bot.settings import MissingSetting, Settings
from runtime.startup import CannotStart

# Commands other packages add (the dev tooling's `shell` and `seed`): each entry point names an object with
# `help`, `log_level`, `add_arguments(parser)` and `run(args, settings) -> int`. The runtime never imports them.
PLUGIN_COMMANDS = "customer_bot.commands"


# What each command reads from the environment, shown by its --help (the README's configuration table says more).
_DATABASE = "DATABASE_URL"
_SLACK = "SLACK_BOT_TOKEN, SLACK_API_URL"
_STRIPE = "STRIPE_API_KEY, STRIPE_API_BASE"
_ACTING = (
    "PAYMENT_ADMINS, AUDIT_CHANNEL, ACTIVECAMPAIGN_URL, ACTIVECAMPAIGN_API_KEY, KEAP_API_KEY, KEAP_API_URL"
)
_COMMANDS = {
    "web": (
        "serve Slack and Stripe over HTTP",
        "Serve Slack (POST /slack/events), Stripe's webhooks (POST /stripe/webhook) and a health check "
        "(GET /healthz) on $PORT. Checks the Slack token first; starts even while the database is down.",
        f"{_DATABASE}, {_SLACK}, SLACK_SIGNING_SECRET, {_STRIPE}, STRIPE_WEBHOOK_SECRET, {_ACTING}, PORT, "
        "WEB_THREADS",
    ),
    "socket": (
        "connect to Slack with Socket Mode",
        "Connect to Slack over Socket Mode (no public address for Slack; Stripe's webhooks still need `web`).",
        f"{_DATABASE}, {_SLACK}, SLACK_APP_TOKEN, {_STRIPE}, {_ACTING}",
    ),
    "scheduler": (
        "the clock process: alerts, settling, the email check",
        "Run the jobs on their schedules until SIGTERM: missed-payment alerts every MISSED_PAYMENTS_EVERY_MINUTES, "
        "settling Stripe answers that were lost every 5 minutes, and the email check daily at EMAIL_SYNC_AT (UTC). "
        "The two that need Stripe are off, with a log line, when STRIPE_API_KEY is not set.",
        f"{_DATABASE}, {_SLACK}, ALERTS_CHANNEL, MISSED_PAYMENTS_EVERY_MINUTES, EMAIL_SYNC_AT, {_STRIPE}, "
        f"{_ACTING}",
    ),
    "run-job": (
        "run one scheduled job now",
        "Run one of the clock's jobs once, now, and print what it did. email-sync and settle-unanswered need "
        "STRIPE_API_KEY.",
        f"{_DATABASE}, {_SLACK}, ALERTS_CHANNEL, {_STRIPE}, {_ACTING}",
    ),
    "import-stripe": (
        "backfill records from Stripe",
        "Bring in the Stripe account's customers, cards, subscriptions and payment plans, payments and refunds. "
        "Safe to run again: it carries on where it stopped and duplicates nothing.",
        f"{_DATABASE}, {_STRIPE}",
    ),
    "check": (
        "check the configuration: database, Slack, Stripe, CRMs",
        "Try each part the bot needs with the settings it will use and print one line per item: ✓ works, ✗ needs "
        "fixing (with what to do); an optional item not configured is a ✓ that says so. Exits 1 when any line is ✗.",
        f"{_DATABASE}, {_SLACK}, SLACK_SIGNING_SECRET, SLACK_APP_TOKEN, ALERTS_CHANNEL, {_STRIPE}, "
        f"STRIPE_WEBHOOK_SECRET, PUBLIC_URL, {_ACTING}",
    ),
    "db": ("database maintenance", "Database maintenance.", _DATABASE),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="customer-bot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    plugins = _plugins()
    for name, plugin in plugins.items():
        plugin.add_arguments(sub.add_parser(name, help=plugin.help, description=plugin.help))
    command = {name: _command(sub, name) for name in _COMMANDS}
    command["run-job"].add_argument(
        "job",
        choices=["missed-payments", "email-sync", "settle-unanswered"],
        help="missed-payments: post alerts for new missed payments and mark paid ones; email-sync: compare "
        "emails with Stripe and the CRMs and post the report; settle-unanswered: ask Stripe about requests "
        "whose answer was lost",
    )
    command["run-job"].add_argument(
        "--full",
        action="store_true",
        help="email-sync only: ask the CRMs about every customer with an old address on record, not only those "
        "whose email changed since the last check (spread over runs: each asks the CRMs at most 1,000 times)",
    )
    db_sub = command["db"].add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("upgrade", help="apply the migrations not yet applied, and say which")
    args = parser.parse_args(argv)

    plugin = plugins.get(args.command)
    level = plugin.log_level if plugin else logging.INFO
    if args.command == "check":
        level = logging.ERROR  # its findings say what each request found; log lines would say it again
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # `db upgrade` says itself what it applied
    try:
        settings = Settings.from_env()
        return plugin.run(args, settings) if plugin else _run(args, settings)
    except MissingSetting as missing:
        print(f"customer-bot: {missing}", file=sys.stderr)
        return 2
    except CannotStart as reason:
        print(f"customer-bot: {reason}", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"customer-bot: {error}", file=sys.stderr)
        return 2


def _command(sub: Any, name: str) -> argparse.ArgumentParser:
    summary, description, env = _COMMANDS[name]
    return sub.add_parser(
        name, help=summary, description=description, epilog=f"Reads: {env}.", formatter_class=_Wrapped
    )


class _Wrapped(argparse.HelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=min(100, shutil.get_terminal_size().columns))


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from bot.db import Database

    if args.command == "web":
        from runtime.server import serve_http

        settings.require_slack()
        return serve_http(settings)
    if args.command == "socket":
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        from runtime.app import create_app
        from runtime.startup import MigratingDatabase, check_slack_token, socket_mode_address

        settings.require_slack(socket_mode=True)
        check_slack_token(settings)
        address = socket_mode_address(settings)
        db = MigratingDatabase(settings.database_url)
        db.start()
        handler = SocketModeHandler(create_app(settings, db), settings.slack_app_token)
        handler.client.wss_uri = address  # the address the check was given: it connects once, there
        handler.start()
        return 0
    if args.command == "check":
        from runtime.check import run as run_check

        return run_check(settings)
    if args.command in ("scheduler", "run-job"):
        from runtime.jobs import STRIPE_JOBS, scheduled_jobs

        if args.command == "run-job" and args.full and args.job != "email-sync":
            raise ValueError(f"--full is for the email-sync job only, not {args.job}")
        if args.command == "run-job" and args.job in STRIPE_JOBS and not settings.stripe_api_key:
            raise MissingSetting(
                "STRIPE_API_KEY", f"the {args.job} job asks Stripe, so it needs the Stripe key"
            )
        jobs = scheduled_jobs(settings)
        if args.command == "run-job":
            from runtime.progress import Progress

            if args.job == "email-sync":  # the one that can take minutes: it lists every Stripe customer
                with Progress() as progress:
                    print(jobs[args.job](progress=progress, full=args.full))
            else:
                print(jobs[args.job]())
            return 0
        from runtime.scheduler import run_scheduler

        return run_scheduler(settings, jobs)
    db = Database(settings.database_url)
    if args.command == "db":
        applied = db.upgrade()
        for revision, title in applied:
            print(f"Applied {revision}: {title}")
        print(f"Database is at {db.revision()}" + ("" if applied else ": nothing to apply."))
        return 0
    if args.command == "import-stripe":
        return _import(settings, db)
    raise AssertionError(f"unhandled command {args.command}")  # argparse only admits the commands above


def _import(settings: Settings, db) -> int:
    from bot.actions import build_actions
    from bot.importer import import_stripe
    from bot.stripe_gateway import StripeGateway
    from runtime.progress import Progress

    if not settings.stripe_api_key:
        raise MissingSetting("STRIPE_API_KEY", "the key of the Stripe account to import from")
    db.upgrade()
    gateway = StripeGateway.connect(settings.stripe_api_key, api_base=settings.stripe_api_base)

    actions = build_actions(db, gateway, settings.payment_admins)  # settles the bot's own requests it meets
    with Progress() as progress:
        summary = import_stripe(db, gateway, bot_made=actions.settler.bot_made, progress=progress)
    print("Imported from Stripe:")
    for line in summary.lines():
        print(f"  {line}")
    return 0


def _plugins() -> dict[str, Any]:
    return {point.name: point.load() for point in entry_points(group=PLUGIN_COMMANDS)}


if __name__ == "__main__":
    sys.exit(main())
