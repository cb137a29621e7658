"""The no-op anchor for bench/fast_path_bench.py: a Bolt app whose /customer listener only acks, served exactly as
`customer-bot web` serves the bot.

It is the floor no Bolt app on this server can go below: the same waitress front (runtime.server.make_server, so
the same threads, connection limits and request deadline), the same Bolt settings (process_before_response, the
signing secret, a Slack client on SLACK_API_URL), and nothing behind the listener. What the bot costs beyond it is
its own work: the request checks in runtime/web.py, the search, the database and the rendering.

    PORT=3001 SLACK_SIGNING_SECRET=… SLACK_BOT_TOKEN=xoxb-… SLACK_API_URL=http://127.0.0.1:…/api/ \
        python bench/anchor_app.py
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from slack_bolt import Ack, App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime.server import make_server, serve_until, stop_on_signals, web_threads


def anchor_app() -> App:
    app = App(
        signing_secret=os.environ["SLACK_SIGNING_SECRET"],
        client=WebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"]),
        process_before_response=True,
    )

    @app.command("/customer")
    def ack_only(ack: Ack) -> None:
        ack()

    return app


def main() -> None:
    application = SlackRequestHandler(anchor_app(), path="/slack/events")
    server = make_server(application, port=int(os.environ["PORT"]), threads=web_threads())
    stopping = threading.Event()
    stop_on_signals(stopping)
    serve_until(server, stopping)


if __name__ == "__main__":
    main()
