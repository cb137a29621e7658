"""The HTTP front and its failures: signatures, health, an unreachable database, missing credentials, and the
real `customer-bot web` server answering a signed request over a socket."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from urllib.parse import urlencode

import pytest

from bot.db import Database
from devkit.local_slack import SlackPerson, sign, wsgi_transport
from runtime.app import create_app
from runtime.web import WebApp
from tests import factories as make
from tests.conftest import SIGNING_SECRET, settings_for
from tests.slack_text import text_of


def slash_body(text: str = "jane") -> bytes:
    return urlencode(
        {
            "command": "/customer",
            "text": text,
            "user_id": "U1",
            "channel_id": "C1",
            "team_id": "T1",
            "response_url": "http://127.0.0.1:9/unused",
            "trigger_id": "1.2.3",
        }
    ).encode()


def post(harness, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    send = wsgi_transport(harness.web)
    return send("/slack/events", body, {"Content-Type": "application/x-www-form-urlencoded", **headers})


def test_a_wrong_signature_gets_401_and_no_answer(harness):
    body = slash_body()
    status, _ = post(harness, body, sign("not-the-secret", body))
    assert status == 401


def test_a_stale_signature_gets_401(harness):
    body = slash_body()
    status, _ = post(harness, body, sign(SIGNING_SECRET, body, timestamp=int(time.time()) - 10 * 60))
    assert status == 401


def test_a_missing_signature_gets_401(harness):
    status, _ = post(harness, slash_body(), {})
    assert status == 401


def test_a_body_changed_after_signing_gets_401(harness):
    headers = sign(SIGNING_SECRET, slash_body("jane"))
    status, _ = post(harness, slash_body("everyone"), headers)
    assert status == 401


def call(web: WebApp, method: str, path: str) -> tuple[str, dict]:
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": None}
    seen: list[str] = []
    body = b"".join(web(environ, lambda status, headers: seen.append(status)))
    return seen[0], json.loads(body)


def test_health_says_ok_when_the_database_answers(harness):
    assert call(harness.web, "GET", "/healthz") == ("200 OK", {"ok": True})
    assert call(harness.web, "GET", "/nowhere")[0] == "404 Not Found"
    assert call(harness.web, "GET", "/slack/events")[0] == "405 Method Not Allowed"
    assert call(harness.web, "GET", "/stripe/webhook")[0] == "405 Method Not Allowed"


UNREACHABLE = ["postgresql://postgres@127.0.0.1:9/none", "sqlite:////nonexistent-dir/records.db"]


@pytest.mark.parametrize("url", UNREACHABLE)
def test_an_unreachable_database_is_a_message_in_slack_not_a_stack_trace(slack, url):
    db = Database(url)
    web = WebApp(create_app(settings_for(db, slack), db), db)
    person = SlackPerson(slack, wsgi_transport(web), SIGNING_SECRET)

    message = person.command("jane")

    assert person.last_status == 200
    assert "database is not answering right now" in text_of(message)
    assert "Traceback" not in text_of(message)
    assert call(web, "GET", "/healthz")[0] == "503 Service Unavailable"


def test_an_unreachable_database_on_a_button_click_is_a_message_too(harness, slack):
    with harness.db.session() as s:
        make.customer(s)
    card = harness.person.command("jane")
    broken = Database(UNREACHABLE[0])
    web = WebApp(create_app(settings_for(broken, slack), broken), broken)
    person = SlackPerson(slack, wsgi_transport(web), SIGNING_SECRET)

    assert person.click(card, "subscriptions_all") == 200
    assert "database is not answering right now" in text_of(person.visible()[-1])
    assert "Lifetime value" in text_of(slack.message(card.ts)), "the card is left as it was"


def run_cli(*args: str, env: dict[str, str], cwd) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "STRIPE_", "DATABASE_URL"))}
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", *args],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("command", "env", "variable"),
    [
        ("web", {}, "SLACK_BOT_TOKEN"),
        ("web", {"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_SIGNING_SECRET"),
        ("socket", {"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_APP_TOKEN"),
    ],
)
def test_missing_slack_credentials_give_one_line_naming_the_variable(tmp_path, command, env, variable):
    result = run_cli(command, env=env, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"customer-bot: {variable} is not set")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_customer_bot_web_serves_slack_over_http(tmp_path, slack):
    database_url = f"sqlite:///{tmp_path}/records.db"
    db = Database(database_url)
    db.upgrade()
    with db.session() as s:
        make.customer(s, "Jane Doe")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "STRIPE_"))},
        "DATABASE_URL": database_url,
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "PORT": str(port),
        "WEB_THREADS": "2",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "web"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_until_listening(port, server)
        with urllib.request.urlopen(base + "/healthz", timeout=5) as health:
            assert json.load(health) == {"ok": True}

        from devkit.local_slack import http_transport

        person = SlackPerson(slack, http_transport(base), SIGNING_SECRET)
        card = person.command("jane")
        assert "Jane Doe" in text_of(card) and "Lifetime value" in text_of(card)
        assert person.click(card, "subscriptions_all") == 200
        forged = SlackPerson(slack, http_transport(base), "wrong-secret")
        forged.command("jane")
        assert forged.last_status == 401
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert server.returncode == 0, output
    assert "serving Slack on" in output and "Traceback" not in output


def _wait_until_listening(port: int, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stdout.read() if server.stdout else "server exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)  # polling a port that is not open yet; the connect itself is the synchronisation
    raise AssertionError("customer-bot web did not start listening within 30 s")


def test_stripe_webhooks_without_a_secret_are_refused_plainly(harness):
    import io

    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/stripe/webhook",
        "CONTENT_LENGTH": "2",
        "wsgi.input": io.BytesIO(b"{}"),
    }
    seen: list[str] = []
    body = json.loads(b"".join(harness.web(environ, lambda status, headers: seen.append(status))))
    assert seen == ["503 Service Unavailable"] and "STRIPE_WEBHOOK_SECRET" in body["error"]
