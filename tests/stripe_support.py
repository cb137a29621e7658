"""Stripe test parts: a localstripe server and gateway fixtures, helpers that create customers, cards, payments and
subscriptions in it, and `RecordingHTTPClient`, a fake Stripe that records exactly what the gateway sends.

Use the fixtures by registering this module as a plugin (`pytest_plugins = ["tests.stripe_support"]` in
tests/conftest.py, or in a test module). PYTEST_DONT_REWRITE: test modules import helpers from here before pytest
registers it as a plugin, which would otherwise warn; the few asserts below carry their own messages.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import stripe

from bot.stripe_gateway import StripeGateway
from devkit.local_stripe import LocalStripe

# --- test cards, as localstripe 1.15 treats them (localstripe/resources.py, PaymentMethod) -----------------------
# Real Stripe takes these numbers too, but only through its client-side tools; localstripe takes them on the API.

CARD_SUCCESS = "4242424242424242"
"""Attaches and charges."""
CARD_DECLINED = "4000000000000002"
"""localstripe declines it when it is *attached* (402 card_declined, no decline_code): the customer never has it."""
CARD_INSUFFICIENT_FUNDS = "4000000000009995"
"""Like CARD_DECLINED in localstripe (declined on attach, no decline_code); Stripe says insufficient_funds."""
CARD_DECLINES_AFTER_ATTACH = "4000000000000341"
"""Attaches, then every charge is declined (402 card_declined with the charge id, no decline_code)."""
CARD_AUTHENTICATION_REQUIRED = "4000002760003184"
"""Attaches; a confirmed payment intent stops at status requires_action (localstripe answers 200, where Stripe
answers an off-session charge with a 402 authentication_required error)."""
CARD_AUTHENTICATION_REQUIRED_ON_SETUP = "4000002500003155"
"""Treated by localstripe exactly like CARD_AUTHENTICATION_REQUIRED."""

TEST_CARDS: dict[str, str] = {
    "success": CARD_SUCCESS,
    "declined": CARD_DECLINED,
    "insufficient_funds": CARD_INSUFFICIENT_FUNDS,
    "declines_after_attach": CARD_DECLINES_AFTER_ATTACH,
    "authentication_required": CARD_AUTHENTICATION_REQUIRED,
    "authentication_required_on_setup": CARD_AUTHENTICATION_REQUIRED_ON_SETUP,
}


# --- localstripe fixtures -----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def local_stripe() -> Iterator[LocalStripe]:
    """One localstripe for the test session, started empty. Tests create their own objects and never assume the
    server is empty (other tests have written to it)."""
    with LocalStripe() as server:
        yield server


@pytest.fixture
def stripe_gateway(local_stripe: LocalStripe) -> StripeGateway:
    return StripeGateway.connect(local_stripe.api_key, api_base=local_stripe.url)


@pytest.fixture
def stripe_client(local_stripe: LocalStripe) -> stripe.StripeClient:
    """A plain client to set up test objects in localstripe (not the gateway under test)."""
    return local_stripe_client(local_stripe)


def local_stripe_client(local_stripe: LocalStripe) -> stripe.StripeClient:
    return stripe.StripeClient(
        local_stripe.api_key, base_addresses={"api": local_stripe.url}, max_network_retries=0
    )


# --- creating test objects ----------------------------------------------------------------------------------------


def stripe_customer_with_card(
    client: stripe.StripeClient, email: str, card_number: str = CARD_SUCCESS, *, name: str | None = None
) -> tuple[str, str]:
    """A customer with a saved card as its default payment method: (customer id, payment method id).
    Raw card numbers go through the API here, which only localstripe (and Stripe's own test mode helpers) allow."""
    customer_params: dict[str, Any] = {"email": email}
    if name:
        customer_params["name"] = name
    customer = client.v1.customers.create(params=customer_params)
    payment_method = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {
                "number": card_number,
                "exp_month": 12,
                "exp_year": datetime.now(UTC).year + 3,
                "cvc": "123",
            },
        }
    )
    client.v1.payment_methods.attach(payment_method.id, params={"customer": customer.id})
    client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": payment_method.id}}
    )
    return customer.id, payment_method.id


