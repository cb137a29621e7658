"""The Stripe gateway: against localstripe where it can play Stripe, and against a recording fake Stripe for what
localstripe cannot do (pause_collection, trial_end moves, refund reasons, idempotency, failures and retries)."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import stripe

import devkit.local_stripe as local_stripe_module
from bot.models import Recurring, Subscription
from bot.stripe_gateway import (
    API_VERSION,
    AuthenticationRequired,
    CallLimits,
    CardDeclined,
    ChargeResult,
    RefundResult,
    StripeGateway,
    StripeRejected,
    StripeUnavailable,
)
from bot.stripe_sync import apply_subscription_state
from devkit.local_stripe import LocalStripe, LocalStripeUnavailable
from tests.stripe_support import (
    CARD_AUTHENTICATION_REQUIRED,
    CARD_DECLINED,
    CARD_DECLINES_AFTER_ATTACH,
    RecordingHTTPClient,
    local_stripe_client,
    paid_payment_intent,
    recording_gateway,
    stripe_customer_with_card,
    stripe_error_body,
    stripe_subscription,
    subscription_body,
)


def key() -> str:
    return f"test-{uuid.uuid4()}"


def email() -> str:
    return f"{uuid.uuid4().hex[:10]}@example.com"


# --- against localstripe -----------------------------------------------------------------------------------------


def test_refund_in_full(stripe_gateway: StripeGateway, stripe_client: stripe.StripeClient) -> None:
    customer, card = stripe_customer_with_card(stripe_client, email())
    payment = paid_payment_intent(stripe_client, customer, card, 2500, "usd")

    refund = stripe_gateway.refund(
        payment, 2500, reason=None, metadata={"order": "1001"}, idempotency_key=key()
    )

    assert refund == RefundResult(id=refund.id, status="succeeded", amount=2500, currency="usd")
    assert refund.id.startswith("re_")
    stored = stripe_client.v1.refunds.retrieve(refund.id)
    assert stored.payment_intent == payment
    assert stored.metadata.to_dict() == {"order": "1001"}


def test_partial_refunds(stripe_gateway: StripeGateway, stripe_client: stripe.StripeClient) -> None:
    customer, card = stripe_customer_with_card(stripe_client, email())
    payment = paid_payment_intent(stripe_client, customer, card, 5000, "eur")

    first = stripe_gateway.refund(payment, 1200, reason=None, metadata={}, idempotency_key=key())
    second = stripe_gateway.refund(payment, 800, reason=None, metadata={}, idempotency_key=key())

    assert (first.amount, first.currency, second.amount) == (1200, "eur", 800)
    charge = stripe_client.v1.payment_intents.retrieve(payment).latest_charge
    assert (
        stripe_client.v1.charges.retrieve(charge if isinstance(charge, str) else charge.id).amount_refunded
        == 2000
    )


def test_off_session_charge(stripe_gateway: StripeGateway, stripe_client: stripe.StripeClient) -> None:
    customer, card = stripe_customer_with_card(stripe_client, email())

    result = stripe_gateway.charge_off_session(
        customer,
        card,
        1999,
        "USD",
        metadata={"order": "1002", "items": "Coffee beans x2"},
        idempotency_key=key(),
    )

    assert result == ChargeResult(
        payment_intent_id=result.payment_intent_id,
        charge_id=result.charge_id,
        status="succeeded",
        amount=1999,
        currency="usd",
        card_brand="visa",
        card_last4="4242",
    )
    assert result.payment_intent_id.startswith("pi_")
    assert result.charge_id is not None and result.charge_id.startswith("ch_")
    stored = stripe_client.v1.payment_intents.retrieve(result.payment_intent_id)
    assert stored.metadata.to_dict() == {"order": "1002", "items": "Coffee beans x2"}


def test_declined_card(stripe_gateway: StripeGateway, stripe_client: stripe.StripeClient) -> None:
    customer, card = stripe_customer_with_card(stripe_client, email(), CARD_DECLINES_AFTER_ATTACH)

    with pytest.raises(CardDeclined) as caught:
        stripe_gateway.charge_off_session(customer, card, 1500, "usd", metadata={}, idempotency_key=key())

    failure = caught.value
    assert failure.code == "card_declined"
    assert failure.outcome_unknown is False
    assert (
        failure.user_message
        == "The card was declined. Ask the customer to use another card or to call their bank."
    )


def test_card_declined_when_saved_never_reaches_the_customer(stripe_client: stripe.StripeClient) -> None:
    # localstripe declines these test cards when they are attached, as Stripe does for a card that fails its check.
    with pytest.raises(stripe.CardError):
        stripe_customer_with_card(stripe_client, email(), CARD_DECLINED)


def test_authentication_required_in_localstripe(
    stripe_gateway: StripeGateway, stripe_client: stripe.StripeClient
) -> None:
    # localstripe answers 200 with a payment intent in `requires_action`, where Stripe answers a 402 error (tested
    # with the recording client below); the gateway raises the same failure for both.
    customer, card = stripe_customer_with_card(stripe_client, email(), CARD_AUTHENTICATION_REQUIRED)

    with pytest.raises(AuthenticationRequired) as caught:
        stripe_gateway.charge_off_session(customer, card, 1500, "usd", metadata={}, idempotency_key=key())

    assert caught.value.user_message.startswith(
        "The customer's bank wants them to confirm this payment themselves"
    )
    assert caught.value.code == "authentication_required"
    assert caught.value.payment_intent_id is not None


def recorded(subscription: dict) -> Recurring:
    """A subscription as Stripe answered it, as our record of it becomes (the one mapping, bot.stripe_sync)."""
    row = Subscription(stripe_subscription_id=subscription["id"], status="active")
    apply_subscription_state(row, subscription)
    return row


def test_cancel_now(stripe_gateway: StripeGateway, stripe_client: stripe.StripeClient) -> None:
    customer, _ = stripe_customer_with_card(stripe_client, email())
    subscription = stripe_subscription(stripe_client, customer, 1500, "usd", "month")
    before = datetime.now(UTC).replace(microsecond=0)

    result = recorded(
        stripe_gateway.cancel_subscription(subscription, at_period_end=False, idempotency_key=key())
    )

    assert (result.stripe_subscription_id, result.status, result.cancel_at_period_end) == (
        subscription,
        "canceled",
        False,
    )
    assert result.canceled_at is not None and result.canceled_at >= before
    assert result.canceled_at.tzinfo is UTC
    assert result.next_bill_at is None


def test_cancel_at_period_end(stripe_gateway: StripeGateway, stripe_client: stripe.StripeClient) -> None:
    customer, _ = stripe_customer_with_card(stripe_client, email())
    subscription = stripe_subscription(stripe_client, customer, 9900, "usd", "year", {"plan_kind": "annual"})

    result = recorded(
        stripe_gateway.cancel_subscription(subscription, at_period_end=True, idempotency_key=key())
    )

    assert (result.status, result.cancel_at_period_end, result.payments_paused) == ("active", True, False)
    assert result.current_period_end is not None
    assert result.current_period_end > datetime.now(UTC) + timedelta(days=360)
    assert stripe_client.v1.subscriptions.retrieve(subscription).cancel_at_period_end is True


def test_update_email(stripe_gateway: StripeGateway, stripe_client: stripe.StripeClient) -> None:
    customer, _ = stripe_customer_with_card(stripe_client, "old@example.com")
    assert stripe_gateway.customer_email(customer) == "old@example.com"

    stripe_gateway.update_email(customer, "new@example.com", idempotency_key=key())

    assert stripe_gateway.customer_email(customer) == "new@example.com"


def test_unknown_customer_is_rejected(stripe_gateway: StripeGateway) -> None:
    with pytest.raises(StripeRejected) as caught:
        stripe_gateway.customer_email("cus_doesnotexist")
    assert caught.value.outcome_unknown is False
    assert caught.value.user_message == (
        "Stripe has no record of this customer; it may have been deleted. Check the record in Stripe."
    )


# --- against a recording fake Stripe -----------------------------------------------------------------------------


def test_api_version_is_the_one_stripe_python_targets() -> None:
    # If this fails, stripe-python was upgraded: read Stripe's changelog, then move API_VERSION on deliberately.
    assert stripe.api_version == API_VERSION


def assert_write(recorder: RecordingHTTPClient, method: str, path: str, idempotency_key: str) -> None:
    request = recorder.last
    assert (request.method, request.path) == (method, path)
    assert request.header("Idempotency-Key") == idempotency_key
    assert request.header("Stripe-Version") == API_VERSION


def test_pause_until_a_date() -> None:
    # localstripe has no pause_collection: check the exact request instead.
    recorder = RecordingHTTPClient(
        subscription_body(pause_collection={"behavior": "void", "resumes_at": 1_800_000_000})
    )
    resumes = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
    idempotency_key = key()

    result = recorded(
        recording_gateway(recorder).pause_payments(
            "sub_recorded", resumes_at=resumes, idempotency_key=idempotency_key
        )
    )

    assert_write(recorder, "POST", "/v1/subscriptions/sub_recorded", idempotency_key)
    assert recorder.last.params == {
        "pause_collection[behavior]": "void",
        "pause_collection[resumes_at]": str(int(resumes.timestamp())),
    }
    assert result.payments_paused is True
    assert result.paused_until == datetime.fromtimestamp(1_800_000_000, UTC)


def test_pause_until_resumed() -> None:
    # localstripe has no pause_collection.
    recorder = RecordingHTTPClient(
        subscription_body(pause_collection={"behavior": "void", "resumes_at": None})
    )
    idempotency_key = key()

    result = recorded(
        recording_gateway(recorder).pause_payments(
            "sub_recorded", resumes_at=None, idempotency_key=idempotency_key
        )
    )

    assert_write(recorder, "POST", "/v1/subscriptions/sub_recorded", idempotency_key)
    assert recorder.last.params == {"pause_collection[behavior]": "void"}
    assert (result.payments_paused, result.paused_until) == (True, None)


def test_resume() -> None:
    # localstripe has no pause_collection; Stripe unsets a field posted as an empty value.
    recorder = RecordingHTTPClient(subscription_body())
    idempotency_key = key()

    result = recorded(
        recording_gateway(recorder).resume_payments("sub_recorded", idempotency_key=idempotency_key)
    )

    assert_write(recorder, "POST", "/v1/subscriptions/sub_recorded", idempotency_key)
    assert recorder.last.params == {"pause_collection": ""}
    assert result.payments_paused is False


def test_move_next_bill_date() -> None:
    # localstripe takes trial_end on update but refuses proration_behavior, so it cannot check this call.
    when = datetime(2027, 3, 1, tzinfo=UTC)
    recorder = RecordingHTTPClient(subscription_body(status="trialing", trial_end=int(when.timestamp())))
    idempotency_key = key()

    result = recorded(
        recording_gateway(recorder).move_next_bill_date("sub_recorded", when, idempotency_key=idempotency_key)
    )

    assert_write(recorder, "POST", "/v1/subscriptions/sub_recorded", idempotency_key)
    assert recorder.last.params == {"trial_end": str(int(when.timestamp())), "proration_behavior": "none"}
    assert (result.status, result.next_bill_at) == ("trialing", when), (
        "a moved bill date is the next bill date"
    )
    assert result.current_period_end == datetime.fromtimestamp(1_900_000_000, UTC)  # read from the items


def test_move_next_bill_date_needs_an_aware_time() -> None:
    with pytest.raises(ValueError):
        recording_gateway(RecordingHTTPClient()).move_next_bill_date(
            "sub_recorded", datetime(2027, 3, 1), idempotency_key=key()
        )


def test_current_period_end_on_the_subscription_for_older_api_versions() -> None:
    recorder = RecordingHTTPClient(subscription_body(current_period_end=1_850_000_000, items={"data": []}))
    result = recorded(recording_gateway(recorder).resume_payments("sub_recorded", idempotency_key=key()))
    assert result.current_period_end == datetime.fromtimestamp(1_850_000_000, UTC)


def test_refund_request_carries_reason_metadata_and_key() -> None:
    # localstripe refuses the `reason` parameter and ignores Idempotency-Key.
    recorder = RecordingHTTPClient(
        {"id": "re_1", "object": "refund", "status": "pending", "amount": 700, "currency": "gbp"}
    )
    idempotency_key = key()

    result = recording_gateway(recorder).refund(
        "pi_1",
        700,
        reason="requested_by_customer",
        metadata={"order": "1003"},
        idempotency_key=idempotency_key,
    )

    assert_write(recorder, "POST", "/v1/refunds", idempotency_key)
    assert recorder.last.params == {
        "payment_intent": "pi_1",
        "amount": "700",
        "reason": "requested_by_customer",
        "metadata[order]": "1003",
    }
    assert result == RefundResult(id="re_1", status="pending", amount=700, currency="gbp")


def test_refund_over_the_refundable_amount() -> None:
    # localstripe does not check the amount left to refund; this is Stripe's answer.
    recorder = RecordingHTTPClient().fail_with_status(
        400,
        body=stripe_error_body(
            "invalid_request_error",
            "Refund amount ($30.00) is greater than unrefunded amount on charge ($25.00)",
            code="amount_too_large",
            param="amount",
        ),
    )

    with pytest.raises(StripeRejected) as caught:
        recording_gateway(recorder).refund("pi_1", 3000, reason=None, metadata={}, idempotency_key=key())

    assert caught.value.user_message.startswith("That is more than is left to refund on this payment")
    assert (caught.value.code, caught.value.outcome_unknown) == ("amount_too_large", False)
    assert len(recorder.requests) == 1  # a 400 is not retried


def test_refund_of_a_refunded_charge() -> None:
    recorder = RecordingHTTPClient().fail_with_status(
        400,
        body=stripe_error_body(
            "invalid_request_error",
            "Charge ch_1 has already been refunded.",
            code="charge_already_refunded",
        ),
    )
    with pytest.raises(StripeRejected) as caught:
        recording_gateway(recorder).refund("pi_1", 100, reason=None, metadata={}, idempotency_key=key())
    assert (
        caught.value.user_message
        == "This payment has already been refunded in full; nothing more was refunded."
    )


def test_refund_reason_must_be_stripes() -> None:
    recorder = RecordingHTTPClient()
    with pytest.raises(ValueError):
        recording_gateway(recorder).refund(
            "pi_1", 100, reason="changed_mind", metadata={}, idempotency_key=key()
        )
    assert recorder.requests == []


def test_off_session_charge_request() -> None:
    recorder = RecordingHTTPClient(
        {
            "id": "pi_1",
            "object": "payment_intent",
            "status": "succeeded",
            "amount": 4200,
            "currency": "usd",
            "latest_charge": "ch_1",
            "payment_method": {
                "id": "pm_1",
                "object": "payment_method",
                "card": {"brand": "amex", "last4": "0005"},
            },
        }
    )
    idempotency_key = key()

    result = recording_gateway(recorder).charge_off_session(
        "cus_1", "pm_1", 4200, "usd", metadata={"order": "1004"}, idempotency_key=idempotency_key
    )

    assert_write(recorder, "POST", "/v1/payment_intents", idempotency_key)
    assert recorder.last.params == {
        "amount": "4200",
        "currency": "usd",
        "customer": "cus_1",
        "payment_method": "pm_1",
        "payment_method_types[0]": "card",
        "confirm": "true",
        "off_session": "true",
        "expand[0]": "payment_method",
        "metadata[order]": "1004",
    }
    assert "description" not in recorder.last.params
    assert result == ChargeResult("pi_1", "ch_1", "succeeded", 4200, "usd", "amex", "0005")


def test_authentication_required_as_stripe_answers_it() -> None:
    # Stripe's documented answer to an off-session charge the bank wants authenticated (localstripe answers 200).
    recorder = RecordingHTTPClient().fail_with_status(
        402,
        body=stripe_error_body(
            "card_error",
            "Your card was declined. This transaction requires authentication.",
            code="authentication_required",
            decline_code="authentication_required",
            payment_intent={"id": "pi_auth", "object": "payment_intent", "status": "requires_payment_method"},
        ),
    )

    with pytest.raises(AuthenticationRequired) as caught:
        recording_gateway(recorder).charge_off_session(
            "cus_1", "pm_1", 100, "usd", metadata={}, idempotency_key=key()
        )

    assert caught.value.code == "authentication_required"
    assert caught.value.payment_intent_id == "pi_auth"
    assert caught.value.outcome_unknown is False


@pytest.mark.parametrize(
    ("code", "decline_code", "words"),
    [
        ("card_declined", "insufficient_funds", "not enough money on it"),
        ("expired_card", None, "The card has expired"),
        ("card_declined", "do_not_honor", "declined the payment without giving a reason"),
        ("card_declined", "generic_decline", "The card was declined."),
        ("card_declined", "stolen_card", "The card was declined. Ask the customer"),  # never says why
        ("card_declined", None, "The card was declined."),
    ],
)
def test_decline_codes_in_plain_words(code: str, decline_code: str | None, words: str) -> None:
    extra = {"decline_code": decline_code} if decline_code else {}
    recorder = RecordingHTTPClient().fail_with_status(
        402, body=stripe_error_body("card_error", "Your card was declined.", code=code, **extra)
    )

    with pytest.raises(CardDeclined) as caught:
        recording_gateway(recorder).charge_off_session(
            "cus_1", "pm_1", 100, "usd", metadata={}, idempotency_key=key()
        )

    assert words in caught.value.user_message
    assert (caught.value.code, caught.value.decline_code) == (code, decline_code)
    assert caught.value.outcome_unknown is False


def test_bad_api_key() -> None:
    recorder = RecordingHTTPClient().fail_with_status(
        401, body=stripe_error_body("invalid_request_error", "Invalid API Key provided: sk_test_***oops")
    )
    with pytest.raises(StripeRejected) as caught:
        recording_gateway(recorder).customer_email("cus_1")
    assert caught.value.user_message == "Stripe refused our API key; tell whoever runs the bot."
    assert len(recorder.requests) == 1


def test_read_sends_no_idempotency_key() -> None:
    recorder = RecordingHTTPClient({"id": "cus_1", "object": "customer", "email": None})
    assert recording_gateway(recorder).customer_email("cus_1") is None
    assert (recorder.last.method, recorder.last.path) == ("GET", "/v1/customers/cus_1")
    assert recorder.last.header("Idempotency-Key") is None
    assert recorder.last.header("Stripe-Version") == API_VERSION


def test_update_email_request() -> None:
    recorder = RecordingHTTPClient({"id": "cus_1", "object": "customer", "email": "new@example.com"})
    idempotency_key = key()
    recording_gateway(recorder).update_email("cus_1", "new@example.com", idempotency_key=idempotency_key)
    assert_write(recorder, "POST", "/v1/customers/cus_1", idempotency_key)
    assert recorder.last.params == {"email": "new@example.com"}


# --- retries -----------------------------------------------------------------------------------------------------


def test_connection_error_is_retried_with_the_same_key() -> None:
    recorder = RecordingHTTPClient(subscription_body()).fail_with_connection_error(2)
    idempotency_key = key()

    recording_gateway(recorder).resume_payments("sub_recorded", idempotency_key=idempotency_key)

    assert len(recorder.requests) == 3
    assert {r.header("Idempotency-Key") for r in recorder.requests} == {idempotency_key}
    assert len({r.params["pause_collection"] for r in recorder.requests}) == 1
    assert len(recorder.sleeps) == 2  # stripe-python would have waited between attempts


def test_connection_error_forever_leaves_the_outcome_unknown() -> None:
    recorder = RecordingHTTPClient().fail_with_connection_error(10)

    with pytest.raises(StripeUnavailable) as caught:
        recording_gateway(recorder).refund("pi_1", 100, reason=None, metadata={}, idempotency_key=key())

    assert caught.value.outcome_unknown is True
    assert len(recorder.requests) == 1 + len(CallLimits().retry_delays)


def test_rate_limit_is_retried_with_the_same_key() -> None:
    # stripe-python does not retry a 429 by itself; the gateway does.
    recorder = RecordingHTTPClient(subscription_body()).fail_with_status(429)
    idempotency_key = key()

    result = recording_gateway(recorder).cancel_subscription(
        "sub_recorded", at_period_end=True, idempotency_key=idempotency_key
    )

    assert result["id"] == "sub_recorded"
    assert len(recorder.requests) == 2
    assert {r.header("Idempotency-Key") for r in recorder.requests} == {idempotency_key}


def test_rate_limit_forever() -> None:
    recorder = RecordingHTTPClient().fail_with_status(429, times=10)

    with pytest.raises(StripeUnavailable) as caught:
        recording_gateway(recorder).cancel_subscription(
            "sub_recorded", at_period_end=False, idempotency_key=key()
        )

    assert caught.value.outcome_unknown is False  # Stripe refused before doing anything
    assert len(recorder.requests) == 1 + len(CallLimits().retry_delays)
    assert (recorder.requests[0].method, recorder.requests[0].path) == (
        "DELETE",
        "/v1/subscriptions/sub_recorded",
    )


def test_a_call_whose_first_try_went_unanswered_stays_unknown_whatever_ends_it() -> None:
    # Try 1 may have reached Stripe; the 429s that follow were refused before Stripe looked at the key.
    recorder = RecordingHTTPClient().fail_with_connection_error(1).fail_with_status(429, times=10)

    with pytest.raises(StripeUnavailable) as caught:
        recording_gateway(recorder).refund("pi_1", 100, reason=None, metadata={}, idempotency_key=key())

    assert caught.value.outcome_unknown is True
    assert "cannot tell whether this went through" in caught.value.user_message


def test_server_error_forever_leaves_the_outcome_unknown() -> None:
    recorder = RecordingHTTPClient().fail_with_status(500, times=10)
    idempotency_key = key()

    with pytest.raises(StripeUnavailable) as caught:
        recording_gateway(recorder).move_next_bill_date(
            "sub_recorded", datetime(2027, 3, 1, tzinfo=UTC), idempotency_key=idempotency_key
        )

    assert caught.value.outcome_unknown is True
    assert len(recorder.requests) == 1 + len(CallLimits().retry_delays)
    assert {r.header("Idempotency-Key") for r in recorder.requests} == {idempotency_key}


def test_server_error_stripe_says_not_to_retry() -> None:
    # Stripe marks most 5xx `Stripe-Should-Retry: false`: it would only replay the stored answer for this key.
    recorder = RecordingHTTPClient().fail_with_status(500, times=10, headers={"Stripe-Should-Retry": "false"})

    with pytest.raises(StripeUnavailable) as caught:
        recording_gateway(recorder).update_email("cus_1", "a@example.com", idempotency_key=key())

    assert caught.value.outcome_unknown is True
    assert len(recorder.requests) == 1


def test_bad_request_is_not_retried() -> None:
    recorder = RecordingHTTPClient().fail_with_status(
        400,
        times=10,
        body=stripe_error_body("invalid_request_error", "Invalid email address: nope", code="email_invalid"),
    )

    with pytest.raises(StripeRejected) as caught:
        recording_gateway(recorder).update_email("cus_1", "nope", idempotency_key=key())

    assert caught.value.outcome_unknown is False
    assert caught.value.code == "email_invalid"
    assert len(recorder.requests) == 1


def test_every_write_needs_a_key() -> None:
    recorder = RecordingHTTPClient(subscription_body())
    with pytest.raises(ValueError):
        recording_gateway(recorder).resume_payments("sub_recorded", idempotency_key="")
    assert recorder.requests == []


def test_idempotency_key_reused_with_other_details() -> None:
    recorder = RecordingHTTPClient().fail_with_status(
        400,
        body=stripe_error_body(
            "idempotency_error",
            "Keys for idempotent requests can only be used with the same parameters they were first used with.",
        ),
    )
    with pytest.raises(StripeRejected) as caught:
        recording_gateway(recorder).refund("pi_1", 100, reason=None, metadata={}, idempotency_key=key())
    assert caught.value.code == "idempotency_error"
    assert caught.value.outcome_unknown is False


def test_other_refusals_quote_stripe() -> None:
    recorder = RecordingHTTPClient().fail_with_status(
        400,
        body=stripe_error_body("invalid_request_error", "Invalid {currency}: zzz.", code="parameter_invalid"),
    )
    with pytest.raises(StripeRejected) as caught:
        recording_gateway(recorder).charge_off_session(
            "cus_1", "pm_1", 100, "zzz", metadata={}, idempotency_key=key()
        )
    assert caught.value.user_message == "Stripe refused to do this: Invalid {currency}: zzz."


def test_key_not_allowed() -> None:
    recorder = RecordingHTTPClient().fail_with_status(
        403, body=stripe_error_body("invalid_request_error", "The provided key does not have access.")
    )
    with pytest.raises(StripeRejected) as caught:
        recording_gateway(recorder).update_email("cus_1", "a@example.com", idempotency_key=key())
    assert "not allowed" in caught.value.user_message


# --- LocalStripe itself ------------------------------------------------------------------------------------------


def test_local_stripe_sends_signed_webhooks() -> None:
    received: list[tuple[bytes, str]] = []
    arrived = threading.Event()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((body, self.headers["Stripe-Signature"]))
            self.send_response(200)
            self.end_headers()
            arrived.set()

        def log_message(self, *args: object) -> None:
            pass

    hook_server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook_server.serve_forever, daemon=True).start()
    # Its own localstripe, so the webhook does not follow the rest of the session.
    server = LocalStripe()
    try:
        with server:
            server.configure_webhook(
                "records",
                f"http://127.0.0.1:{hook_server.server_port}/hook",
                "whsec_test",
                ["customer.created"],
            )
            customer, _ = stripe_customer_with_card(local_stripe_client(server), email())
            assert arrived.wait(10), "localstripe did not deliver the webhook"
        assert not server.running
    finally:
        hook_server.shutdown()
        hook_server.server_close()

    body, signature = received[0]
    event = stripe.Webhook.construct_event(body, signature, "whsec_test")
    assert (event.type, event.data.object.id) == ("customer.created", customer)


def test_local_stripe_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_stripe_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LocalStripeUnavailable, match=r"pip install -e '\.\[dev\]'"):
        LocalStripe().start()


def test_local_stripe_lists_one_kind_in_the_order_made_and_forgets_what_is_deleted() -> None:
    """Its store is indexed by kind of object (so it stays fast for the import benchmark); lists must not change."""
    with LocalStripe() as server:
        client = local_stripe_client(server)
        made = [client.v1.customers.create(params={"email": f"kind{i}@example.com"}).id for i in range(5)]
        client.v1.products.create(params={"name": "Not a customer"})
        client.v1.customers.delete(made[1])

        first = client.v1.customers.list(params={"limit": 2})
        rest = client.v1.customers.list(params={"limit": 10, "starting_after": first.data[-1].id})

        assert [c.id for c in first.data + rest.data] == [made[0], *made[2:]]
        assert (first.has_more, rest.has_more) == (True, False)
        assert [p.name for p in client.v1.products.list().data] == ["Not a customer"]


def test_finding_a_refund_an_earlier_attempt_made(stripe_gateway, stripe_client) -> None:
    """After an unknown outcome the bot asks Stripe what the earlier request made, by the action key in metadata."""
    customer, method = stripe_customer_with_card(stripe_client, "found@example.com")
    charge = stripe_gateway.charge_off_session(
        customer, method, 4200, "usd", metadata={"action_key": "new_order:7"}, idempotency_key="k-find-1"
    )
    refund = stripe_gateway.refund(
        charge.payment_intent_id,
        1200,
        reason=None,
        metadata={"action_key": "refund:9"},
        idempotency_key="k-find-2",
    )

    assert stripe_gateway.find_refund(charge.payment_intent_id, "refund:9") == refund
    assert stripe_gateway.find_refund(charge.payment_intent_id, "refund:10") is None


def test_finding_a_payment_an_earlier_attempt_made() -> None:
    """localstripe cannot list payment intents by customer, which Stripe can: checked against recorded answers."""
    made = {
        "id": "pi_made",
        "object": "payment_intent",
        "status": "succeeded",
        "amount": 4200,
        "currency": "usd",
        "metadata": {"action_key": "new_order:7"},
        "latest_charge": "ch_made",
        "payment_method": {
            "id": "pm_1",
            "object": "payment_method",
            "card": {"brand": "visa", "last4": "4242"},
        },
    }
    recorder = RecordingHTTPClient(
        {"object": "list", "data": [made], "has_more": False, "url": "/v1/payment_intents"}
    )
    gateway = recording_gateway(recorder)

    found = gateway.find_charge("cus_1", "new_order:7")

    assert (found.payment_intent_id, found.charge_id, found.card_last4) == ("pi_made", "ch_made", "4242")
    assert gateway.find_charge("cus_1", "new_order:8") is None
    assert (recorder.last.method, recorder.last.path, recorder.last.params["customer"]) == (
        "GET",
        "/v1/payment_intents",
        "cus_1",
    )
