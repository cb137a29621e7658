"""The email-sync check end to end: emails compared with localstripe page by page and with fake CRMs, the report
posted by the job, and the "Push our email" button fixing Stripe and the CRMs through the real app, for payment
admins only; our own record never changes.

localstripe is shared by the whole test session: other tests' customers are in it, so every assertion is about
the customers a test created itself.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import stripe
from slack_sdk import WebClient
from sqlalchemy import select

from blocks.email_sync import email_sync_report, listed_differences
from blocks.limits import message_problems
from bot.actions import build_actions
from bot.actions.outcomes import Failed, NotAllowed
from bot.crm.activecampaign import ActiveCampaign
from bot.crm.keap import Keap
from bot.email_sync import check_emails
from bot.models import AuditEvent, Customer
from bot.stripe_gateway import StripeGateway
from bot.viewmodels import Difference
from devkit.local_slack import SlackPerson, wsgi_transport
from runtime.app import create_app
from runtime.jobs import run_email_sync
from runtime.web import WebApp
from tests import factories as make
from tests.conftest import SIGNING_SECRET, settings_for
from tests.slack_text import action_ids, text_of
from tests.stripe_support import local_stripe_client
from tests.test_crm import AC_TOKEN, KEAP_KEY, FakeActiveCampaign, FakeKeap, no_wait

ADMIN = "U0ADMIN01"
SOMEONE = "U0SUPPORT1"
CHANNEL = "C0ALERTS1"


class CountingClient(stripe.RequestsClient):
    """stripe-python's own HTTP client, recording every request the gateway makes to localstripe."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str]] = []

    def request(self, method, url, headers, post_data=None, **kwargs):
        self.seen.append((method.upper(), url))
        return super().request(method, url, headers, post_data, **kwargs)


@pytest.fixture
def stripe_client(local_stripe):
    return local_stripe_client(local_stripe)


@pytest.fixture
def gateway(local_stripe) -> StripeGateway:
    return StripeGateway.connect(local_stripe.api_key, api_base=local_stripe.url)


@pytest.fixture
def activecampaign():
    with FakeActiveCampaign() as server:
        yield server


@pytest.fixture
def keap():
    with FakeKeap() as server:
        yield server


def in_stripe_and_ours(db, stripe_client, name: str, email: str, *, stripe_email: str | None = None) -> int:
    """A customer in Stripe (with `stripe_email`, or `email`) and in our records with `email`; our id."""
    customer = stripe_client.v1.customers.create(params={"email": stripe_email or email, "name": name})
    with db.session() as s:
        return make.customer(s, name, email, stripe_customer_id=customer.id).id


def stripe_email_of(db, stripe_client, customer_id: int) -> str | None:
    with db.session() as s:
        stripe_id = s.get(Customer, customer_id).stripe_customer_id
    return stripe_client.v1.customers.retrieve(stripe_id).email


def audit_rows(db, customer_id: int) -> list[tuple[str, str, str]]:
    with db.session() as s:
        rows = s.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "push_email", AuditEvent.target_id == customer_id)
            .order_by(AuditEvent.id)
        ).all()
        return [(r.actor, r.outcome, r.details["summary"]) for r in rows]


# --- the check ---------------------------------------------------------------------------------------------------


def test_a_mismatch_made_in_stripe_is_reported_listing_customers_in_pages_of_100(
    db, local_stripe, stripe_client
):
    ids = [
        in_stripe_and_ours(db, stripe_client, f"Customer Number{i}", f"customer{i}@example.com")
        for i in range(150)
    ]
    with db.session() as s:
        changed = s.get(Customer, ids[77])
        stripe_client.v1.customers.update(
            changed.stripe_customer_id, params={"email": "someone.else@example.com"}
        )
        make.customer(s, "Not In Stripe", "nobody@example.com")  # no Stripe id: nothing to compare
        case_only = make.customer(s, "Case Only", "Case.Only@Example.com")
    case_stripe = stripe_client.v1.customers.create(params={"email": "case.only@example.com"})
    with db.session() as s:
        s.get(Customer, case_only.id).stripe_customer_id = case_stripe.id
    in_stripe = len(list(stripe_client.v1.customers.list(params={"limit": 100}).auto_paging_iter()))
    counting = CountingClient()
    gateway = StripeGateway.connect(local_stripe.api_key, api_base=local_stripe.url, http_client=counting)

    differences, checked = check_emails(db, gateway, [])

    assert differences == [
        Difference(ids[77], "Customer Number77", "customer77@example.com", "someone.else@example.com", [])
    ]
    assert checked == 151, "our 150 customers and the case-only one; the one not in Stripe is not compared"
    assert all(method == "GET" and "/v1/customers?" in url for method, url in counting.seen), (
        "only list calls, never one call per customer"
    )
    assert all("limit=100" in url for _, url in counting.seen)
    assert len(counting.seen) == math.ceil(in_stripe / 100) >= 2


