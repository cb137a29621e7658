"""The Stripe stand-in: Stripe's idempotency and network faults in front of localstripe, driven by a real
stripe-python client, with localstripe asked directly what really happened."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import stripe

from tests.stripe_standin import StripeStandIn
from tests.stripe_support import (
    local_stripe_client,
    paid_payment_intent,
    stripe_customer_with_card,
    stripe_subscription,
)

PAYMENT = 5000
REFUND = 1000
SHORT_TIMEOUT = 0.3  # seconds a client waits for an answer in the stall tests


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def stand_in(local_stripe) -> Iterator[StripeStandIn]:
    with StripeStandIn(local_stripe.url) as proxy:
        yield proxy
    assert proxy.errors == []


@pytest.fixture
def direct(local_stripe) -> stripe.StripeClient:
    """Straight to localstripe: what Stripe really holds."""
    return local_stripe_client(local_stripe)


@pytest.fixture
def connect(local_stripe) -> Iterator[Callable[..., stripe.StripeClient]]:
    """Clients of a stand-in, as the bot's gateway makes them (no retries here); closed after the test."""
    http_clients: list[stripe.RequestsClient] = []

    def make(proxy: StripeStandIn, timeout: float = 5.0) -> stripe.StripeClient:
        http_client = stripe.RequestsClient(timeout=timeout)
        http_clients.append(http_client)
        return stripe.StripeClient(
            local_stripe.api_key,
            base_addresses={"api": proxy.url},
            max_network_retries=0,
            http_client=http_client,
        )

    yield make
    for http_client in http_clients:
        http_client.close()


@pytest.fixture
def client(stand_in, connect) -> stripe.StripeClient:
    return connect(stand_in)


@pytest.fixture
def payment(direct) -> str:
    """A paid payment intent of our own, made straight in localstripe."""
    customer_id, card_id = stripe_customer_with_card(direct, f"stand-in-{uuid.uuid4().hex[:8]}@example.com")
    return paid_payment_intent(direct, customer_id, card_id, PAYMENT)


def new_key() -> str:
    return f"test-{uuid.uuid4()}"


def refund(client: stripe.StripeClient, payment: str, key: str, amount: int = REFUND) -> stripe.Refund:
    return client.v1.refunds.create(
        params={"payment_intent": payment, "amount": amount, "metadata": {"case": "stand-in"}},
        options={"idempotency_key": key},
    )


def refunds_in_stripe(direct: stripe.StripeClient, payment: str) -> list[str]:
    return [made.id for made in direct.v1.refunds.list(params={"payment_intent": payment, "limit": 100}).data]


def outcomes(proxy: StripeStandIn, key: str) -> list[str]:
    return [str(exchange.outcome) for exchange in proxy.requests_with(key)]


def header(response: Any, name: str) -> str | None:
    return response.headers.get(name) if response is not None and response.headers is not None else None


# --- idempotency ----------------------------------------------------------------------------------------------


def test_a_keyed_post_is_executed_once_and_then_replayed(stand_in, client, direct, payment):
    key = new_key()

    first = refund(client, payment, key)
    again = refund(client, payment, key)

    assert again.id == first.id
    assert header(first.last_response, "Idempotent-Replayed") is None
    assert header(again.last_response, "Idempotent-Replayed") == "true"
    assert again.last_response.idempotency_key == key
    assert refunds_in_stripe(direct, payment) == [first.id]
    assert stand_in.executed(key) == 1
    assert outcomes(stand_in, key) == ["forwarded", "replayed"]
    logged = stand_in.requests_with(key)[0]
    assert (logged.method, logged.path, logged.status) == ("POST", "/v1/refunds", 200)
    assert logged.params["amount"] == str(REFUND) and logged.params["metadata[case]"] == "stand-in"


def test_the_same_key_with_other_parameters_is_refused(stand_in, client, direct, payment):
    key = new_key()
    first = refund(client, payment, key)

    with pytest.raises(stripe.IdempotencyError) as refused:
        refund(client, payment, key, amount=REFUND * 2)

    assert refused.value.http_status == 400
    assert f"'{key}'" in refused.value.user_message
    with pytest.raises(stripe.IdempotencyError):  # another path with the key is another request too
        client.v1.customers.create(params={"email": "other@example.com"}, options={"idempotency_key": key})
    assert refunds_in_stripe(direct, payment) == [first.id]
    assert stand_in.executed(key) == 1
    assert outcomes(stand_in, key) == ["forwarded", "mismatch", "mismatch"]


