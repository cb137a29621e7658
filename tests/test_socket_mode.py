"""The real `customer-bot socket` serving the same Bolt app over Socket Mode, end to end.

The CLI runs in a subprocess against a SQLite file. Its Web API calls go to the local Slack, which answers
`apps.connections.open` with the address of a WebSocket server in this test standing in for Slack's Socket Mode
endpoint. That server says hello as Slack does, then hands the app a `/customer` slash command envelope and a
button click envelope, and reads the app's acknowledgements: the record card comes back in the acknowledgement
of the command, and the click replaces the card in place through its response URL.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

from blocks.limits import message_problems
from bot.db import Database
from devkit.local_slack import APP_ID, TEAM_DOMAIN, TEAM_ID, LocalSlack, find_button
from tests import factories as make
from tests.slack_text import action_ids, selected, text_of

CHANNEL, CHANNEL_NAME = "C0LOCAL01", "support"
USER, USER_NAME = "U0LOCAL01", "jane.support"
TIMEOUT = 20  # seconds; each step takes well under one, the margin is for a loaded CI machine


class SocketModeServer:
    """Slack's end of a Socket Mode WebSocket: greets the client, sends it envelopes, collects its replies."""

    def __init__(self) -> None:
        self._server = serve(self._handle, "127.0.0.1", 0)
        self._thread = threading.Thread(target=self._server.serve_forever, name="socket-mode", daemon=True)
        self._connection: ServerConnection | None = None
        self._connected = threading.Event()
        self._replies: queue.Queue[dict[str, Any]] = queue.Queue()

    @property
    def url(self) -> str:
        host, port = self._server.socket.getsockname()[:2]
        return f"ws://{host}:{port}/"

    def __enter__(self) -> SocketModeServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)

    def _handle(self, connection: ServerConnection) -> None:
        connection.send(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": 1,
                    "debug_info": {
                        "host": "applink-local",
                        "build_number": 1,
                        "approximate_connection_time": 18060,
                    },
                    "connection_info": {"app_id": APP_ID},
                }
            )
        )
        self._connection = connection
        self._connected.set()
        try:
            for message in connection:
                self._replies.put(json.loads(message))
        except ConnectionClosed:
            pass  # the bot was stopped without a closing handshake

    def wait_for_client(self, process: subprocess.Popen, log: Path) -> None:
        """Wait until the bot has connected, failing at once with its output if it exits first."""
        deadline = time.monotonic() + TIMEOUT
        while not self._connected.wait(timeout=0.1):
            assert process.poll() is None, f"customer-bot socket exited early:\n{read(log)}"
            assert time.monotonic() < deadline, f"customer-bot socket did not connect:\n{read(log)}"

    def deliver(self, envelope_type: str, payload: dict[str, Any], *, accepts_response_payload: bool) -> dict:
        """Send one envelope and return the payload of the client's acknowledgement ({} when it has none)."""
        assert self._connection is not None, "no client connected"
        envelope_id = str(uuid.uuid4())
        self._connection.send(
            json.dumps(
                {
                    "envelope_id": envelope_id,
                    "type": envelope_type,
                    "accepts_response_payload": accepts_response_payload,
                    "payload": payload,
                }
            )
        )
        try:
            reply = self._replies.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"no acknowledgement of the {envelope_type} envelope") from None
        assert reply["envelope_id"] == envelope_id, reply
        return reply.get("payload", {})