def test_crms_holding_the_old_address_are_reported(db, stripe_client, gateway, activecampaign, keap):
    jane = in_stripe_and_ours(
        db, stripe_client, "Jane Doe", "jane.new@example.com", stripe_email="jane.old@example.com"
    )
    bob = in_stripe_and_ours(
        db, stripe_client, "Bob Stone", "bob.new@example.com", stripe_email="bob.old@example.com"
    )
    agreed = in_stripe_and_ours(db, stripe_client, "Ann Agreed", "ann@example.com")
    activecampaign.add("jane.old@example.com")
    activecampaign.add("bob.new@example.com")  # ActiveCampaign already has Bob's new address
    keap.add("bob.old@example.com")  # Keap has no contact for Jane under either address
    activecampaign.add("ann.old@example.com")  # Stripe agrees for Ann: the CRMs are not asked about her
    crms = [ActiveCampaign(activecampaign.url, AC_TOKEN, **no_wait()), Keap(keap.url, KEAP_KEY, **no_wait())]

    check = check_emails(db, gateway, crms)

    by_id = {d.customer_id: d for d in check.differences}
    assert set(by_id) == {jane, bob} and agreed not in by_id
    assert by_id[bob].crm_differences == [("Keap", "bob.old@example.com")]
    assert by_id[jane].crm_differences == [("ActiveCampaign", "jane.old@example.com"), ("Keap", None)]
    assert by_id[jane].stripe_email == "jane.old@example.com"
    assert check.crms == ["ActiveCampaign", "Keap"] and check.problems == []
    asked = {r.query["email"] for r in activecampaign.requests + keap.requests}
    assert asked == {
        "jane.new@example.com",
        "jane.old@example.com",
        "bob.new@example.com",
        "bob.old@example.com",
    }


def test_crms_are_asked_about_the_first_customers_only(db, stripe_client, gateway, activecampaign):
    for name in ("Ann", "Bob", "Cat"):
        email = f"{name.lower()}@example.com"
        in_stripe_and_ours(db, stripe_client, f"{name} Moved", f"new.{email}", stripe_email=f"old.{email}")
        activecampaign.add(f"old.{email}")
    crm = ActiveCampaign(activecampaign.url, AC_TOKEN, **no_wait())

    check = check_emails(db, gateway, [crm], crm_lookups=2)

    assert [(d.name, d.crm_differences) for d in check.differences] == [
        ("Ann Moved", [("ActiveCampaign", "old.ann@example.com")]),
        ("Bob Moved", [("ActiveCampaign", "old.bob@example.com")]),
        ("Cat Moved", []),
    ]
    assert len(activecampaign.requests) == 4


def test_a_failing_crm_is_reported_and_does_not_stop_the_check(db, stripe_client, gateway, keap):
    jane = in_stripe_and_ours(
        db, stripe_client, "Jane Doe", "jane.new@example.com", stripe_email="jane.old@example.com"
    )
    bob = in_stripe_and_ours(
        db, stripe_client, "Bob Stone", "bob.new@example.com", stripe_email="bob.old@example.com"
    )
    keap.fail_next(503, {"message": "Service Unavailable"}, times=3)

    check = check_emails(db, gateway, [Keap(keap.url, KEAP_KEY, **no_wait())])

    assert {d.customer_id for d in check.differences} == {jane, bob}
    assert all(d.crm_differences == [] for d in check.differences)
    assert check.problems == [
        "Keap could not be checked: Keap had a problem on its side (HTTP 503), so nothing more was done there. "
        "Try again in a few minutes."
    ]
    assert len(keap.requests) == 3, "asked once (with its retries), then left alone for the rest of the run"
    message = email_sync_report(check.differences, check.checked, crms=check.crms, problems=check.problems)
    assert message_problems(message.blocks, message.text) == []
    assert "Keap could not be checked" in message.blocks[-1]["elements"][0]["text"]