def test_a_key_is_forgotten_after_24_hours(local_stripe, connect, direct, payment):
    clock = FakeClock()
    with StripeStandIn(local_stripe.url, clock=clock) as proxy:
        client = connect(proxy)
        key = new_key()
        first = refund(client, payment, key)
        clock.now += 86_400 - 1
        assert refund(client, payment, key).id == first.id
        clock.now += 2
        later = refund(client, payment, key)

    assert later.id != first.id
    assert sorted(refunds_in_stripe(direct, payment)) == sorted([first.id, later.id])
    assert proxy.executed(key) == 2
    assert outcomes(proxy, key) == ["forwarded", "replayed", "forwarded"]


# --- dropped requests and lost answers --------------------------------------------------------------------------


def test_a_request_dropped_before_stripe_did_nothing_and_its_retry_executes(
    stand_in, client, direct, payment
):
    key = new_key()
    stand_in.drop_before("POST", "/v1/refunds")

    with pytest.raises(stripe.APIConnectionError):
        refund(client, payment, key)
    assert refunds_in_stripe(direct, payment) == []

    made = refund(client, payment, key)
    assert refunds_in_stripe(direct, payment) == [made.id]
    assert stand_in.executed(key) == 1
    assert outcomes(stand_in, key) == ["dropped", "forwarded"]


def test_a_lost_answer_means_stripe_acted_and_the_retry_replays_it(stand_in, client, direct, payment):
    key = new_key()
    stand_in.lose_answer("POST", "/v1/refunds")

    with pytest.raises(stripe.APIConnectionError):
        refund(client, payment, key)
    made_while_lost = refunds_in_stripe(direct, payment)
    assert len(made_while_lost) == 1

    retried = refund(client, payment, key)
    assert retried.id == made_while_lost[0]
    assert header(retried.last_response, "Idempotent-Replayed") == "true"
    assert refunds_in_stripe(direct, payment) == made_while_lost
    assert stand_in.executed(key) == 1
    assert outcomes(stand_in, key) == ["lost", "replayed"]


def test_rules_match_method_and_path_prefix_and_last_their_times(stand_in, client, direct, payment):
    stand_in.drop_before("POST", "/v1/refunds", times=2)
    stand_in.lose_answer("GET", "/v1/payment_intents", times=None)

    for _ in range(2):
        with pytest.raises(stripe.APIConnectionError):
            refund(client, payment, new_key())
    refund(client, payment, new_key())  # the rule is used up
    assert client.v1.customers.list(params={"limit": 1}).object == "list"  # other paths pass
    for _ in range(3):  # a GET rule on /v1/payment_intents reaches /v1/payment_intents/<id>, until disarmed
        with pytest.raises(stripe.APIConnectionError):
            client.v1.payment_intents.retrieve(payment)
    stand_in.disarm()

    assert client.v1.payment_intents.retrieve(payment).id == payment
    assert len(refunds_in_stripe(direct, payment)) == 1


# --- injected HTTP errors ---------------------------------------------------------------------------------------


def test_a_500_after_stripe_acted_is_stored_and_replayed(stand_in, client, direct, payment):
    key = new_key()
    stand_in.fail("POST", "/v1/refunds", 500, acted=True, headers={"Stripe-Should-Retry": "false"})

    with pytest.raises(stripe.APIError) as first:
        refund(client, payment, key)
    assert first.value.http_status == 500
    made = refunds_in_stripe(direct, payment)
    assert len(made) == 1

    with pytest.raises(stripe.APIError) as replayed:
        refund(client, payment, key)
    assert replayed.value.http_status == 500
    assert replayed.value.json_body["error"]["type"] == "api_error"
    assert header(replayed.value, "Idempotent-Replayed") == "true"
    assert header(replayed.value, "Stripe-Should-Retry") == "false"
    assert refunds_in_stripe(direct, payment) == made
    assert stand_in.executed(key) == 1
    assert outcomes(stand_in, key) == ["failed", "replayed"]


def test_a_500_before_stripe_acted_makes_and_stores_nothing(stand_in, client, direct, payment):
    key = new_key()
    stand_in.fail("POST", "/v1/refunds", 500)

    with pytest.raises(stripe.APIError) as failed:
        refund(client, payment, key)
    assert failed.value.http_status == 500
    assert refunds_in_stripe(direct, payment) == []

    made = refund(client, payment, key)
    assert refunds_in_stripe(direct, payment) == [made.id]
    assert outcomes(stand_in, key) == ["failed", "forwarded"]


def test_a_429_makes_and_stores_nothing(stand_in, client, direct, payment):
    key = new_key()
    stand_in.fail("POST", "/v1/refunds", 429)

    with pytest.raises(stripe.RateLimitError) as limited:
        refund(client, payment, key)
    assert limited.value.http_status == 429
    assert limited.value.json_body["error"]["code"] == "rate_limit"
    assert refunds_in_stripe(direct, payment) == []

    made = refund(client, payment, key)
    assert refunds_in_stripe(direct, payment) == [made.id]
    assert stand_in.executed(key) == 1


