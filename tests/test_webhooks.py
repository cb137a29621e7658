"""Stripe webhooks at POST /stripe/webhook: events sent and signed by localstripe itself over HTTP, plus hand-signed
duplicates, bad signatures and out-of-order deliveries; Stripe is never called with a transaction open."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from sqlalchemy import func, select

from bot import stripe_sync
from bot.models import Customer, Order, Payment, Recurring, Refund, StripeEvent
from bot.stripe_gateway import StripeGateway
from bot.webhooks import HANDLED, StripeWebhooks
from devkit.local_stripe import LocalStripe
from runtime.app import create_app
from runtime.web import WebApp
from tests.conftest import settings_for
from tests.stripe_support import (
    local_stripe_client,
    paid_payment_intent,
    stripe_customer_with_card,
    stripe_subscription,
)
from tests.watching import Transactions, WatchedGateway

SECRET = "whsec_test_secret"


@pytest.fixture(scope="module")
def own_stripe() -> Iterator[LocalStripe]:
    """A localstripe for the hand-signed tests: it sends no webhooks anywhere."""
    with LocalStripe() as server:
        yield server


class _Quiet(WSGIRequestHandler):
    def log_message(self, *_args: object) -> None:
        pass


class _ThreadingWSGIServer(WSGIServer):
    daemon_threads = True

    def process_request(self, request, client_address) -> None:
        threading.Thread(target=self._handle, args=(request, client_address), daemon=True).start()

    def _handle(self, request, client_address) -> None:
        try:
            self.finish_request(request, client_address)
        finally:
            self.shutdown_request(request)


class Endpoint:
    """Our web app served over HTTP on loopback, telling waiters after every webhook it answers."""

    def __init__(self, web: WebApp) -> None:
        self.delivered = threading.Condition()
        self.statuses: list[str] = []
        self.in_flight = 0

        def app(environ, start_response):
            with self.delivered:
                self.in_flight += 1

            def noting(status, headers, exc_info=None):
                if environ.get("PATH_INFO") == "/stripe/webhook":
                    self.statuses.append(status)
                return start_response(status, headers, exc_info)

            try:
                return web(environ, noting)
            finally:
                with self.delivered:
                    self.in_flight -= 1
                    self.delivered.notify_all()

        self.server = make_server(
            "127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_Quiet
        )
        self.url = f"http://127.0.0.1:{self.server.server_port}/stripe/webhook"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def wait_until(self, condition, timeout: float = 30.0) -> None:
        with self.delivered:
            assert self.delivered.wait_for(condition, timeout), "the expected webhooks did not arrive"

    def close(self) -> None:
        """Stop, once every request already being handled has finished (none may write after the test)."""
        self.server.shutdown()
        self.wait_until(lambda: self.in_flight == 0)
        self.server.server_close()


def web_for(db, slack, stripe_server: LocalStripe, gateway: StripeGateway | None = None) -> WebApp:
    gateway = gateway or StripeGateway.connect(stripe_server.api_key, api_base=stripe_server.url)
    settings = settings_for(db, slack)
    return WebApp(create_app(settings, db, gateway=gateway), db, StripeWebhooks(db, gateway, SECRET))


@pytest.fixture
def web(db, slack, own_stripe) -> WebApp:
    return web_for(db, slack, own_stripe)


@contextlib.contextmanager
def stripe_delivering_to(
    db, slack, gateway_for: Callable[[LocalStripe], StripeGateway] | None = None
) -> Iterator[tuple[LocalStripe, Endpoint]]:
    """A localstripe of its own, sending every event it makes to our endpoint; stopped before the endpoint
    closes, so no delivery outlives the test."""
    with LocalStripe() as server:
        endpoint = Endpoint(web_for(db, slack, server, gateway_for(server) if gateway_for else None))
        server.configure_webhook("records", endpoint.url, SECRET, sorted(HANDLED))
        try:
            yield server, endpoint
        finally:
            server.stop()
            endpoint.close()


@pytest.fixture
def delivering(db, slack) -> Iterator[tuple[LocalStripe, Endpoint]]:
    with stripe_delivering_to(db, slack) as delivery:
        yield delivery


def count(db, query) -> int:
    with db.session() as s:
        return s.scalar(query) or 0


def test_events_from_stripe_keep_the_records_current(db, delivering):
    stripe_server, endpoint = delivering
    client = local_stripe_client(stripe_server)
    customer_id, method = stripe_customer_with_card(client, "zoe@example.com", name="Zoë Martin")
    subscription_id = stripe_subscription(
        client, customer_id, 2900, "usd", "month", product_name="Pro Membership"
    )
    intent = paid_payment_intent(client, customer_id, method, 4500)
    client.v1.refunds.create(params={"payment_intent": intent, "amount": 1000})

    endpoint.wait_until(
        lambda: (
            count(db, select(func.count()).select_from(Refund)) == 1
            and count(db, select(Order.total).where(Order.source == "subscription")) == 2900
        )
    )

    with db.session() as s:
        zoe = s.scalar(select(Customer).where(Customer.stripe_customer_id == customer_id))
        assert (zoe.name, zoe.email, zoe.card_last4) == ("Zoë Martin", "zoe@example.com", "4242")
        sub = s.scalar(select(Recurring).where(Recurring.stripe_subscription_id == subscription_id))
        assert (sub.product, sub.amount, sub.status, sub.kind) == (
            "Pro Membership",
            2900,
            "active",
            "subscription",
        )
        orders = {o.source: o for o in s.scalars(select(Order).where(Order.customer_id == zoe.id))}
        assert set(orders) == {"subscription", "checkout"}, "a subscription and a checkout: two orders placed"
        assert orders["subscription"].total == 2900 and orders["subscription"].recurring_id == sub.id
        first = s.scalar(select(Payment).where(Payment.recurring_id == sub.id))
        assert (first.kind, first.status, first.order_id) == ("initial", "paid", orders["subscription"].id)
        assert (orders["checkout"].total, orders["checkout"].amount_refunded, orders["checkout"].status) == (
            4500,
            1000,
            "partially_refunded",
        )
        assert s.scalar(select(func.count()).select_from(Payment).where(Payment.status == "paid")) == 2
    assert all(status.startswith("200") for status in endpoint.statuses)


def signed(payload: dict, secret: str = SECRET, at: int | None = None) -> tuple[bytes, str]:
    body = json.dumps(payload).encode()
    at = at or int(time.time())
    signature = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return body, f"t={at},v1={signature}"


def event(event_id: str, kind: str, obj: dict) -> dict:
    return {
        "id": event_id,
        "object": "event",
        "type": kind,
        "created": int(time.time()),
        "data": {"object": obj},
    }


def post(web: WebApp, body: bytes, signature: str | None) -> tuple[str, dict]:
    import io

    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/stripe/webhook",
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json",
        "wsgi.input": io.BytesIO(body),
    }
    if signature is not None:
        environ["HTTP_STRIPE_SIGNATURE"] = signature
    seen: list[str] = []
    answer = b"".join(web(environ, lambda status, headers: seen.append(status)))
    return seen[0], json.loads(answer)


def test_the_same_event_twice_is_processed_once(db, web, own_stripe):
    client = local_stripe_client(own_stripe)
    customer_id, _ = stripe_customer_with_card(client, "dup@example.com", name="Dup Licate")
    body, signature = signed(
        event("evt_dup_1", "customer.updated", {"id": customer_id, "object": "customer"})
    )

    assert post(web, body, signature) == ("200 OK", {"processed": "evt_dup_1"})
    assert post(web, body, signature) == ("200 OK", {"duplicate": "evt_dup_1"})
    assert (
        count(
            db, select(func.count()).select_from(Customer).where(Customer.stripe_customer_id == customer_id)
        )
        == 1
    )
    assert count(db, select(func.count()).select_from(StripeEvent)) == 1


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "t=1,v1=deadbeef",
        signed({"x": 1}, secret="whsec_other")[1],
        signed({"x": 1}, at=int(time.time()) - 3600)[1],
    ],
    ids=["missing", "malformed", "another secret", "an hour old"],
)
def test_a_bad_or_missing_signature_gets_400_and_nothing_is_stored(db, web, signature):
    body = json.dumps(
        event("evt_forged", "customer.updated", {"id": "cus_forged", "object": "customer"})
    ).encode()

    status, _ = post(web, body, signature)

    assert status == "400 Bad Request"
    assert count(db, select(func.count()).select_from(StripeEvent)) == 0
    assert count(db, select(func.count()).select_from(Customer)) == 0


def test_a_late_event_cannot_roll_a_record_back(db, web, own_stripe):
    client = local_stripe_client(own_stripe)
    customer_id, _ = stripe_customer_with_card(client, "old@example.com", name="Old Name")
    client.v1.customers.update(customer_id, params={"email": "new@example.com", "name": "New Name"})
    newer = event("evt_newer", "customer.updated", {"id": customer_id, "email": "new@example.com"})
    older = event("evt_older", "customer.updated", {"id": customer_id, "email": "old@example.com"})

    post(web, *signed(newer))
    post(web, *signed(older))  # delivered late: its payload is stale

    with db.session() as s:
        customer = s.scalar(select(Customer).where(Customer.stripe_customer_id == customer_id))
        assert (customer.email, customer.name) == ("new@example.com", "New Name")


def test_a_failed_first_payment_is_a_missed_payment(db, web, own_stripe):
    client = local_stripe_client(own_stripe)
    customer_id, _ = stripe_customer_with_card(
        client, "late@example.com", "4000000000000341", name="Late Payer"
    )
    try:
        subscription_id = stripe_subscription(
            client, customer_id, 1500, "usd", "month", {"payment_plan_installments": "3"}
        )
    except Exception:  # localstripe answers the create with the card error; the subscription stays incomplete
        subscription_id = client.v1.subscriptions.list(params={"customer": customer_id}).data[0].id
    invoice = client.v1.invoices.list(params={"subscription": subscription_id}).data[0]

    post(
        web, *signed(event("evt_failed_1", "invoice.payment_failed", {"id": invoice.id, "object": "invoice"}))
    )

    with db.session() as s:
        plan = s.scalar(select(Recurring).where(Recurring.stripe_subscription_id == subscription_id))
        assert (plan.kind, plan.status, plan.installments_total, plan.installments_paid) == (
            "payment_plan",
            "incomplete",
            3,
            0,
        )
        payment = s.scalar(select(Payment).where(Payment.recurring_id == plan.id))
        assert payment.status == "failed" and payment.failure_reason


def test_a_refund_made_in_stripe_is_recorded_once(db, web, own_stripe):
    client = local_stripe_client(own_stripe)
    customer_id, method = stripe_customer_with_card(client, "refunded@example.com", name="Re Funded")
    intent = paid_payment_intent(client, customer_id, method, 8000)
    post(
        web,
        *signed(event("evt_paid_r", "payment_intent.succeeded", {"id": intent, "object": "payment_intent"})),
    )
    refund = client.v1.refunds.create(params={"payment_intent": intent, "amount": 3000})
    charge_id = refund.charge

    for delivery in ("evt_refund_1", "evt_refund_2"):  # two events naming the same refund
        post(web, *signed(event(delivery, "charge.refunded", {"id": charge_id, "object": "charge"})))

    with db.session() as s:
        order = s.scalar(
            select(Order)
            .join(Payment, Payment.order_id == Order.id)
            .where(Payment.stripe_payment_intent_id == intent)
        )
        assert (order.amount_refunded, order.status) == (3000, "partially_refunded")
        assert s.scalar(select(func.count()).select_from(Refund).where(Refund.order_id == order.id)) == 1


def test_a_subscription_canceled_in_stripe_shows_as_canceled(db, web, own_stripe):
    client = local_stripe_client(own_stripe)
    customer_id, _ = stripe_customer_with_card(client, "leaving@example.com", name="Lea Ving")
    subscription_id = stripe_subscription(client, customer_id, 900, "usd", "month", product_name="Community")
    post(web, *signed(event("evt_sub_c", "customer.subscription.created", {"id": subscription_id})))
    client.v1.subscriptions.cancel(subscription_id)

    post(web, *signed(event("evt_sub_d", "customer.subscription.deleted", {"id": subscription_id})))

    with db.session() as s:
        sub = s.scalar(select(Recurring).where(Recurring.stripe_subscription_id == subscription_id))
        assert (sub.status, sub.next_bill_at) == ("canceled", None) and sub.canceled_at is not None


def watched_gateway(db, server: LocalStripe, monkeypatch) -> WatchedGateway:
    gateway = StripeGateway.connect(server.api_key, api_base=server.url)
    return WatchedGateway(gateway, Transactions(db, monkeypatch))


def test_stripe_is_never_called_with_a_transaction_open(db, slack, monkeypatch):
    watched: list[WatchedGateway] = []

    def gateway_for(server: LocalStripe) -> WatchedGateway:
        watched.append(watched_gateway(db, server, monkeypatch))
        return watched[0]

    with stripe_delivering_to(db, slack, gateway_for) as (server, endpoint):
        client = local_stripe_client(server)
        customer_id, method = stripe_customer_with_card(client, "plan@example.com", name="Plan Holder")
        stripe_subscription(
            client,
            customer_id,
            15000,
            "usd",
            "month",
            {"payment_plan_installments": "6"},
            product_name="Teacher Training",
        )
        intent = paid_payment_intent(client, customer_id, method, 4500)
        client.v1.refunds.create(params={"payment_intent": intent, "amount": 1000})
        endpoint.wait_until(
            lambda: (
                count(db, select(func.count()).select_from(Refund)) == 1
                and count(db, select(Order.total).where(Order.source == "payment_plan")) == 15000
            )
        )

    gateway = watched[0]
    assert {"customer lookup", "subscription lookup", "invoice lookup"} <= set(gateway.requests)
    assert gateway.inside_transaction == []
    assert all(status.startswith("200") for status in endpoint.statuses)


def test_a_refunded_charge_and_its_refunds_are_read_before_the_transaction(
    db, slack, own_stripe, monkeypatch
):
    gateway = watched_gateway(db, own_stripe, monkeypatch)
    web = web_for(db, slack, own_stripe, gateway)
    client = local_stripe_client(own_stripe)
    customer_id, method = stripe_customer_with_card(client, "twice@example.com", name="Re Funded Twice")
    intent = paid_payment_intent(client, customer_id, method, 8000)
    post(web, *signed(event("evt_paid_t", "payment_intent.succeeded", {"id": intent})))
    charge_id = client.v1.refunds.create(params={"payment_intent": intent, "amount": 3000}).charge
    client.v1.refunds.create(params={"payment_intent": intent, "amount": 2000})

    answer = post(
        web, *signed(event("evt_refund_t", "charge.refunded", {"id": charge_id, "object": "charge"}))
    )

    assert answer == ("200 OK", {"processed": "evt_refund_t"})
    assert "refund list" in gateway.requests
    assert gateway.inside_transaction == []
    with db.session() as s:
        order = s.scalar(
            select(Order)
            .join(Payment, Payment.order_id == Order.id)
            .where(Payment.stripe_payment_intent_id == intent)
        )
        assert (order.amount_refunded, order.status) == (5000, "partially_refunded")


def never_seen_plan_invoice(server: LocalStripe) -> str:
    """A paid first instalment of a payment plan whose customer, card and subscription we have no record of."""
    client = local_stripe_client(server)
    customer_id, _ = stripe_customer_with_card(client, "newcomer@example.com", name="New Comer")
    subscription_id = stripe_subscription(
        client,
        customer_id,
        15000,
        "usd",
        "month",
        {"payment_plan_installments": "6"},
        product_name="Teacher Training",
    )
    return client.v1.invoices.list(params={"subscription": subscription_id}).data[0].id


def test_an_event_about_objects_never_seen_reads_each_once_before_its_transaction(
    db, slack, own_stripe, monkeypatch
):
    gateway = watched_gateway(db, own_stripe, monkeypatch)
    web = web_for(db, slack, own_stripe, gateway)
    invoice_id = never_seen_plan_invoice(own_stripe)

    answer = post(
        web, *signed(event("evt_paid_new", "invoice.paid", {"id": invoice_id, "object": "invoice"}))
    )

    assert answer == ("200 OK", {"processed": "evt_paid_new"})
    assert gateway.inside_transaction == []
    assert len(gateway.read_rounds) > 2, "the subscription, customer, card... were found missing one by one"
    assert sorted(gateway.retrieved) == sorted(set(gateway.retrieved)), "each object is read once"
    with db.session() as s:
        plan = s.scalar(select(Recurring))
        assert (plan.kind, plan.product, plan.installments_paid) == ("payment_plan", "Teacher Training", 1)
        customer = s.get(Customer, plan.customer_id)
        assert (customer.email, customer.card_last4) == ("newcomer@example.com", "4242")
        order = s.scalar(select(Order))
        assert (order.source, order.total, order.recurring_id) == ("payment_plan", 15000, plan.id)


def test_an_event_that_needs_more_reads_than_allowed_is_left_for_stripe_to_deliver_again(
    db, web, own_stripe, monkeypatch
):
    delivery = signed(event("evt_paid_deep", "invoice.paid", {"id": never_seen_plan_invoice(own_stripe)}))
    monkeypatch.setattr(stripe_sync, "ROUNDS", 2)

    assert post(web, *delivery)[0] == "503 Service Unavailable"
    for model in (StripeEvent, Customer, Recurring, Payment, Order):
        assert count(db, select(func.count()).select_from(model)) == 0, f"a {model.__name__} was kept"

    monkeypatch.undo()
    assert post(web, *delivery) == ("200 OK", {"processed": "evt_paid_deep"})