def test_without_stripe_nothing_is_compared(db):
    check = check_emails(db, None, [])
    assert (check.differences, check.checked) == ([], 0)
    assert "STRIPE_API_KEY is not set" in check.problems[0]


# --- the report --------------------------------------------------------------------------------------------------


def difference(i: int, **changes: Any) -> Difference:
    fields = {
        "customer_id": i,
        "name": f"Customer <{i}>",
        "our_email": f"c{i}@new.example.com",
        "stripe_email": f"c{i}@old.example.com",
        "crm_differences": [("ActiveCampaign", f"c{i}@old.example.com"), ("Keap", None)],
    }
    return Difference(**{**fields, **changes})


def test_the_report_lists_who_differs_where_with_a_push_button_each():
    message = email_sync_report(
        [difference(1), difference(2, stripe_email="")], 1234, crms=["ActiveCampaign", "Keap"]
    )

    assert message_problems(message.blocks, message.text) == []
    assert message.text == "Email check: 2 customers differ from our records"
    assert message.blocks[0]["text"]["text"] == "Email check: 2 customers differ"
    first = message.blocks[2]["text"]["text"]
    assert first == (
        "*Customer &lt;1&gt;*\nOurs: `c1@new.example.com`\nStripe: `c1@old.example.com`\n"
        "ActiveCampaign: `c1@old.example.com`\nKeap: _no contact under either address_"
    )
    assert "Stripe: _no email_" in message.blocks[3]["text"]["text"]
    button = message.blocks[2]["accessory"]
    assert (button["text"]["text"], button["action_id"]) == ("Push our email", "push_email-1")
    assert (
        button["confirm"]["text"]["text"]
        == "Put c1@new.example.com for Customer ‹1› into Stripe, ActiveCampaign?"
    )
    assert listed_differences(message.blocks) == [difference(1), difference(2, stripe_email="")]


def test_a_long_report_lists_20_and_counts_the_rest():
    message = email_sync_report([difference(i) for i in range(1, 36)], 5000)
    assert message_problems(message.blocks, message.text) == []
    assert len(listed_differences(message.blocks)) == 20
    assert message.blocks[0]["text"]["text"] == "Email check: 35 customers differ"
    assert message.blocks[-1]["elements"][0]["text"].startswith("…and 15 more customers not listed here")


def test_huge_addresses_list_fewer_customers_but_stay_within_slacks_limits():
    huge = [
        difference(i, name="N" * 3000, our_email="a" * 300 + "@x.io", stripe_email="b" * 300 + "@x.io")
        for i in range(1, 26)
    ]
    message = email_sync_report(huge, 25)
    assert message_problems(message.blocks, message.text) == []
    shown = len(listed_differences(message.blocks))
    assert 1 <= shown < 20
    assert f"…and {25 - shown} more customers" in message.blocks[-1]["elements"][0]["text"]


def test_all_clear_names_the_crms():
    message = email_sync_report([], 1234, crms=["ActiveCampaign", "Keap"])
    assert message_problems(message.blocks, message.text) == []
    assert (
        message.text == "Email check: all clear. :white_check_mark: All 1,234 customers' emails match Stripe."
    )
    assert "CRMs connected: ActiveCampaign, Keap (looked up" in message.blocks[2]["elements"][0]["text"]
    assert "No CRMs are connected" in email_sync_report([], 3).blocks[2]["elements"][0]["text"]


# --- pushing, through Slack --------------------------------------------------------------------------------------


def connected(db, slack, local_stripe, activecampaign, keap):
    """Settings of a workspace whose app is connected to Stripe and both CRMs, with ADMIN as payment admin."""
    return settings_for(
        db,
        slack,
        payment_admins=frozenset({ADMIN}),
        stripe_api_key=local_stripe.api_key,
        stripe_api_base=local_stripe.url,
        activecampaign_url=activecampaign.url,
        activecampaign_api_key=AC_TOKEN,
        keap_api_url=keap.url,
        keap_api_key=KEAP_KEY,
        alerts_channel=CHANNEL,
    )