# --- stalls -----------------------------------------------------------------------------------------------------


def test_a_stalled_request_holds_its_key_and_reaches_stripe_once_released(stand_in, connect, direct, payment):
    client = connect(stand_in, timeout=SHORT_TIMEOUT)
    key = new_key()
    stand_in.stall("POST", "/v1/refunds")

    with pytest.raises(stripe.APIConnectionError):  # the client gives up waiting
        refund(client, payment, key)
    stand_in.wait_for_stalled(1)

    with pytest.raises(stripe.StripeError) as in_use:  # stripe-python: APIError for a v1 409
        refund(client, payment, key)
    assert in_use.value.http_status == 409
    assert in_use.value.json_body["error"]["type"] == "idempotency_error"
    assert in_use.value.json_body["error"]["code"] == "idempotency_key_in_use"
    assert key in in_use.value.json_body["error"]["message"]
    assert refunds_in_stripe(direct, payment) == []

    assert stand_in.release() == 1
    stand_in.wait_until_idle()
    made = refunds_in_stripe(direct, payment)
    assert len(made) == 1
    assert refund(client, payment, key).id == made[0]  # the 409 was not stored: the late execution was
    assert stand_in.executed(key) == 1
    assert outcomes(stand_in, key) == ["forwarded", "conflict", "replayed"]
    assert stand_in.requests_with(key)[0].stalled


@pytest.mark.parametrize(("then", "reaches_stripe"), [("forward", True), ("drop", False), ("lose", True)])
def test_a_released_request_goes_on_is_dropped_or_loses_its_answer(
    stand_in, client, direct, payment, then, reaches_stripe
):
    key = new_key()
    stand_in.stall("POST", "/v1/refunds", then=then)
    outcome: list[object] = []

    def attempt() -> None:
        try:
            outcome.append(refund(client, payment, key))
        except stripe.StripeError as error:
            outcome.append(error)

    worker = threading.Thread(target=attempt)
    worker.start()
    stand_in.wait_for_stalled(1)
    assert stand_in.stalled == 1
    stand_in.release()
    worker.join()

    made = refunds_in_stripe(direct, payment)
    if then == "forward":  # the client was still waiting: it gets the answer
        assert len(outcome) == 1 and isinstance(outcome[0], stripe.Refund) and [outcome[0].id] == made
    else:
        assert len(outcome) == 1 and isinstance(outcome[0], stripe.APIConnectionError)
    assert len(made) == (1 if reaches_stripe else 0)
    assert stand_in.executed(key) == (1 if reaches_stripe else 0)
    refund(client, payment, key)  # dropped: executes now; otherwise replayed
    assert len(refunds_in_stripe(direct, payment)) == 1
    assert stand_in.executed(key) == 1


def test_release_lets_the_longest_held_go_first(stand_in, client, direct, payment):
    keys = [new_key(), new_key()]
    stand_in.stall("POST", "/v1/refunds", times=None)
    workers = [threading.Thread(target=refund, args=(client, payment, keys[0]))]
    workers[0].start()
    stand_in.wait_for_stalled(1)
    workers.append(threading.Thread(target=refund, args=(client, payment, keys[1])))
    workers[1].start()
    stand_in.wait_for_stalled(2)

    assert stand_in.release(1) == 1
    workers[0].join()
    assert (stand_in.executed(keys[0]), stand_in.executed(keys[1]), stand_in.stalled) == (1, 0, 1)
    assert stand_in.release() == 1
    workers[1].join()
    assert len(refunds_in_stripe(direct, payment)) == 2


def test_a_stalled_answer_means_stripe_acted_while_the_client_timed_out(stand_in, connect, direct, payment):
    client = connect(stand_in, timeout=SHORT_TIMEOUT)
    key = new_key()
    stand_in.stall_answer("POST", "/v1/refunds")

    with pytest.raises(stripe.APIConnectionError):
        refund(client, payment, key)
    stand_in.wait_for_stalled(1)
    made = refunds_in_stripe(direct, payment)
    assert len(made) == 1
    assert stand_in.executed(key) == 1

    assert refund(client, payment, key).id == made[0]  # Stripe finished: the retry is replayed
    stand_in.release()
    stand_in.wait_until_idle()
    assert refunds_in_stripe(direct, payment) == made
    assert outcomes(stand_in, key) == ["forwarded", "replayed"]


