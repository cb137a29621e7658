"""Company name and tax ids: kept from Stripe by the customer's webhooks (localstripe, hand-signed events) and the
import, and shown in the card's basic info through a signed /customer, escaped and bounded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from blocks.customer import TAX_IDS_SHOWN, tax_ids_text
from bot.models import Customer
from bot.stripe_sync import Gathered, sync_customer
from bot.viewmodels import TaxId
from devkit.local_stripe import LocalStripe
from tests import factories as make
from tests.slack_text import text_of
from tests.stripe_support import local_stripe_client, stripe_customer_with_card
from tests.test_webhooks import event, post, signed, web_for


@pytest.fixture(scope="module")
def own_stripe() -> Iterator[LocalStripe]:
    """A localstripe for the hand-signed events: it sends no webhooks anywhere."""
    with LocalStripe() as server:
        yield server


def _customer(db, stripe_id: str) -> Customer:
    with db.session() as s:
        customer = s.scalar(select(Customer).where(Customer.stripe_customer_id == stripe_id))
        s.expunge(customer)
        return customer


def test_tax_id_events_keep_the_company_and_tax_ids_and_the_card_shows_them(harness, own_stripe):
    web = web_for(harness.db, harness.slack, own_stripe)
    client = local_stripe_client(own_stripe)
    customer_id, _ = stripe_customer_with_card(client, "buyer@acme.example", name="Ann Buyer")
    client.v1.customers.update(customer_id, params={"business_name": "Acme GmbH"})
    tax_id = client.v1.customers.tax_ids.create(
        customer_id, params={"type": "eu_vat", "value": "DE123456789"}
    )

    created = event(
        "evt_tax_1", "customer.tax_id.created", {"id": tax_id.id, "object": "tax_id", "customer": customer_id}
    )
    assert post(web, *signed(created)) == ("200 OK", {"processed": "evt_tax_1"})

    customer = _customer(harness.db, customer_id)
    assert customer.company_name == "Acme GmbH"
    assert customer.tax_ids == [{"type": "eu_vat", "value": "DE123456789"}]
    text = text_of(harness.person.command("buyer@acme.example"))
    assert "*Company*\nAcme GmbH" in text
    assert "*Tax IDs*\nEU VAT `DE123456789`" in text

    client.v1.customers.tax_ids.delete(customer_id, tax_id.id)
    deleted = event(
        "evt_tax_2", "customer.tax_id.deleted", {"id": tax_id.id, "object": "tax_id", "customer": customer_id}
    )
    assert post(web, *signed(deleted)) == ("200 OK", {"processed": "evt_tax_2"})
    assert _customer(harness.db, customer_id).tax_ids is None
    assert "Tax IDs" not in text_of(harness.person.command("buyer@acme.example"))


def test_customer_updated_brings_the_business_name_and_the_account_s_own_tax_ids_are_left_alone(
    harness, own_stripe
):
    web = web_for(harness.db, harness.slack, own_stripe)
    client = local_stripe_client(own_stripe)
    customer_id, _ = stripe_customer_with_card(client, "solo@example.com", name="Solo Trader")
    assert post(web, *signed(event("evt_c1", "customer.created", {"id": customer_id})))[0] == "200 OK"
    assert _customer(harness.db, customer_id).company_name is None
    client.v1.customers.update(customer_id, params={"business_name": "Solo Ltd"})

    post(web, *signed(event("evt_c2", "customer.updated", {"id": customer_id, "object": "customer"})))

    assert _customer(harness.db, customer_id).company_name == "Solo Ltd"
    # A tax id of no customer (the account's own) changes nothing and is answered.
    answer = post(
        web, *signed(event("evt_c3", "customer.tax_id.updated", {"id": "txi_own", "customer": None}))
    )
    assert answer == ("200 OK", {"processed": "evt_c3"})
    # One naming something that is no customer id is refused.
    refused = post(
        web, *signed(event("evt_c4", "customer.tax_id.created", {"id": "txi_x", "customer": "<@U1>"}))
    )
    assert refused[0] == "400 Bad Request"


def test_a_list_that_did_not_come_whole_is_read_on_its_own(db):
    """Stripe embeds at most 10 tax ids (and only when asked): with more, sync_customer looks the list up (read
    before the transaction, as every other Stripe read)."""
    gathered = Gathered()
    whole = [{"id": f"txi_{n}", "type": "eu_vat", "value": f"DE{n:09d}"} for n in range(12)]
    customer = {"id": "cus_many", "email": "m@example.com", "tax_ids": {"data": whole[:10], "has_more": True}}
    gathered.add("tax_ids_of_customer", "cus_many", {"id": "cus_many", "data": whole})
    gathered.add("cards_of_customer", "cus_many", {"id": "cus_many", "data": []})
    with db.session() as s:
        kept = sync_customer(s, customer, gathered.fetch).tax_ids
    assert kept == [{"type": "eu_vat", "value": f"DE{n:09d}"} for n in range(12)]


def test_hostile_company_and_tax_ids_are_escaped_and_bounded(harness):
    hostile = [TaxId("eu_vat", "<!channel> `x`"), TaxId("<@U1>*b*", "*bold* & <https://evil|x>")]
    many = tuple(hostile + [TaxId("us_ein", f"12-34567{n:02d}") for n in range(40)])
    with harness.db.session() as s:
        make.customer(
            s,
            "Eve Hostile",
            # As long as the column holds (Stripe's own limit, 150): the sync cuts anything longer to that.
            company_name=("<!here> *Evil* _Corp_ & <https://evil.example|click>" + "x" * 200)[:150],
            tax_ids=[{"type": t.type, "value": t.value * 20} for t in many],
        )

    message = harness.person.command("eve")  # the local Slack validates every block against Slack's limits
    text = text_of(message)

    assert (
        "<!here>" not in text
        and "<!channel>" not in text
        and "<https://evil" not in text
        and "<@U1>" not in text
    )
    assert "&lt;!here&gt; ∗Evil∗ ‗Corp‗ &amp;" in text
    assert f"and {len(many) - TAX_IDS_SHOWN} more" in text
    assert len(tax_ids_text(many)) < 700


def test_tax_ids_text_literal():
    assert tax_ids_text((TaxId("eu_vat", "DE123456789"), TaxId("gb_vat", "GB123456789"))) == (
        "EU VAT `DE123456789`\nGB VAT `GB123456789`"
    )