@pytest.fixture
def report(db, slack, local_stripe, stripe_client, activecampaign, keap):
    """Jane differs in Stripe and in ActiveCampaign (Keap has no contact for her), Bob differs in Stripe only;
    the job has posted its report to the alerts channel of a workspace whose app is connected to them all."""
    settings = connected(db, slack, local_stripe, activecampaign, keap)
    jane = in_stripe_and_ours(
        db, stripe_client, "Jane Doe", "jane.new@example.com", stripe_email="jane.old@example.com"
    )
    bob = in_stripe_and_ours(
        db, stripe_client, "Bob Stone", "bob.new@example.com", stripe_email="bob.old@example.com"
    )
    ac_jane = activecampaign.add("jane.old@example.com")
    keap_other = keap.add("someone@example.com")
    assert run_email_sync(db, WebClient(token="xoxb-test", base_url=slack.api_url), CHANNEL, settings) == 2
    web = WebApp(create_app(settings, db), db)

    def person(user_id: str) -> SlackPerson:
        return SlackPerson(slack, wsgi_transport(web), SIGNING_SECRET, user_id=user_id, channel_id=CHANNEL)

    [posted] = slack.visible(CHANNEL, ADMIN)
    return {
        "jane": jane,
        "bob": bob,
        "ac_jane": ac_jane,
        "keap_other": keap_other,
        "message": posted,
        "person": person,
    }


def private_to(slack, user: str) -> list:
    return [m for m in slack.visible(CHANNEL, user) if m.ephemeral]


def test_the_job_posts_the_report_to_the_alerts_channel(report):
    message = report["message"]
    assert not message.ephemeral
    text = text_of(message)
    assert "Email check: 2 customers differ" in text
    assert (
        "Ours: `jane.new@example.com`\nStripe: `jane.old@example.com`\nActiveCampaign: `jane.old@example.com`"
        in text
    )
    assert "Keap: _no contact under either address_" in text
    assert action_ids(message) == [f"push_email-{report['bob']}", f"push_email-{report['jane']}"]


def test_an_admin_pushes_our_email_to_stripe_and_the_crm(
    db, slack, stripe_client, activecampaign, keap, report
):
    jane = report["jane"]
    report["person"](ADMIN).click(report["message"], f"push_email-{jane}")
    slack.wait_for(lambda: private_to(slack, ADMIN))

    assert stripe_email_of(db, stripe_client, jane) == "jane.new@example.com"
    assert activecampaign.contacts[report["ac_jane"]] == "jane.new@example.com"
    assert keap.contacts[report["keap_other"]] == {"EMAIL1": "someone@example.com"}, (
        "Keap had nothing to change"
    )
    assert not keap.writes()
    with db.session() as s:
        assert s.get(Customer, jane).email == "jane.new@example.com", "our record is the source of truth"
    summary = (
        "pushed Jane Doe's email jane.new@example.com to Stripe and ActiveCampaign; "
        "Keap has no contact under the old or the new address"
    )
    assert audit_rows(db, jane) == [(ADMIN, "succeeded", summary)]
    [told] = private_to(slack, ADMIN)
    assert told.text == f"<@{ADMIN}> {summary}."
    updated = slack.message(report["message"].ts)
    assert not updated.ephemeral and f"<@{ADMIN}> {summary}." in text_of(updated)
    assert "Email check: 1 customer differs" in text_of(updated)
    assert action_ids(updated) == [f"push_email-{report['bob']}"], "Jane's row is gone, Bob's stays"

    report["person"](ADMIN).click(updated, f"push_email-{report['bob']}")
    slack.wait_for(lambda: "all clear" in text_of(slack.message(report["message"].ts)))
    assert stripe_email_of(db, stripe_client, report["bob"]) == "bob.new@example.com"
    assert "All 2 customers' emails match Stripe" in text_of(slack.message(report["message"].ts))


def test_someone_not_allowed_is_refused_and_nothing_changes(db, slack, stripe_client, activecampaign, report):
    jane = report["jane"]
    report["person"](SOMEONE).click(report["message"], f"push_email-{jane}")
    slack.wait_for(lambda: private_to(slack, SOMEONE))

    [told] = private_to(slack, SOMEONE)
    assert "Only payment admins" in told.text and f"<@{ADMIN}>" in told.text
    assert stripe_email_of(db, stripe_client, jane) == "jane.old@example.com"
    assert activecampaign.contacts[report["ac_jane"]] == "jane.old@example.com"
    assert not activecampaign.writes()
    assert audit_rows(db, jane) == [(SOMEONE, "refused", "not a payment admin")]
    assert slack.message(report["message"].ts).blocks == report["message"].blocks, "the report is unchanged"


