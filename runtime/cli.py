"""The `customer-bot` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import entry_points
from typing import Any

from bot.settings import MissingSetting, Settings
from runtime.startup import CannotStart

# Commands other packages add (the dev tooling's `shell` and `seed`): each entry point names an object with
# `help`, `log_level`, `add_arguments(parser)` and `run(args, settings) -> int`. The runtime never imports them.
PLUGIN_COMMANDS = "customer_bot.commands"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="customer-bot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    plugins = _plugins()
    for name, plugin in plugins.items():
        plugin.add_arguments(sub.add_parser(name, help=plugin.help))
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
    sub.add_parser(
        "check",
        help="check the configuration against the database, Slack, Stripe and CRMs; exit 1 on a problem",
    )
    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("upgrade", help="apply every migration")
    args = parser.parse_args(argv)

    plugin = plugins.get(args.command)
    level = plugin.log_level if plugin else logging.INFO
    if args.command == "check":
        level = logging.ERROR  # its findings say what each request found; log lines would say it again
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
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
        from runtime.jobs import scheduled_jobs

        jobs = scheduled_jobs(settings)
        if args.command == "run-job":
            print(jobs[args.job]())
            return 0
        from runtime.scheduler import run_scheduler

        return run_scheduler(settings, jobs)
    db = Database(settings.database_url)
    if args.command == "db":
        db.upgrade()
        print("Database is up to date.")
        return 0
    if args.command == "import-stripe":
        return _import(settings, db)
    raise AssertionError(f"unhandled command {args.command}")  # argparse only admits the commands above


def _import(settings: Settings, db) -> int:
    from bot.actions import build_actions
    from bot.importer import import_stripe
    from bot.stripe_gateway import StripeGateway

    if not settings.stripe_api_key:
        raise MissingSetting("STRIPE_API_KEY", "the key of the Stripe account to import from")
    db.upgrade()
    gateway = StripeGateway.connect(settings.stripe_api_key, api_base=settings.stripe_api_base)

    def show(step: str, done: int) -> None:
        if sys.stderr.isatty():
            print(f"\r  {step}: {done:,} from Stripe   ", end="", file=sys.stderr, flush=True)

    actions = build_actions(db, gateway, settings.payment_admins)  # settles the bot's own requests it meets
    summary = import_stripe(db, gateway, bot_made=actions.settler.bot_made, progress=show)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print("Imported from Stripe:")
    for line in summary.lines():
        print(f"  {line}")
    return 0


def _plugins() -> dict[str, Any]:
    return {point.name: point.load() for point in entry_points(group=PLUGIN_COMMANDS)}


if __name__ == "__main__":
    sys.exit(main())