def read(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")


def slash_command(slack: LocalSlack, text: str) -> dict[str, Any]:
    """The fields of a form-encoded slash command, as the JSON object Socket Mode carries them in."""
    return {
        "token": "legacy-verification-token-unused",
        "team_id": TEAM_ID,
        "team_domain": TEAM_DOMAIN,
        "channel_id": CHANNEL,
        "channel_name": CHANNEL_NAME,
        "user_id": USER,
        "user_name": USER_NAME,
        "command": "/customer",
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": slack.new_response_url(CHANNEL, USER, None),
        "trigger_id": f"{int(time.time())}.1.{uuid.uuid4().hex[:8]}",
    }


def button_click(slack: LocalSlack, message, action_id: str) -> dict[str, Any]:
    """A block_actions payload for clicking a button on an ephemeral message, as `SlackPerson.act` builds it."""
    block, button = find_button(message.blocks, action_id=action_id)
    return {
        "type": "block_actions",
        "user": {"id": USER, "username": USER_NAME, "name": USER_NAME, "team_id": TEAM_ID},
        "api_app_id": APP_ID,
        "token": "legacy-verification-token-unused",
        "container": {
            "type": "message",
            "message_ts": message.ts,
            "channel_id": CHANNEL,
            "is_ephemeral": True,
        },
        "trigger_id": f"{int(time.time())}.1.{uuid.uuid4().hex[:8]}",
        "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": CHANNEL, "name": CHANNEL_NAME},
        "state": {"values": {}},
        "response_url": slack.new_response_url(CHANNEL, USER, message.ts),
        "actions": [
            {
                "type": "button",
                "action_id": button["action_id"],
                "block_id": block["block_id"],
                "text": button["text"],
                **{key: button[key] for key in ("value", "style") if key in button},
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def test_customer_bot_socket_serves_slack_over_socket_mode(tmp_path, slack):
    database_url = f"sqlite:///{tmp_path}/records.db"
    db = Database(database_url)
    db.upgrade()
    with db.session() as s:
        jane = make.customer(s, "Jane Doe")
        old = make.subscription(s, jane, "Old Newsletter", status="canceled", canceled_at=make.T0)
        opens_old = f"open_subscription-{old.id}"
    db.dispose()

    # No proxy either: slack_sdk's Socket Mode client would tunnel even a loopback address through one.
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "STRIPE_", "DATABASE_URL"))
        and k.lower() not in ("http_proxy", "https_proxy")
    }
    env = {
        **inherited,
        "PYTHONIOENCODING": "utf-8",
        "DATABASE_URL": database_url,
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_APP_TOKEN": "xapp-test",
        "SLACK_API_URL": slack.api_url,
    }
    log = tmp_path / "customer-bot-socket.log"
    with SocketModeServer() as socket_mode, log.open("w") as output:
        slack.socket_mode_url = socket_mode.url
        bot = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", "socket"],
            env=env,
            cwd=tmp_path,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            socket_mode.wait_for_client(bot, log)

            answer = socket_mode.deliver(
                "slash_commands", slash_command(slack, "jane"), accepts_response_payload=True
            )
            assert answer["response_type"] == "ephemeral"
            assert message_problems(answer["blocks"], answer.get("text")) == []
            card = slack.record_command_response(CHANNEL, USER, answer)
            assert "Jane Doe" in text_of(card) and "Lifetime value" in text_of(card)
            assert opens_old not in action_ids(card), "Active hides the ended subscription"
            assert selected(card)[0] == "Active"

            # Listeners finish before the acknowledgement goes back (process_before_response), so once the click
            # is acknowledged the card has already been replaced through its response URL.
            click = socket_mode.deliver(
                "interactive", button_click(slack, card, "subscriptions_all"), accepts_response_payload=False
            )
            assert click == {}
            card = slack.message(card.ts)
            assert selected(card)[0] == "All"
            assert opens_old in action_ids(card)
            assert [m.ts for m in slack.visible(CHANNEL, USER)] == [card.ts], "replaced in place, nothing new"
            assert sum(c.method == "apps.connections.open" for c in slack.calls) == 1, "one connection"
        finally:
            still_running = bot.poll() is None
            bot.terminate()
            try:
                bot.wait(timeout=10)
            except subprocess.TimeoutExpired:
                bot.kill()
                bot.wait()
            print(f"customer-bot socket output:\n{read(log)}")  # pytest shows it when the test fails
    assert still_running, f"customer-bot socket exited early:\n{read(log)}"
    assert bot.returncode == -signal.SIGTERM, read(log)
    assert "Bolt app is running" in read(log)
