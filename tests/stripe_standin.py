"""A Stripe stand-in for tests: a real HTTP proxy in front of localstripe that adds Stripe's idempotency and injects
network and server faults (dropped requests, lost answers, HTTP errors, stalls, an unreachable Stripe).

    with StripeStandIn(local_stripe.url) as stand_in:
        client = stripe.StripeClient(api_key, base_addresses={"api": stand_in.url})
        stand_in.lose_answer("POST", "/v1/refunds")
        ...
        assert stand_in.executed(key) == 1

Point a client at `stand_in.url` exactly as at Stripe. What the stand-in adds to localstripe:

Idempotency, as Stripe does it (localstripe ignores the `Idempotency-Key` header). A POST with a key whose answer
shows Stripe began executing it (2xx, 402, 5xx) is stored for 24 hours by `clock`; the same request with that key
again is answered from the store (`Idempotent-Replayed: true`) without reaching localstripe; the key with other
parameters is refused (400 idempotency_error); the key while its first request is still in the stand-in is refused
(409 idempotency_key_in_use). Answers that refuse a request (400, 401, 404, 409, 429) are not stored. Keys are
scoped by API key and `Stripe-Account`, as Stripe scopes them by account.

Faults, armed by rules. A rule matches a method ("GET", "POST", "DELETE"; "*" for any) and a path: the exact path
or any path below it ("/v1/refunds" matches "/v1/refunds" and "/v1/refunds/re_123", not "/v1/refundsx"; the query
string is ignored). Each request takes the first armed rule it matches, once; a rule lasts `times` requests (None:
until `disarm`). Where each fault strikes, in the order a request meets them:

1. `down()`: the connection is closed at once; nothing reaches Stripe.
2. `drop_before`: the connection is closed without an answer; nothing reaches Stripe.
3. `fail(acted=False)`: Stripe answers an error without acting (nothing forwarded, nothing stored).
4. Stripe's idempotency layer: 409 for a key in flight, 400 for a key with other parameters, or a replay.
5. `stall`: the request is held (its key in flight) until `release`, then it goes on (`then="forward"`), is
   dropped (`"drop"`: never reaches Stripe) or goes on with its answer lost (`"lose"`).
6. Stripe executes: forwarded to localstripe. `fail(acted=True)`: the error replaces localstripe's answer and is
   what Stripe stores (Stripe's "500 after executing", replayed for 24 hours).
7. The answer goes back: `lose_answer` closes the connection instead; `stall_answer` holds the answer until
   `release` (the key is already stored: a retry meanwhile is replayed). A client that gave up meanwhile misses it.

A replayed or refused request still meets the network faults around it (a lost answer stays lost).

Stripe's shapes since API version 2025-03-31.basil, with `basil=True` (localstripe answers older ones): payment
intents and charges no longer name their invoice (`invoice` removed); invoices lose `payment_intent`, `charge`,
`paid` and `paid_out_of_band`, and carry `payments` (their invoice payments, taught to localstripe by
`devkit.localstripe_calls`) only when the request expands it (`expand[]=payments`, `data.payments` on a list), as
Stripe leaves it out otherwise. `GET /v1/invoice_payments` lists the invoice payments of an `invoice` or of a
payment intent (`payment[type]=payment_intent&payment[payment_intent]=…`; none for an intent that pays no invoice),
`expand[]=data.invoice` expanding each invoice; the stand-in answers it from localstripe's own objects.

Every answer carries `Connection: close`, so each request has its own connection and "closed without an answer"
is what a client sees of a dropped connection (stripe-python raises `stripe.APIConnectionError`). `log` records
every request and what became of it; `executed(key)` counts the requests with a key that reached localstripe.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

REPLAY_WINDOW = 86_400.0
"""Seconds Stripe keeps an idempotency key's answer (by `clock`)."""
UPSTREAM_TIMEOUT = 30.0
"""Seconds the stand-in waits for localstripe."""