def test_refusals_from_stripe_are_not_stored(stand_in, client):
    key = new_key()
    for _ in range(2):
        with pytest.raises(stripe.InvalidRequestError) as refused:
            refund(client, "pi_standin_nonexistent", key)
        assert refused.value.http_status == 404
    assert stand_in.executed(key) == 2
    assert outcomes(stand_in, key) == ["forwarded", "forwarded"]


def test_wait_for_stalled_times_out(stand_in):
    with pytest.raises(TimeoutError):
        stand_in.wait_for_stalled(1, timeout=0.05)


def test_closing_drops_held_requests(local_stripe, connect, direct, payment):
    key = new_key()
    outcome: list[BaseException] = []
    with StripeStandIn(local_stripe.url) as proxy:
        client = connect(proxy)
        proxy.stall("POST", "/v1/refunds")

        def attempt() -> None:
            try:
                refund(client, payment, key)
            except stripe.StripeError as error:
                outcome.append(error)

        worker = threading.Thread(target=attempt)
        worker.start()
        proxy.wait_for_stalled(1)
    worker.join()

    assert len(outcome) == 1 and isinstance(outcome[0], stripe.APIConnectionError)
    assert refunds_in_stripe(direct, payment) == []
    assert outcomes(proxy, key) == ["dropped"]


# --- Stripe unreachable, and plain GETs -------------------------------------------------------------------------


def test_while_down_nothing_reaches_stripe(stand_in, client, direct, payment):
    stand_in.down()
    with pytest.raises(stripe.APIConnectionError):
        refund(client, payment, new_key())
    with pytest.raises(stripe.APIConnectionError):
        client.v1.payment_intents.retrieve(payment)
    assert stand_in.forwarded == []
    assert [str(exchange.outcome) for exchange in stand_in.log] == ["down", "down"]
    assert refunds_in_stripe(direct, payment) == []

    stand_in.up()
    made = refund(client, payment, new_key())
    assert refunds_in_stripe(direct, payment) == [made.id]


def test_gets_pass_through_unchanged_and_are_never_stored(stand_in, client, direct, payment):
    assert client.v1.payment_intents.retrieve(payment).to_dict() == (
        direct.v1.payment_intents.retrieve(payment).to_dict()
    )
    listed = client.v1.refunds.list(params={"payment_intent": payment})
    assert listed.data == []
    made = direct.v1.refunds.create(params={"payment_intent": payment, "amount": REFUND})
    relisted = client.v1.refunds.list(params={"payment_intent": payment})
    assert [r.id for r in relisted.data] == [made.id]
    assert header(relisted.last_response, "Idempotent-Replayed") is None

    gets = stand_in.log
    assert [(exchange.method, str(exchange.outcome), exchange.key) for exchange in gets] == [
        ("GET", "forwarded", None)
    ] * 3
    assert gets[1].path == "/v1/refunds" and gets[1].params == {"payment_intent": payment}
    assert [exchange.number for exchange in stand_in.forwarded] == [exchange.number for exchange in gets]


def test_as_basil_an_intent_names_no_invoice_and_its_invoice_payments_tell_instead(
    local_stripe, connect, direct
):
    customer, card = stripe_customer_with_card(direct, "basil@example.com")
    subscription = stripe_subscription(direct, customer, 2900, "usd", "month")
    invoice = direct.v1.invoices.list(params={"subscription": subscription}).data[0]
    intent = invoice.payment_intent
    with StripeStandIn(local_stripe.url, basil=True) as proxy:
        client = connect(proxy)

        read_intent = client.v1.payment_intents.retrieve(
            intent, params={"expand": ["latest_charge"]}
        ).to_dict()
        plain = client.v1.invoices.retrieve(invoice.id).to_dict()
        expanded = client.v1.invoices.retrieve(invoice.id, params={"expand": ["payments"]}).to_dict()
        paying = client.v1.invoice_payments.list(
            params={
                "payment": {"type": "payment_intent", "payment_intent": intent},
                "expand": ["data.invoice"],
            }
        )
        one_off = paid_payment_intent(direct, customer, card, 500)
        none = client.v1.invoice_payments.list(
            params={"payment": {"type": "payment_intent", "payment_intent": one_off}}
        )
    assert proxy.errors == []

    assert "invoice" not in read_intent and "invoice" not in read_intent["latest_charge"]
    assert not {"payment_intent", "charge", "paid", "payments"} & set(plain), "payments only when expanded"
    assert [p["payment"]["payment_intent"] for p in expanded["payments"]["data"]] == [intent]
    (invoice_payment,) = paying.data
    assert (invoice_payment.invoice.id, invoice_payment.invoice.parent.subscription_details.subscription) == (
        invoice.id,
        subscription,
    )
    assert "payment_intent" not in invoice_payment.invoice.to_dict()
    assert none.data == []
