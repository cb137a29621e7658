"""Starting `customer-bot web` and `socket`: with the database down the bot still starts, says so plainly in
Slack and at /healthz, and recovers by itself; a token Slack refuses stops it with one line naming the variable."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from devkit.local_slack import SlackPerson, http_transport
from tests.conftest import SIGNING_SECRET
from tests.slack_text import text_of
from tests.web_process import free_port, start_web, web_env

NOT_ANSWERING = "database is not answering"


def health(base_url: str) -> int:
    try:
        with urllib.request.urlopen(base_url + "/healthz", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_web_starts_with_the_database_down_and_recovers_without_a_restart(tmp_path, slack):
    later = tmp_path / "not-yet"  # SQLite cannot open a file in a folder that does not exist
    web = start_web(
        {
            "DATABASE_URL": f"sqlite:///{later}/records.db",
            "SLACK_BOT_TOKEN": "xoxb-test",
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
        },
        tmp_path,
    )
    try:
        person = SlackPerson(slack, http_transport(web.base_url), SIGNING_SECRET)
        assert health(web.base_url) == 503
        started = web.log()
        assert NOT_ANSWERING in text_of(person.command("jane"))

        later.mkdir()
        deadline = time.monotonic() + 20
        while health(web.base_url) != 200:  # the background retry finds the database and migrates it
            assert time.monotonic() < deadline, web.log()
            time.sleep(0.1)

        reply = text_of(person.command("jane"))
        assert NOT_ANSWERING not in reply and "jane" in reply.lower()
    finally:
        assert web.stop() == 0
    assert "Traceback" not in started, "starting with the database down is one line, not a stack trace"
    log = web.log()
    assert sum("the database is not ready" in line for line in log.splitlines()) == 1
    assert "migrations are applied: serving normally" in log


class RefusingSlack:
    """Slack's Web API answering each method with a fixed body."""

    def __init__(self, answers: dict[str, dict]) -> None:
        answers_by_method = answers

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.dumps(answers_by_method.get(self.path.rsplit("/", 1)[-1], {"ok": True})).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/"


@contextmanager
def refusing_slack(answers: dict[str, dict]) -> Iterator[RefusingSlack]:
    slack = RefusingSlack(answers)
    thread = threading.Thread(target=slack.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield slack
    finally:
        slack.server.shutdown()
        slack.server.server_close()
        thread.join(timeout=5)


def start(command: str, slack_api_url: str, cwd) -> subprocess.CompletedProcess:
    env = {
        "DATABASE_URL": f"sqlite:///{cwd}/records.db",
        "SLACK_BOT_TOKEN": "xoxb-revoked",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_APP_TOKEN": "xapp-test",
        "SLACK_API_URL": slack_api_url,
        "PORT": str(free_port()),
    }
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", command],
        env=web_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("command", ["web", "socket"])
def test_a_bot_token_slack_refuses_stops_the_bot_with_one_line(tmp_path, command):
    with refusing_slack({"auth.test": {"ok": False, "error": "invalid_auth"}}) as slack:
        result = start(command, slack.api_url, tmp_path)
    assert one_line(result) == "customer-bot: SLACK_BOT_TOKEN was refused by Slack: invalid_auth"


def test_an_app_token_slack_refuses_stops_socket_mode_with_one_line(tmp_path):
    with refusing_slack({"apps.connections.open": {"ok": False, "error": "not_allowed_token_type"}}) as slack:
        result = start("socket", slack.api_url, tmp_path)
    assert one_line(result) == "customer-bot: SLACK_APP_TOKEN was refused by Slack: not_allowed_token_type"


def test_an_unreachable_slack_stops_the_bot_with_one_line(tmp_path):
    result = start("web", f"http://127.0.0.1:{free_port()}/api/", tmp_path)
    line = one_line(result)
    assert line.startswith("customer-bot: could not check SLACK_BOT_TOKEN: Slack at http://127.0.0.1:")
    assert "did not answer" in line


def test_a_migration_that_fails_on_a_database_that_answers_stops_the_start_with_one_line(tmp_path):
    """Not an outage: serving "the database is not answering" to everyone would hide a broken migration."""
    from sqlalchemy import text

    from runtime.startup import CannotStart, MigratingDatabase

    broken = MigratingDatabase(f"sqlite:///{tmp_path / 'records.db'}")
    with broken.engine.begin() as connection:  # says 0003 is applied, but holds none of its tables
        connection.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        connection.execute(text("INSERT INTO alembic_version VALUES ('0003')"))

    with pytest.raises(
        CannotStart, match=r"the database migrations failed \(.*\); `customer-bot db upgrade`"
    ):
        broken.start()
    assert not broken.schema_ready()