Then = Literal["forward", "drop", "lose"]

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_NOT_FORWARDED = _HOP_BY_HOP | {"host", "content-length", "accept-encoding"}
_NOT_RETURNED = _HOP_BY_HOP | {"content-length", "date", "server", "content-encoding"}


class Outcome(StrEnum):
    """What became of a request (compares equal to its string value)."""

    RECEIVED = "received"  # still being handled
    FORWARDED = "forwarded"  # reached localstripe; its answer was sent
    REPLAYED = "replayed"  # answered from the idempotency store
    MISMATCH = "mismatch"  # 400: the key was first used with other parameters
    CONFLICT = "conflict"  # 409: the key's first request is still in flight
    DROPPED = "dropped"  # closed without an answer before reaching Stripe
    LOST = "lost"  # closed without an answer (after Stripe acted, or after a replay)
    FAILED = "failed"  # answered an injected HTTP error
    STALLED = "stalled"  # being held right now
    DOWN = "down"  # closed at once: Stripe unreachable
    UPSTREAM_ERROR = "upstream_error"  # localstripe did not answer (502)


@dataclass
class Exchange:
    """One request the stand-in received, and what became of it. `log` hands out copies."""

    number: int
    method: str
    path: str
    query: str
    key: str | None  # Idempotency-Key header, POST only
    params: dict[str, str]  # form body (POST) or query string, decoded: {"metadata[order]": "7"}
    outcome: Outcome = Outcome.RECEIVED
    status: int | None = None  # what the client was answered; None when the connection was closed
    reached_stripe: bool = False  # forwarded to localstripe
    upstream_status: int | None = None  # what localstripe answered
    stalled: bool = False  # was held by `stall` or `stall_answer`
    rule: str | None = None  # the fault rule it met

    @property
    def replayed(self) -> bool:
        return self.outcome == Outcome.REPLAYED


@dataclass
class _Rule:
    action: str  # drop_before, lose_answer, fail, stall, stall_answer
    method: str
    path: str
    remaining: int | None
    status: int = 0
    acted: bool = False
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    then: Then = "forward"

    def matches(self, method: str, path: str) -> bool:
        if self.method not in ("*", method):
            return False
        base = self.path.rstrip("/")
        return path == self.path or path.startswith(base + "/")


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class _Stored:
    answer: _Answer
    fingerprint: tuple[Any, ...]
    stored_at: float
    request_id: str | None


@dataclass(eq=False)
class _Held:
    exchange: Exchange
    released: bool = False


@dataclass
class _Request:
    method: str
    target: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    key: str | None
    scope: tuple[str, str, str] | None
    fingerprint: tuple[Any, ...]
    exchange: Exchange = field(repr=False)


def stripe_error(type_: str, message: str, *, code: str | None = None) -> dict[str, Any]:
    """An error body shaped like Stripe's."""
    error: dict[str, Any] = {"type": type_, "message": message}
    if code is not None:
        error["code"] = code
    return {"error": error}


def _default_error(status: int) -> dict[str, Any]:
    if status == 429:
        return stripe_error(
            "invalid_request_error",
            "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
            code="rate_limit",
        )
    if status == 402:
        return stripe_error("card_error", "Your card was declined.", code="card_declined")
    if status == 401:
        return stripe_error("invalid_request_error", "Invalid API Key provided.")
    if status >= 500:
        return stripe_error(
            "api_error", f"An unknown error occurred (HTTP {status} from the Stripe stand-in)."
        )
    return stripe_error("invalid_request_error", f"HTTP {status} from the Stripe stand-in.")