def paid_payment_intent(
    client: stripe.StripeClient,
    customer_id: str,
    payment_method_id: str,
    amount: int,
    currency: str = "usd",
    metadata: Mapping[str, str] | None = None,
) -> str:
    """A succeeded payment of `amount` on the customer's card; returns the payment intent id."""
    params: dict[str, Any] = {
        "amount": amount,
        "currency": currency,
        "customer": customer_id,
        "payment_method": payment_method_id,
        "confirm": True,
    }
    if metadata:
        params["metadata"] = dict(metadata)
    intent = client.v1.payment_intents.create(params=params)
    assert intent.status == "succeeded", intent.status
    return intent.id


def stripe_subscription(
    client: stripe.StripeClient,
    customer_id: str,
    amount: int,
    currency: str,
    interval: str,
    metadata: Mapping[str, str] | None = None,
    *,
    product_name: str = "Coffee club",
) -> str:
    """A subscription billing `amount` every `interval` (day, week, month, year) on the customer's default card.
    localstripe has plans, not prices, so this makes a product and a plan. Returns the subscription id; its first
    invoice is paid at once (the subscription is `active`) unless the card declines (then `incomplete`)."""
    product = client.v1.products.create(params={"name": product_name})
    plan = client.v1.plans.create(
        params={"amount": amount, "currency": currency, "interval": interval, "product": product.id}
    )
    params: dict[str, Any] = {"customer": customer_id, "items": [{"plan": plan.id}]}
    if metadata:
        params["metadata"] = dict(metadata)
    return client.v1.subscriptions.create(params=params).id


# --- a network that loses Stripe's answers ------------------------------------------------------------------------


class AnswerLosingHTTPClient(stripe.RequestsClient):
    """Talks to localstripe for real, but while `losing` is set every POST to `path` ends in a dropped connection:
    after Stripe acted (`reaches_stripe`), or before the request reached it. Like Stripe, and unlike localstripe,
    it acts once per idempotency key: stripe-python's retries of a request already sent are not sent again."""

    def __init__(self, path: str, *, reaches_stripe: bool) -> None:
        super().__init__()
        self.path = path
        self.reaches_stripe = reaches_stripe
        self.losing = True
        self.sent_keys: set[str] = set()

    def request(self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None):
        if not (self.losing and method.lower() == "post" and urlsplit(url).path == self.path):
            return super().request(method, url, headers, post_data)
        key = (headers or {}).get("Idempotency-Key", "")
        if self.reaches_stripe and key not in self.sent_keys:
            self.sent_keys.add(key)
            super().request(method, url, headers, post_data)
        raise stripe.APIConnectionError("Simulated: the connection dropped.", should_retry=True)

    def _sleep_time_seconds(self, num_retries: int) -> float:
        return 0.0


# --- a fake Stripe that records requests --------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    method: str  # upper case: GET, POST, DELETE
    url: str
    headers: dict[str, str]
    params: dict[str, str]  # form body (POST) or query string, decoded, keys as Stripe sees them: "a[b]"

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclass(frozen=True)
class _Outcome:
    status: int = 200
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    connection_error: bool = False


def stripe_error_body(type_: str, message: str, *, code: str | None = None, **extra: Any) -> dict[str, Any]:
    """An error answer shaped like Stripe's: {"error": {"type", "message", "code", ...}}."""
    error: dict[str, Any] = {"type": type_, "message": message, **extra}
    if code is not None:
        error["code"] = code
    return {"error": error}


