"""Every signed delivery gets a final answer at POST /stripe/webhook: an object Stripe no longer has is recorded as
gone (200), a malformed event is refused (400), text no database could take is stored safely (200), and only a
database or Stripe that cannot be reached asks Stripe to deliver again (503)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select, text

from bot.db import Database
from bot.models import Customer, Recurring, StripeEvent
from bot.stripe_gateway import StripeGateway
from bot.webhooks import StripeWebhooks
from devkit.local_slack import SlackPerson, wsgi_transport
from devkit.local_stripe import LocalStripe
from runtime.app import create_app
from runtime.web import WebApp
from tests import factories as make
from tests.conftest import SIGNING_SECRET, settings_for
from tests.slack_text import text_of
from tests.stripe_support import local_stripe_client, stripe_customer_with_card
from tests.test_webhooks import SECRET, event, post, signed, web_for


@pytest.fixture(scope="module")
def stripe_server() -> Iterator[LocalStripe]:
    with LocalStripe() as server:
        yield server


@pytest.fixture
def web(db, slack, stripe_server) -> WebApp:
    return web_for(db, slack, stripe_server)


def events_stored(db) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(StripeEvent))


def customer_by_stripe_id(db, stripe_id: str) -> Customer | None:
    with db.session() as s:
        return s.scalar(select(Customer).where(Customer.stripe_customer_id == stripe_id))


# Objects Stripe no longer has -------------------------------------------------------------------------------------


def test_an_event_about_a_customer_deleted_since_unlinks_our_record_and_is_answered_200(
    db, web, stripe_server, caplog
):
    client = local_stripe_client(stripe_server)
    customer_id, _ = stripe_customer_with_card(client, "gone@example.com", name="Gone Soon")
    post(web, *signed(event("evt_gone_c1", "customer.created", {"id": customer_id})))
    with db.session() as s:
        ours = s.scalar(select(Customer.id).where(Customer.stripe_customer_id == customer_id))
    client.v1.customers.delete(customer_id)
    late = signed(event("evt_gone_c2", "customer.updated", {"id": customer_id}))

    with caplog.at_level(logging.INFO, logger="customer_bot.webhooks"):
        answer = post(web, *late)

    assert answer == ("200 OK", {"gone": f"customer {customer_id}"})
    with db.session() as s:
        record = s.get(Customer, ours)
        assert (record.name, record.stripe_customer_id) == ("Gone Soon", None), "the record stays, unlinked"
    assert [r.message for r in caplog.records if "no longer in Stripe" in r.message] == [
        f"customer.updated evt_gone_c2: customer {customer_id} is no longer in Stripe"
    ]
    assert post(web, *late) == ("200 OK", {"duplicate": "evt_gone_c2"}), "answered once and for all"


def test_a_subscription_stripe_no_longer_has_is_ended(db, web):
    with db.session() as s:
        owner = make.customer(s, "Sub Holder", stripe_customer_id="cus_holder1")
        make.subscription(s, owner, "Pro Membership", stripe_subscription_id="sub_vanished1")

    answer = post(web, *signed(event("evt_gone_s", "customer.subscription.updated", {"id": "sub_vanished1"})))

    assert answer == ("200 OK", {"gone": "subscription sub_vanished1"})
    with db.session() as s:
        sub = s.scalar(select(Recurring).where(Recurring.stripe_subscription_id == "sub_vanished1"))
        assert (sub.status, sub.next_bill_at, sub.is_live) == ("canceled", None, False)
        assert sub.canceled_at is not None


@pytest.mark.parametrize(
    ("kind", "obj_id"),
    [
        ("invoice.paid", "in_vanished1"),
        ("payment_intent.succeeded", "pi_vanished1"),
        ("charge.refunded", "ch_x1"),
    ],
)
def test_an_event_about_another_vanished_object_is_ignored_with_one_log_line(db, web, caplog, kind, obj_id):
    with caplog.at_level(logging.INFO, logger="customer_bot.webhooks"):
        status, body = post(web, *signed(event(f"evt_{obj_id}", kind, {"id": obj_id})))

    assert (status, body["gone"].split()[-1]) == ("200 OK", obj_id)
    assert events_stored(db) == 1
    assert len([r for r in caplog.records if "no longer in Stripe" in r.message]) == 1
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Customer)) == 0


# Malformed signed events ------------------------------------------------------------------------------------------


def _body(payload) -> bytes:
    return payload if isinstance(payload, bytes) else json.dumps(payload).encode()


MALFORMED = {
    "not JSON": b"this is not json",
    "not UTF-8": b'{"id": "evt_\xff"}',
    "a list": [],
    "a string": "evt_1",
    "no id": {"type": "customer.updated", "data": {"object": {"id": "cus_1"}}},
    "a numeric id": {"id": 7, "type": "customer.updated", "data": {"object": {"id": "cus_1"}}},
    "no type": {"id": "evt_1", "data": {"object": {"id": "cus_1"}}},
    "a type that is not text": {
        "id": "evt_1",
        "type": ["customer.updated"],
        "data": {"object": {"id": "cus_1"}},
    },
    "no data": {"id": "evt_1", "type": "customer.updated"},
    "data that is text": {"id": "evt_1", "type": "customer.updated", "data": "cus_1"},
    "no data.object": {"id": "evt_1", "type": "customer.updated", "data": {}},
    "data.object a list": {"id": "evt_1", "type": "invoice.paid", "data": {"object": ["in_1"]}},
    "data.object without id": {
        "id": "evt_1",
        "type": "invoice.paid",
        "data": {"object": {"object": "invoice"}},
    },
    "an object id with NUL": {
        "id": "evt_1",
        "type": "customer.updated",
        "data": {"object": {"id": "cus_\x00"}},
    },
    "an object id too long": {
        "id": "evt_1",
        "type": "customer.updated",
        "data": {"object": {"id": "c" * 300}},
    },
    "a customer that is a number": {
        "id": "evt_1",
        "type": "payment_method.attached",
        "data": {"object": {"id": "pm_1", "customer": 42}},
    },
}


@pytest.mark.parametrize("payload", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_signed_but_malformed_event_gets_400_with_a_reason_and_changes_nothing(db, web, payload):
    status, body = post(web, *_signed_body(_body(payload)))

    assert status == "400 Bad Request"
    assert body["error"] and len(body["error"]) < 200
    assert events_stored(db) == 0


def _signed_body(body: bytes) -> tuple[bytes, str]:
    import hashlib
    import hmac
    import time

    at = int(time.time())
    return (
        body,
        f"t={at},v1={hmac.new(SECRET.encode(), f'{at}.'.encode() + body, hashlib.sha256).hexdigest()}",
    )


def test_an_unknown_event_type_stays_200_whatever_its_data(db, web):
    payload = {"id": "evt_unknown1", "type": "radar.early_fraud_warning.created", "data": "anything"}

    assert post(web, *_signed_body(_body(payload))) == (
        "200 OK",
        {"ignored": "radar.early_fraud_warning.created"},
    )
    assert events_stored(db) == 0


# Text no database could take ----------------------------------------------------------------------------------


LONG_EMAIL = "a" * 388 + "@example.com"  # 400 characters: more than RFC 5321's 320, within Stripe's 512


def test_an_email_of_400_characters_and_a_name_with_nul_are_stored_safely_and_the_record_renders(
    db, slack, stripe_server
):
    web = web_for(db, slack, stripe_server)
    client = local_stripe_client(stripe_server)
    customer_id, _ = stripe_customer_with_card(client, LONG_EMAIL, name="Zoë\x00 Mar\x00tin")

    answer = post(web, *signed(event("evt_long_1", "customer.created", {"id": customer_id})))

    assert answer == ("200 OK", {"processed": "evt_long_1"})
    stored = customer_by_stripe_id(db, customer_id)
    assert (stored.name, stored.email, stored.card_last4) == ("Zoë Martin", LONG_EMAIL, "4242")
    person = SlackPerson(slack, wsgi_transport(web), SIGNING_SECRET)
    card = text_of(person.command(customer_id))
    assert "Zoë Martin" in card and LONG_EMAIL[:250] in card, "the card shows what fits Slack's text"
    assert text_of(person.command("zoe mar")) == card, "found by name, as typed"


def test_an_email_longer_than_stripe_documents_is_cut_to_our_column_and_marked(db, web, stripe_server):
    client = local_stripe_client(stripe_server)
    too_long = "b" * 588 + "@example.com"  # 600: localstripe takes it, Stripe would not
    customer = client.v1.customers.create(params={"email": too_long, "name": "Long Mail"})

    answer = post(web, *signed(event("evt_long_2", "customer.updated", {"id": customer.id})))

    assert answer == ("200 OK", {"processed": "evt_long_2"})
    stored = customer_by_stripe_id(db, customer.id).email
    assert (len(stored), stored[:511], stored[-1]) == (512, too_long[:511], "…")


# What the database does -------------------------------------------------------------------------------------------


def test_while_the_database_is_down_stripe_is_asked_to_deliver_again(slack, stripe_server):
    down = Database("sqlite:////nonexistent-dir/records.db")
    gateway = StripeGateway.connect(stripe_server.api_key, api_base=stripe_server.url)
    web = WebApp(
        create_app(settings_for(down, slack), down, gateway=gateway),
        down,
        StripeWebhooks(down, gateway, SECRET),
    )
    client = local_stripe_client(stripe_server)
    customer_id, _ = stripe_customer_with_card(client, "later@example.com", name="Later Please")

    status, body = post(web, *signed(event("evt_down_1", "customer.updated", {"id": customer_id})))

    assert (status, body) == (
        "503 Service Unavailable",
        {"error": "the database is unavailable; deliver again later"},
    )
    down.dispose()


class Refusal:
    """The database refuses to add a customer with one email, as it would a row breaking a rule our code does not
    know of (a trigger, on either backend), until `lift()`."""

    email = "refused@example.com"

    def __init__(self, db: Database) -> None:
        self.db = db
        self.postgresql = db.engine.dialect.name == "postgresql"
        with db.engine.begin() as connection:
            if self.postgresql:
                connection.execute(
                    text(
                        "CREATE FUNCTION refuse_one_customer() RETURNS trigger AS $$ BEGIN "
                        f"IF NEW.email = '{self.email}' THEN RAISE EXCEPTION 'refused by the database' "
                        "USING ERRCODE = 'check_violation'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
                    )
                )
                connection.execute(
                    text(
                        "CREATE TRIGGER refuse_one_customer BEFORE INSERT ON customers "
                        "FOR EACH ROW EXECUTE FUNCTION refuse_one_customer()"
                    )
                )
            else:
                connection.execute(
                    text(
                        "CREATE TRIGGER refuse_one_customer BEFORE INSERT ON customers WHEN NEW.email = "
                        f"'{self.email}' BEGIN SELECT RAISE(ABORT, 'refused by the database'); END"
                    )
                )
        self.lifted = False

    def lift(self) -> None:
        if self.lifted:
            return
        with self.db.engine.begin() as connection:
            if self.postgresql:
                connection.execute(text("DROP TRIGGER refuse_one_customer ON customers"))
                connection.execute(text("DROP FUNCTION refuse_one_customer()"))
            else:
                connection.execute(text("DROP TRIGGER refuse_one_customer"))
        self.lifted = True


@pytest.fixture
def database_refusing(db) -> Iterator[Refusal]:
    refusal = Refusal(db)
    yield refusal
    refusal.lift()


def test_an_object_the_database_refuses_is_answered_200_not_stored_and_logged(
    db, web, stripe_server, database_refusing, caplog
):
    client = local_stripe_client(stripe_server)
    customer = client.v1.customers.create(params={"email": database_refusing.email, "name": "Re Fused"})

    with caplog.at_level(logging.ERROR, logger="customer_bot.webhooks"):
        status, body = post(web, *signed(event("evt_refused_1", "customer.created", {"id": customer.id})))

    assert (status, body["not_stored"]) == ("200 OK", "evt_refused_1"), (
        "sending it again would fail the same way"
    )
    assert customer_by_stripe_id(db, customer.id) is None and events_stored(db) == 0
    assert [r.message for r in caplog.records] == [
        "could not store customer.created evt_refused_1; it is answered and not stored"
    ]
