"""The real `customer-bot web` refusing what strangers and broken clients send, cheaply and quietly: unsigned,
stale, oversized, malformed and deeply nested requests get a 4xx and one log line, never a 500 or a traceback;
clients that send a byte a second do not keep Slack's requests from being answered."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from bot.db import Database
from devkit.local_slack import LocalSlack, SlackPerson, http_transport, sign, wsgi_transport
from runtime.server import make_server, serve_until
from runtime.web import MAX_BODY_BYTES
from tests import factories as make
from tests.conftest import SIGNING_SECRET
from tests.slack_text import text_of
from tests.web_process import WebProcess, free_port, start_web

STRIPE_SECRET = "whsec_test_front"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
def local_slack() -> Iterator[LocalSlack]:
    with LocalSlack() as local:
        yield local


@pytest.fixture(scope="module")
def web(tmp_path_factory, local_slack) -> Iterator[WebProcess]:
    """The web command on a database holding Jane Doe, with Stripe webhooks configured, on two threads."""
    where: Path = tmp_path_factory.mktemp("front")
    database_url = f"sqlite:///{where}/records.db"
    db = Database(database_url)
    db.upgrade()
    with db.session() as s:
        make.customer(s, "Jane Doe")
    db.dispose()
    process = start_web(
        {
            "DATABASE_URL": database_url,
            "SLACK_BOT_TOKEN": "xoxb-test",
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": local_slack.api_url,
            "STRIPE_API_KEY": "sk_test_front",
            "STRIPE_API_BASE": "http://127.0.0.1:9",  # never reached: nothing here is a valid event
            "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
            "WEB_THREADS": "2",
        },
        where,
    )
    yield process
    assert process.stop() == 0, process.log()


def post(web: WebProcess, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def command(text: str = "jane") -> bytes:
    return urlencode({"command": "/customer", "text": text, "user_id": "U1", "team_id": "T1"}).encode()


def signed(body: bytes, content_type: str = FORM, **sign_args) -> dict[str, str]:
    return {"Content-Type": content_type, **sign(SIGNING_SECRET, body, **sign_args)}


def nested_json(depth: int) -> str:
    return '{"type":"block_actions","a":' * depth + "1" + "}" * depth


def stripe_signed(body: bytes) -> dict[str, str]:
    import hashlib
    import hmac

    timestamp = int(time.time())
    digest = hmac.new(STRIPE_SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "Stripe-Signature": f"t={timestamp},v1={digest}"}


def form_payload(payload: dict) -> tuple[bytes, dict[str, str]]:
    body = urlencode({"payload": json.dumps(payload)}).encode()
    return body, signed(body)


def refusals() -> list:
    """(name, path, body, headers, expected status)"""
    body = command()
    nested = nested_json(30_000).encode()
    return [
        ("unsigned", "/slack/events", body, {"Content-Type": FORM}, 401),
        ("signed with another secret", "/slack/events", body, {"Content-Type": FORM, **sign("x", body)}, 401),
        ("stale", "/slack/events", body, signed(body, timestamp=int(time.time()) - 600), 401),
        (
            "non-numeric timestamp",
            "/slack/events",
            body,
            {**signed(body), "X-Slack-Request-Timestamp": "soon"},
            401,
        ),
        (
            "a timestamp of 5,000 digits",
            "/slack/events",
            body,
            {**signed(body), "X-Slack-Request-Timestamp": "9" * 5000},
            401,
        ),
        ("unsigned and deeply nested", "/slack/events", nested, {"Content-Type": "application/json"}, 401),
        ("signed and deeply nested JSON", "/slack/events", nested, signed(nested, "application/json"), 400),
        (
            "signed and a deeply nested payload",
            "/slack/events",
            urlencode({"payload": nested_json(15_000)}).encode(),
            signed(urlencode({"payload": nested_json(15_000)}).encode()),
            400,
        ),
        ("signed, payload not JSON", "/slack/events", b"payload=%7Bnot", signed(b"payload=%7Bnot"), 400),
        ("signed, payload a list", "/slack/events", b"payload=%5B%5D", signed(b"payload=%5B%5D"), 400),
        (
            "signed, actions not a list",
            "/slack/events",
            *form_payload({"type": "block_actions", "actions": "x"}),
            400,
        ),
        (
            "signed, view not an object",
            "/slack/events",
            *form_payload({"type": "view_submission", "view": 5}),
            400,
        ),
        ("signed, no payload nor command", "/slack/events", b"user_id=U1", signed(b"user_id=U1"), 400),
        ("signed, not a form", "/slack/events", b"&&==&", signed(b"&&==&"), 400),
        ("signed, not UTF-8", "/slack/events", b"command=%2F\xff\xfe", signed(b"command=%2F\xff\xfe"), 400),
        ("signed, wrong content type", "/slack/events", body, signed(body, "text/plain"), 400),
        ("signed, JSON not an object", "/slack/events", b"[1]", signed(b"[1]", "application/json"), 400),
        ("Stripe, unsigned garbage", "/stripe/webhook", b"\x00{{", {"Content-Type": "application/json"}, 400),
        ("Stripe, signed and deeply nested", "/stripe/webhook", nested, stripe_signed(nested), 400),
        ("Stripe, signed, not an event", "/stripe/webhook", b'{"id": 1}', stripe_signed(b'{"id": 1}'), 400),
    ]


@pytest.mark.parametrize(
    ("path", "body", "headers", "status"),
    [case[1:] for case in refusals()],
    ids=[case[0] for case in refusals()],
)
def test_what_slack_or_stripe_never_send_is_refused_with_a_4xx_and_no_traceback(
    web, path, body, headers, status
):
    answered, _ = post(web, path, body, headers)
    assert answered == status
    assert "Traceback" not in web.log()


def raw_exchange(web: WebProcess, head: bytes, body: bytes = b"") -> bytes:
    """Send bytes as they are and read what comes back until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", web.port), timeout=10) as connection:
        connection.sendall(head + body)
        received = b""
        try:
            while chunk := connection.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass  # the server refused and closed while more was on its way; what it said first is in hand
        return received