class RecordingHTTPClient(stripe.HTTPClient):
    """Answers every request the way the test says, and records what was sent.

    By default each request gets `default_status` with `default_body` (a JSON object). Queue other answers, used
    once each and in order, with `respond`, `fail_with_connection_error` or `fail_with_status`. Retry sleeps are
    skipped (and recorded in `sleeps`), so retry tests run instantly.
    """

    name = "recording"

    def __init__(self, default_body: Mapping[str, Any] | None = None, default_status: int = 200) -> None:
        super().__init__()
        self.default = _Outcome(default_status, default_body or {})
        self.requests: list[RecordedRequest] = []
        self.sleeps: list[float] = []
        self._queue: deque[_Outcome] = deque()
        self._lock = threading.Lock()

    # -- what to answer --

    def respond(
        self,
        body: Mapping[str, Any],
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        *,
        times: int = 1,
    ) -> RecordingHTTPClient:
        self._queue.extend([_Outcome(status, body, dict(headers or {}))] * times)
        return self

    def fail_with_connection_error(self, times: int = 1) -> RecordingHTTPClient:
        """The next `times` requests fail as a network error would (stripe-python may retry those)."""
        self._queue.extend([_Outcome(connection_error=True)] * times)
        return self

    def fail_with_status(
        self,
        status: int,
        times: int = 1,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> RecordingHTTPClient:
        """The next `times` requests get an HTTP error `status` with a Stripe-shaped error body."""
        if body is None:
            kind = {429: "invalid_request_error", 401: "invalid_request_error"}.get(status, "api_error")
            code = "rate_limit" if status == 429 else None
            body = stripe_error_body(kind, f"Simulated HTTP {status}", code=code)
        return self.respond(body, status, headers, times=times)

    # -- what was sent --

    @property
    def last(self) -> RecordedRequest:
        assert self.requests, "no request was sent to Stripe"
        return self.requests[-1]

    # -- stripe.HTTPClient --

    def request(
        self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None, **_: Any
    ) -> tuple[str, int, dict[str, str]]:
        query = urlsplit(url).query
        body = post_data.decode() if isinstance(post_data, bytes) else (post_data or "")
        params = dict(parse_qsl(body if method.lower() == "post" else query, keep_blank_values=True))
        with self._lock:
            self.requests.append(RecordedRequest(method.upper(), url, dict(headers or {}), params))
            outcome = self._queue.popleft() if self._queue else self.default
        if outcome.connection_error:
            raise stripe.APIConnectionError("Simulated network error talking to Stripe.", should_retry=True)
        response_headers = {"request-id": f"req_recorded_{len(self.requests)}"}
        response_headers.update({key.lower(): value for key, value in outcome.headers.items()})
        return json.dumps(outcome.body or {}), outcome.status, response_headers

    def request_stream(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("RecordingHTTPClient does not stream")

    def close(self) -> None:
        pass

    def _sleep_time_seconds(self, num_retries: int) -> float:
        self.sleeps.append(super()._sleep_time_seconds(num_retries))
        return 0.0


def recording_gateway(recorder: RecordingHTTPClient, api_key: str = "sk_test_recorded") -> StripeGateway:
    """A gateway made by `StripeGateway.connect` (so with its real settings) that talks to `recorder`; its pauses
    between retries are recorded in `recorder.sleeps` instead of slept."""
    return StripeGateway.connect(api_key, http_client=recorder, sleep=recorder.sleeps.append)


def subscription_body(subscription_id: str = "sub_recorded", **fields: Any) -> dict[str, Any]:
    """A subscription as Stripe returns it (API 2025-03-31 and later: the billing period lives on the items)."""
    body: dict[str, Any] = {
        "id": subscription_id,
        "object": "subscription",
        "status": "active",
        "cancel_at_period_end": False,
        "canceled_at": None,
        "ended_at": None,
        "pause_collection": None,
        "trial_end": None,
        "items": {
            "object": "list",
            "data": [
                {"id": "si_recorded", "object": "subscription_item", "current_period_end": 1_900_000_000}
            ],
        },
    }
    body.update(fields)
    return body