def test_a_crm_refusal_is_told_after_stripe_is_fixed(db, slack, stripe_client, activecampaign, report):
    jane = report["jane"]
    original = activecampaign.answer

    def refuse_put(seen):
        if seen.method == "PUT":
            return 422, {"errors": [{"title": "Email address already exists in the system."}]}, {}
        return original(seen)

    activecampaign.answer = refuse_put
    report["person"](ADMIN).click(report["message"], f"push_email-{jane}")
    slack.wait_for(lambda: private_to(slack, ADMIN))

    [told] = private_to(slack, ADMIN)
    assert told.text == (
        "Pushed jane.new@example.com to Stripe, but ActiveCampaign refused the request (HTTP 422): "
        "Email address already exists in the system. Our record is unchanged."
    )
    assert stripe_email_of(db, stripe_client, jane) == "jane.new@example.com"
    assert activecampaign.contacts[report["ac_jane"]] == "jane.old@example.com"
    [(actor, outcome, summary)] = audit_rows(db, jane)
    assert (actor, outcome) == (ADMIN, "failed") and "ActiveCampaign refused" in summary
    assert action_ids(slack.message(report["message"].ts)) == action_ids(report["message"]), (
        "report unchanged"
    )

    # Once ActiveCampaign takes it, pushing again finds Stripe fixed and the old address in the button's row.
    activecampaign.answer = original
    report["person"](ADMIN).click(report["message"], f"push_email-{jane}")
    slack.wait_for(lambda: len(private_to(slack, ADMIN)) == 2)
    assert activecampaign.contacts[report["ac_jane"]] == "jane.new@example.com"
    assert private_to(slack, ADMIN)[-1].text == (
        f"<@{ADMIN}> pushed Jane Doe's email jane.new@example.com to ActiveCampaign; Stripe already had it; "
        "Keap has no contact under the old or the new address."
    )


# --- pushing, directly -------------------------------------------------------------------------------------------


def test_a_stripe_failure_stops_the_push_before_any_crm(db, stripe_client, gateway, activecampaign):
    jane = in_stripe_and_ours(
        db, stripe_client, "Jane Doe", "jane.new@example.com", stripe_email="jane.old@example.com"
    )
    activecampaign.add("jane.old@example.com")
    with db.session() as s:
        stripe_client.v1.customers.delete(s.get(Customer, jane).stripe_customer_id)
    crm = ActiveCampaign(activecampaign.url, AC_TOKEN, **no_wait())
    email = build_actions(db, gateway, frozenset({ADMIN}), crms=[crm]).email

    with pytest.raises(Failed, match="Stripe has no record of this customer"):
        email.push(ADMIN, jane, old_emails=["jane.old@example.com"])

    assert activecampaign.requests == []
    assert [outcome for _, outcome, _ in audit_rows(db, jane)] == ["failed"]


def test_a_customer_not_in_stripe_is_pushed_to_the_crms_only(db, activecampaign):
    with db.session() as s:
        jane = make.customer(s, "Jane Doe", "jane.new@example.com").id
    old = activecampaign.add("jane.old@example.com")
    crm = ActiveCampaign(activecampaign.url, AC_TOKEN, **no_wait())
    email = build_actions(db, None, frozenset({ADMIN}), crms=[crm]).email

    summary = email.push(ADMIN, jane, old_emails=["jane.old@example.com"])

    assert summary == "pushed Jane Doe's email jane.new@example.com to ActiveCampaign"
    assert activecampaign.contacts[old] == "jane.new@example.com"
    with pytest.raises(NotAllowed):
        email.push(SOMEONE, jane)


def test_changing_an_email_names_the_crms_that_still_hold_the_old_one(
    db, slack, local_stripe, stripe_client, activecampaign, keap
):
    settings = connected(db, slack, local_stripe, activecampaign, keap)
    in_stripe_and_ours(db, stripe_client, "Jane Doe", "jane.old@example.com")
    activecampaign.add("jane.old@example.com")
    person = SlackPerson(
        slack, wsgi_transport(WebApp(create_app(settings, db), db)), SIGNING_SECRET, user_id=ADMIN
    )
    card = person.command("jane doe")
    person.click(card, "change_email")
    form = slack.latest_view()

    person.submit(form, {"email": "jane.new@example.com"})
    slack.wait_for(lambda: slack.views[form["id"]].get("callback_id") == "result")

    outcome = slack.views[form["id"]]["blocks"][0]["text"]["text"]
    assert "ActiveCampaign still has the old address" in outcome
    assert "Keap" not in outcome