@pytest.mark.parametrize("path", ["/slack/events", "/stripe/webhook"])
def test_a_body_claiming_10_mb_is_refused_before_it_is_sent(web, path):
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bot\r\nContent-Type: {FORM}\r\n"
        f"Content-Length: {10 * 1024 * 1024}\r\n\r\n"
    ).encode()
    answer = raw_exchange(web, head)  # the body never follows: the answer must come without it
    assert answer.startswith(b"HTTP/1.1 413")
    assert "Traceback" not in web.log()


def test_a_chunked_body_over_the_limit_is_refused_once_it_passes_the_limit(web):
    chunk = b"a" * 65536
    body = (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * (2 * MAX_BODY_BYTES // len(chunk)) + b"0\r\n\r\n"
    head = b"POST /slack/events HTTP/1.1\r\nHost: bot\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert raw_exchange(web, head, body).startswith(b"HTTP/1.1 413")


def test_a_body_at_the_limit_is_read_and_judged_on_its_signature(web):
    body = b"command=%2Fcustomer&text=" + b"a" * (MAX_BODY_BYTES - 25)
    assert len(body) == MAX_BODY_BYTES
    assert post(web, "/slack/events", body, {"Content-Type": FORM})[0] == 401


def test_each_refusal_is_one_short_log_line(web):
    before = web.log().count("\n")
    post(web, "/slack/events", command(), {"Content-Type": FORM})
    refusal = [line for line in web.log().splitlines()[before:] if "refused" in line]
    assert len(refusal) == 1 and "401" in refusal[0] and len(refusal[0]) < 200


SLOW_CLIENTS = 20
SLOW_SECONDS = 3


def test_clients_sending_a_byte_a_second_do_not_hold_up_slack(web, local_slack):
    """Twenty connections trickle a body a byte a second, ten times the server's two threads; meanwhile
    people's /customer commands are answered within a second each."""
    slow = []
    for _ in range(SLOW_CLIENTS):
        connection = socket.create_connection(("127.0.0.1", web.port), timeout=5)
        connection.sendall(
            f"POST /slack/events HTTP/1.1\r\nHost: bot\r\nContent-Type: {FORM}\r\nContent-Length: 100\r\n\r\n".encode()
        )
        slow.append(connection)
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(1.0):  # the pace of the attack, not a wait for the server
            for connection in slow:
                connection.send(b"a")

    trickler = threading.Thread(target=trickle)
    trickler.start()
    person = SlackPerson(local_slack, http_transport(web.base_url, timeout=5), SIGNING_SECRET)
    took = []
    try:
        ends = time.monotonic() + SLOW_SECONDS
        while time.monotonic() < ends:
            started = time.monotonic()
            card = person.command("jane")
            took.append(time.monotonic() - started)
            assert "Jane Doe" in text_of(card)
    finally:
        stop.set()
        trickler.join()
        for connection in slow:
            connection.close()
    assert len(took) >= SLOW_SECONDS and max(took) < 1.0, took


def test_a_request_still_arriving_after_the_deadline_is_cut_off(harness):
    """The server closes a connection whose request is not whole within its deadline (10 s in production)."""
    port = free_port()
    server = make_server(harness.web, port=port, threads=1, host="127.0.0.1", request_deadline=1)
    stopping = threading.Event()
    serving = threading.Thread(target=serve_until, args=(server, stopping), kwargs={"grace": 1})
    serving.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(b"POST /slack/events HTTP/1.1\r\nHost: bot\r\nContent-Length: 100\r\n\r\n")
            started = time.monotonic()
            closed = False
            while not closed and time.monotonic() - started < 5:
                try:
                    connection.send(b"a")
                    closed = connection.recv(1) == b""
                except TimeoutError:
                    continue  # still open: the recv waited one second for the server
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
        assert closed and time.monotonic() - started < 4
        # A whole request on a new connection is still served.
        person = SlackPerson(harness.slack, http_transport(f"http://127.0.0.1:{port}"), SIGNING_SECRET)
        person.command("nobody")
        assert person.last_status == 200
    finally:
        stopping.set()
        serving.join(timeout=10)


def test_the_in_process_front_refuses_a_claimed_size_without_reading(harness):
    """WSGI servers other than ours: the app itself refuses on Content-Length and never reads past it."""

    class Untouchable:
        def read(self, *_args):
            raise AssertionError("the body was read")

    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/slack/events",
        "CONTENT_LENGTH": str(MAX_BODY_BYTES + 1),
        "CONTENT_TYPE": FORM,
        "wsgi.input": Untouchable(),
    }
    seen: list[str] = []
    answer = json.loads(b"".join(harness.web(environ, lambda status, headers: seen.append(status))))
    assert seen == ["413 Content Too Large"] and "bytes" in answer["error"]
    send = wsgi_transport(harness.web)
    assert (
        send("/slack/events", command(), {"Content-Type": FORM, "X-Slack-Request-Timestamp": "x"})[0] == 401
    )


def test_slacks_unsigned_certificate_check_gets_its_200(harness):
    send = wsgi_transport(harness.web)
    assert send("/slack/events", b"ssl_check=1&token=legacy", {"Content-Type": FORM})[0] == 200