def _storable(status: int) -> bool:
    """Whether Stripe keeps this answer for the key: it began executing (2xx, 402 card errors, 5xx)."""
    return 200 <= status < 300 or status == 402 or status >= 500


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = UPSTREAM_TIMEOUT  # a client that connects and sends nothing does not hold up shutdown forever
    server: _Server

    def do_GET(self) -> None:
        self.server.stand_in._handle(self)

    def do_POST(self) -> None:
        self.server.stand_in._handle(self)

    def do_DELETE(self) -> None:
        self.server.stand_in._handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the stand-in keeps its own log

    def send_answer(self, answer: _Answer) -> bool:
        """Write the answer; False when the client had already gone."""
        try:
            self.send_response(answer.status)
            for name, value in answer.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(answer.body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True
            return False
        return True


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins every handler thread
    block_on_close = True

    def __init__(self, stand_in: StripeStandIn) -> None:
        self.stand_in = stand_in
        super().__init__(("127.0.0.1", 0), _Handler)


class StripeStandIn:
    """Stripe's network edge and idempotency in front of localstripe at `upstream_url`, with faults on demand."""

    def __init__(
        self,
        upstream_url: str,
        *,
        clock: Callable[[], float] = time.time,
        replay_window: float = REPLAY_WINDOW,
        upstream_timeout: float = UPSTREAM_TIMEOUT,
        basil: bool = False,
    ) -> None:
        upstream = urlsplit(upstream_url)
        if upstream.scheme != "http" or not upstream.hostname:
            raise ValueError(f"upstream_url must be an http:// address, not {upstream_url!r}")
        self.upstream_url = upstream_url.rstrip("/")
        self._upstream_host = upstream.hostname
        self._upstream_port = upstream.port or 80
        self._upstream_prefix = upstream.path.rstrip("/")
        self._clock = clock
        self._replay_window = replay_window
        self._upstream_timeout = upstream_timeout
        self._basil = basil

        self._changed = threading.Condition()  # guards everything below
        self._rules: list[_Rule] = []
        self._stored: dict[tuple[str, str, str], _Stored] = {}
        self._in_flight: set[tuple[str, str, str]] = set()
        self._held: list[_Held] = []
        self._log: list[Exchange] = []
        self._numbers = itertools.count(1)
        self._active = 0
        self._down = False
        self._closing = False
        self._errors: list[BaseException] = []

        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- life --

    @property
    def url(self) -> str:
        """Where clients talk to the stand-in: `base_addresses={"api": stand_in.url}`."""
        if self._server is None:
            raise RuntimeError("StripeStandIn is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StripeStandIn:
        if self._server is not None:
            return self
        self._closing = False
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="stripe-stand-in"
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop: held requests are dropped (closed without an answer), then every server thread is joined."""
        server, thread = self._server, self._thread
        if server is None:
            return
        with self._changed:
            self._closing = True
            self._held.clear()  # their waiters see `_closing` and give up, unreleased
            self._changed.notify_all()
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()
        self._server = self._thread = None

    def __enter__(self) -> StripeStandIn:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- faults --

    def drop_before(self, method: str, path: str, times: int | None = 1) -> None:
        """Matching requests never reach Stripe: the connection is closed without an answer."""
        self._arm(_Rule("drop_before", method, path, times))

    def lose_answer(self, method: str, path: str, times: int | None = 1) -> None:
        """Matching requests reach Stripe (and are stored for their key), then the connection is closed without
        an answer."""
        self._arm(_Rule("lose_answer", method, path, times))

    def fail(
        self,
        method: str,
        path: str,
        status: int,
        times: int | None = 1,
        acted: bool = False,
        body: Mapping[str, Any] | str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Matching requests are answered HTTP `status` with a Stripe-shaped error `body` (a default one for the
        status when None) and extra `headers`. With `acted`, Stripe executed the request first: it is forwarded,
        and the error, not localstripe's answer, is stored for its key (when the status is one Stripe stores) and
        replayed for 24 hours. Without, nothing is forwarded or stored."""
        if not 400 <= status <= 599:
            raise ValueError(f"fail() takes an HTTP error status, not {status}")
        if body is None:
            body = _default_error(status)
        if isinstance(body, str):
            body = body.encode()
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        extra = tuple((name, value) for name, value in (headers or {}).items())
        self._arm(_Rule("fail", method, path, times, status=status, acted=acted, body=raw, headers=extra))

    def stall(self, method: str, path: str, times: int | None = 1, then: Then = "forward") -> None:
        """Matching requests are held before they reach Stripe (their key in flight) until `release`, then:
        "forward" (they reach Stripe late; a client still waiting gets the answer), "drop" (they never reach
        Stripe; closed without an answer) or "lose" (they reach Stripe; closed without an answer)."""
        if then not in ("forward", "drop", "lose"):
            raise ValueError(f"then must be 'forward', 'drop' or 'lose', not {then!r}")
        self._arm(_Rule("stall", method, path, times, then=then))

    def stall_answer(self, method: str, path: str, times: int | None = 1) -> None:
        """Matching requests reach Stripe at once (and are stored for their key); their answer is held until
        `release`, then sent (or discarded, if the client gave up meanwhile)."""
        self._arm(_Rule("stall_answer", method, path, times))

    def release(self, n: int | None = None) -> int:
        """Let the `n` longest-held requests go on (all when None); returns how many were released."""
        with self._changed:
            chosen = self._held if n is None else self._held[:n]
            for held in chosen:
                held.released = True
            self._held = [held for held in self._held if not held.released]
            self._changed.notify_all()
            return len(chosen)

    def wait_for_stalled(self, count: int, timeout: float = 10.0) -> None:
        """Block until at least `count` requests are being held; TimeoutError after `timeout` seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._held) >= count, timeout):
                raise TimeoutError(f"{len(self._held)} request(s) held after {timeout} s, waited for {count}")

    def wait_until_idle(self, timeout: float = 10.0) -> None:
        """Block until no request is being handled (held ones count as handled); TimeoutError otherwise. Use it
        after `release` to know a released request has reached Stripe and been answered."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._active == 0, timeout):
                raise TimeoutError(f"{self._active} request(s) still being handled after {timeout} s")

    @property
    def stalled(self) -> int:
        """How many requests are being held right now."""
        with self._changed:
            return len(self._held)

    def down(self) -> None:
        """Stripe unreachable: every request is answered by closing its connection; nothing reaches Stripe."""
        with self._changed:
            self._down = True

    def up(self) -> None:
        with self._changed:
            self._down = False

    def disarm(self) -> None:
        """Clear every fault rule (requests already held stay held until `release`)."""
        with self._changed:
            self._rules.clear()

    # -- what happened --

    @property
    def log(self) -> list[Exchange]:
        """Every request received so far, oldest first (copies)."""
        with self._changed:
            return [replace(exchange, params=dict(exchange.params)) for exchange in self._log]

    @property
    def forwarded(self) -> list[Exchange]:
        """The requests that reached localstripe, oldest first."""
        return [exchange for exchange in self.log if exchange.reached_stripe]

    def requests_with(self, key: str) -> list[Exchange]:
        """The requests that carried idempotency key `key`, oldest first."""
        return [exchange for exchange in self.log if exchange.key == key]

    def executed(self, key: str) -> int:
        """How many requests with idempotency key `key` actually reached localstripe."""
        return sum(1 for exchange in self.requests_with(key) if exchange.reached_stripe)

    @property
    def errors(self) -> list[BaseException]:
        """Unexpected exceptions inside the stand-in's request handlers (none, normally)."""
        with self._changed:
            return list(self._errors)

    # -- serving --

    def _arm(self, rule: _Rule) -> None:
        if rule.remaining is not None and rule.remaining < 1:
            raise ValueError("times must be at least 1, or None for every matching request")
        rule.method = rule.method.upper()
        with self._changed:
            self._rules.append(rule)

    def _take_rule(self, method: str, path: str) -> _Rule | None:
        for rule in self._rules:
            if rule.matches(method, path):
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self._rules.remove(rule)
                return rule
        return None

    def _handle(self, handler: _Handler) -> None:
        with self._changed:
            self._active += 1
        try:
            answer = self._serve(handler)
            if answer is None:
                handler.close_connection = True  # closed without a word
            else:
                handler.send_answer(answer)
        except Exception as error:
            with self._changed:
                self._errors.append(error)
            handler.close_connection = True
            raise
        finally:
            with self._changed:
                self._active -= 1
                self._changed.notify_all()

    def _read(self, handler: _Handler) -> _Request:
        method = handler.command.upper()
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length > 0 else b""
        split = urlsplit(handler.path)
        content_type = handler.headers.get("Content-Type", "")
        if method == "GET" or not body:
            pairs = parse_qsl(split.query, keep_blank_values=True)
        elif content_type.startswith("application/x-www-form-urlencoded"):
            pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        else:
            pairs = [("", body.decode("utf-8", "replace"))]
        key = handler.headers.get("Idempotency-Key") if method == "POST" else None
        scope = None
        if key:
            scope = (handler.headers.get("Authorization", ""), handler.headers.get("Stripe-Account", ""), key)
        with self._changed:
            exchange = Exchange(
                next(self._numbers), method, split.path, split.query, key or None, dict(pairs)
            )
            self._log.append(exchange)
        return _Request(
            method=method,
            target=handler.path,
            path=split.path,
            headers=list(handler.headers.items()),
            body=body,
            key=key or None,
            scope=scope,
            fingerprint=(method, split.path, tuple(sorted(pairs))),
            exchange=exchange,
        )

    def _serve(self, handler: _Handler) -> _Answer | None:
        """Take one request through the stages in the module docstring; None means close without an answer."""
        request = self._read(handler)
        exchange = request.exchange
        early: _Answer | None = None
        claimed = False
        with self._changed:
            if self._down:
                exchange.outcome = Outcome.DOWN
                return None
            rule = self._take_rule(request.method, request.path)
            exchange.rule = rule.action if rule else None
            if rule is not None and rule.action == "drop_before":
                exchange.outcome = Outcome.DROPPED
                return None
            if rule is not None and rule.action == "fail" and not rule.acted:
                exchange.outcome, exchange.status = Outcome.FAILED, rule.status
                return self._answer(rule.status, rule.body, rule.headers, request)
            if request.scope is not None:
                early = self._idempotency(request)
                claimed = early is None
                if claimed:
                    self._in_flight.add(request.scope)

        then: Then = "forward"
        try:
            if rule is not None and rule.action == "stall":
                with self._changed:
                    before = exchange.outcome
                then = rule.then if self._hold(exchange) else "drop"
                with self._changed:
                    exchange.outcome = before
            if then == "drop":
                with self._changed:
                    exchange.outcome = Outcome.DROPPED
                return None
            answer = early if early is not None else self._execute(request, rule, store=claimed)
        finally:
            if claimed:
                with self._changed:
                    self._in_flight.discard(request.scope)
                    self._changed.notify_all()

        if then == "lose" or (rule is not None and rule.action == "lose_answer"):
            with self._changed:
                exchange.outcome = Outcome.LOST
            return None
        if rule is not None and rule.action == "stall_answer":
            with self._changed:
                outcome = exchange.outcome
            if not self._hold(exchange):
                with self._changed:
                    exchange.outcome = Outcome.LOST
                return None
            with self._changed:
                exchange.outcome = outcome
        with self._changed:
            exchange.status = answer.status
        return answer

    def _idempotency(self, request: _Request) -> _Answer | None:
        """Stripe's idempotency layer (lock held): an answer for the request, or None to execute it."""
        assert request.scope is not None and request.key is not None
        exchange, key = request.exchange, request.key
        if request.scope in self._in_flight:
            exchange.outcome = Outcome.CONFLICT
            body = stripe_error(
                "idempotency_error",
                "There is currently another in-progress request using this Idempotent Key (that probably means "
                "you submitted twice, and the other request is still going through): "
                f"{key}. Please try again later.",
                code="idempotency_key_in_use",
            )
            return self._answer(409, json.dumps(body).encode(), (), request)
        stored = self._stored.get(request.scope)
        if stored is not None and self._clock() - stored.stored_at >= self._replay_window:
            del self._stored[request.scope]
            stored = None
        if stored is None:
            return None
        if stored.fingerprint != request.fingerprint:
            exchange.outcome = Outcome.MISMATCH
            body = stripe_error(
                "idempotency_error",
                "Keys for idempotent requests can only be used with the same parameters they were first used "
                f"with. Try using a key other than '{key}' if you meant to execute a different request.",
            )
            return self._answer(400, json.dumps(body).encode(), (), request)
        exchange.outcome = Outcome.REPLAYED
        headers = [*stored.answer.headers, ("Idempotent-Replayed", "true")]
        if stored.request_id:
            headers.append(("Original-Request", stored.request_id))
        return self._answer(stored.answer.status, stored.answer.body, headers, request)

    def _execute(self, request: _Request, rule: _Rule | None, *, store: bool) -> _Answer:
        """Stripe acts: forward to localstripe, then store the answer (or an acted failure) for the key."""
        exchange = request.exchange
        try:
            upstream = self._forward_as_basil(request) if self._basil else self._forward(request)
        except OSError as error:
            with self._changed:
                exchange.outcome = Outcome.UPSTREAM_ERROR
            body = stripe_error("api_error", f"The Stripe stand-in could not reach localstripe: {error}")
            return self._answer(502, json.dumps(body).encode(), (), request)
        with self._changed:
            exchange.upstream_status = upstream.status
            exchange.outcome = Outcome.FORWARDED
        answer = upstream
        if rule is not None and rule.action == "fail":  # acted: Stripe executed, then erred
            answer = _Answer(rule.status, rule.body, (("Content-Type", "application/json"), *rule.headers))
            with self._changed:
                exchange.outcome = Outcome.FAILED
        answer = self._answer(answer.status, answer.body, answer.headers, request)
        if store and _storable(answer.status):
            assert request.scope is not None
            stored = _Stored(
                answer=_Answer(answer.status, answer.body, _replayable(answer.headers)),
                fingerprint=request.fingerprint,
                stored_at=self._clock(),
                request_id=_header(answer.headers, "Request-Id"),
            )
            with self._changed:
                self._stored[request.scope] = stored
        return answer

    def _forward(self, request: _Request) -> _Answer:
        connection = http.client.HTTPConnection(
            self._upstream_host, self._upstream_port, timeout=self._upstream_timeout
        )
        try:
            headers = {name: value for name, value in request.headers if name.lower() not in _NOT_FORWARDED}
            if request.body or request.method in ("POST", "PUT", "PATCH"):
                headers["Content-Length"] = str(len(request.body))
            connection.request(request.method, self._upstream_prefix + request.target, request.body, headers)
            with self._changed:
                request.exchange.reached_stripe = True
            response = connection.getresponse()
            body = response.read()
            returned = tuple(
                (name, value) for name, value in response.getheaders() if name.lower() not in _NOT_RETURNED
            )
            return _Answer(response.status, body, returned)
        finally:
            connection.close()

    def _forward_as_basil(self, request: _Request) -> _Answer:
        """Forward to localstripe and answer in the shapes of API versions since 2025-03-31.basil."""
        pairs = parse_qsl(urlsplit(request.target).query, keep_blank_values=True)
        if request.method == "POST" and request.body:
            pairs += parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True)
        expanded = [value for name, value in pairs if name.startswith("expand")]
        if request.method == "GET" and request.path == "/v1/invoice_payments":
            return self._invoice_payments(request, dict(pairs), expanded)
        upstream = self._forward(request)
        if upstream.status != 200:
            return upstream
        shaped = _as_basil(json.loads(upstream.body), any(e.endswith("payments") for e in expanded))
        return replace(upstream, body=json.dumps(shaped).encode())

    def _upstream_object(self, request: _Request, path: str) -> dict[str, Any] | None:
        """An object as localstripe holds it, read with the request's credentials; None when it has none."""
        answer = self._forward(replace(request, method="GET", target=path, body=b""))
        return json.loads(answer.body) if answer.status == 200 else None

    def _invoice_payments(self, request: _Request, params: dict[str, str], expanded: list[str]) -> _Answer:
        intent_id = params.get("payment[payment_intent]")
        invoice_id = params.get("invoice")
        if intent_id:
            intent = self._upstream_object(request, f"/v1/payment_intents/{intent_id}") or {}
            invoice_id = invoice_id or intent.get("invoice")
            if intent.get("invoice") != invoice_id:
                invoice_id = None  # the intent pays another invoice, or none
        invoice = self._upstream_object(request, f"/v1/invoices/{invoice_id}") if invoice_id else None
        data = [
            payment
            for payment in ((invoice or {}).get("payments") or {}).get("data") or []
            if intent_id in (None, payment["payment"].get("payment_intent"))
        ]
        if "data.invoice" in expanded:
            data = [{**payment, "invoice": _as_basil(invoice, False)} for payment in data]
        body = {"object": "list", "data": data, "has_more": False, "url": "/v1/invoice_payments"}
        return _Answer(200, json.dumps(body).encode(), (("Content-Type", "application/json"),))

    def _answer(
        self, status: int, body: bytes, headers: Iterable[tuple[str, str]], request: _Request
    ) -> _Answer:
        """An answer as Stripe would send it: JSON, with a request id, echoing the idempotency key."""
        out = [(name, value) for name, value in headers]
        if _header(out, "Content-Type") is None:
            out.append(("Content-Type", "application/json"))
        if _header(out, "Request-Id") is None:
            out.append(("Request-Id", f"req_standin_{request.exchange.number}"))
        if request.key and _header(out, "Idempotency-Key") is None:
            out.append(("Idempotency-Key", request.key))
        return _Answer(status, body, tuple(out))

    def _hold(self, exchange: Exchange) -> bool:
        """Hold the caller until `release` (True) or shutdown (False)."""
        held = _Held(exchange)
        with self._changed:
            if self._closing:
                return False
            exchange.stalled = True
            exchange.outcome = Outcome.STALLED
            self._held.append(held)
            self._changed.notify_all()
            self._changed.wait_for(lambda: held.released or self._closing)
            with contextlib.suppress(ValueError):
                self._held.remove(held)
            return held.released


_NOT_SINCE_BASIL = {
    "payment_intent": ("invoice",),
    "charge": ("invoice",),
    "invoice": ("payment_intent", "charge", "paid", "paid_out_of_band"),
}


def _as_basil(value: Any, with_payments: bool) -> Any:
    """A Stripe answer as API versions since 2025-03-31.basil shape it; an invoice's `payments` stays only when
    `with_payments` (expanded)."""
    if isinstance(value, list):
        return [_as_basil(item, with_payments) for item in value]
    if not isinstance(value, dict):
        return value
    shaped = {name: _as_basil(item, with_payments) for name, item in value.items()}
    for name in _NOT_SINCE_BASIL.get(shaped.get("object"), ()):
        shaped.pop(name, None)
    if shaped.get("object") == "invoice" and not with_payments:
        shaped.pop("payments", None)
    return shaped


def _header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    for header, value in headers:
        if header.lower() == name.lower():
            return value
    return None


def _replayable(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """The headers a replay repeats: all but the per-request ones (a replay gets its own request id)."""
    return tuple(
        (name, value) for name, value in headers if name.lower() not in ("request-id", "idempotency-key")
    )
