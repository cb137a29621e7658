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
from sqlalchemy import select, text

from blocks.email_sync import email_sync_report, listed_differences
from blocks.limits import message_problems
from bot.actions import build_actions
from bot.actions.outcomes import Failed, NotAllowed
from bot.crm.activecampaign import ActiveCampaign
from bot.crm.keap import Keap
from bot.email_sync import check_emails, note_old_email
from bot.models import AuditEvent, Customer, OldEmail
from bot.stripe_gateway import StripeGateway
from bot.viewmodels import Difference
from devkit.local_slack import SlackPerson, wsgi_transport
from runtime.app import create_app
from runtime.jobs import run_email_sync
from runtime.web import WebApp
from tests import factories as make
from tests.conftest import BACKENDS, SIGNING_SECRET, settings_for
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


def test_each_run_asks_the_crms_within_its_budget_and_the_next_carries_on(
    db, stripe_client, gateway, activecampaign
):
    for name in ("Ann", "Bob", "Cat"):
        email = f"{name.lower()}@example.com"
        in_stripe_and_ours(db, stripe_client, f"{name} Moved", f"new.{email}", stripe_email=f"old.{email}")
        activecampaign.add(f"old.{email}")
    crm = ActiveCampaign(activecampaign.url, AC_TOKEN, **no_wait())

    first = check_emails(db, gateway, [crm], crm_calls=4)  # two requests a customer: ours, then the old one

    asked_first = {d.name for d in first.differences if d.crm_differences}
    assert len(asked_first) == 2 and (first.asked, first.waiting, first.calls) == (2, 1, 4)
    assert len(activecampaign.requests) == 4
    assert {d.name for d in first.differences} == {"Ann Moved", "Bob Moved", "Cat Moved"}, (
        "Stripe differs for all"
    )

    second = check_emails(db, gateway, [crm], crm_calls=4)

    [left_over] = {"Ann Moved", "Bob Moved", "Cat Moved"} - asked_first
    asked_second = {d.name for d in second.differences if d.crm_differences}
    assert left_over in asked_second, "the customer left over is asked first"
    assert len(asked_second) == 2 and second.waiting == 1


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
    assert message.blocks[2]["elements"][0]["text"] == (
        "CRMs connected: ActiveCampaign, Keap; no email changed that ActiveCampaign, Keap had to be asked about."
    )
    asked = email_sync_report([], 1234, crms=["Keap"], asked=3, waiting=2).blocks[2]["elements"][0]["text"]
    assert asked == (
        "CRMs connected: Keap; asked Keap about the 3 customers whose email changed. "
        "The next check asks about 2 more customers whose email changed."
    )
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
    assert outcome == (
        ":white_check_mark: Changed Jane Doe's email from jane.old@example.com to jane.new@example.com in our "
        "records and Stripe; ActiveCampaign still has the old address: the next email check lists this customer "
        "with a Push our email button to change it there."
    )


# --- finding every difference: CRMs asked about the customers whose email changed ------------------------------


def due(db, customer_id: int) -> list[tuple[str, bool]]:
    """The customer's old addresses noted for the email check, and whether each is due."""
    with db.session() as s:
        rows = s.execute(
            select(OldEmail.email, OldEmail.due)
            .where(OldEmail.customer_id == customer_id)
            .order_by(OldEmail.id)
        ).all()
        return [(e, d) for e, d in rows]


def change_in_slack(slack, settings, db, query: str, new_email: str) -> str:
    """A payment admin changes the email on the customer's card; the result's text."""
    person = SlackPerson(
        slack, wsgi_transport(WebApp(create_app(settings, db), db)), SIGNING_SECRET, user_id=ADMIN
    )
    card = person.command(query)
    person.click(card, "change_email")
    form = slack.latest_view()
    person.submit(form, {"email": new_email})
    slack.wait_for(lambda: slack.views[form["id"]].get("callback_id") == "result")
    return slack.views[form["id"]]["blocks"][0]["text"]["text"]


def reports(slack) -> list:
    return [m for m in slack.visible(CHANNEL, ADMIN) if "Email check" in m.text and not m.ephemeral]


def test_an_email_changed_in_slack_that_a_crm_still_holds_is_listed_and_pushing_fixes_it(
    db, slack, local_stripe, stripe_client, activecampaign, keap
):
    settings = connected(db, slack, local_stripe, activecampaign, keap)
    jane = in_stripe_and_ours(db, stripe_client, "Jane Doe", "jane.old@example.com")
    ac_jane = activecampaign.add("jane.old@example.com")
    change_in_slack(slack, settings, db, "jane doe", "jane.new@example.com")
    assert stripe_email_of(db, stripe_client, jane) == "jane.new@example.com", "Stripe agrees with us now"
    assert due(db, jane) == [("jane.old@example.com", True)]
    client = WebClient(token="xoxb-test", base_url=slack.api_url)

    assert run_email_sync(db, client, CHANNEL, settings) == 1

    [report] = reports(slack)
    assert message_problems(report.blocks, report.text) == []
    text = text_of(report)
    assert "Email check: 1 customer differs" in text
    assert (
        "*Jane Doe*\nOurs: `jane.new@example.com`\nActiveCampaign: `jane.old@example.com`\n"
        "Keap: _no contact under either address_" in text
    )
    assert "Stripe: `" not in text, "Stripe has our address"
    assert "asked ActiveCampaign, Keap about the 1 customer whose email changed" in text
    assert action_ids(report) == [f"push_email-{jane}"]

    person = SlackPerson(
        slack,
        wsgi_transport(WebApp(create_app(settings, db), db)),
        SIGNING_SECRET,
        user_id=ADMIN,
        channel_id=CHANNEL,
    )
    person.click(report, f"push_email-{jane}")
    slack.wait_for(lambda: private_to(slack, ADMIN))
    assert activecampaign.contacts[ac_jane] == "jane.new@example.com"
    assert private_to(slack, ADMIN)[-1].text == (
        f"<@{ADMIN}> pushed Jane Doe's email jane.new@example.com to ActiveCampaign; Stripe already had it; "
        "Keap has no contact under the old or the new address."
    )

    # The next check finds every system in step and stops asking about Jane; the one after asks nobody.
    assert run_email_sync(db, client, CHANNEL, settings) == 0
    assert "all clear" in reports(slack)[-1].text
    assert due(db, jane) == [("jane.old@example.com", False)]
    activecampaign.requests.clear()
    keap.requests.clear()
    assert run_email_sync(db, client, CHANNEL, settings) == 0
    assert activecampaign.requests == [] and keap.requests == []


def test_a_difference_still_held_by_a_crm_is_listed_at_every_check_until_pushed(
    db, stripe_client, gateway, activecampaign
):
    jane = in_stripe_and_ours(db, stripe_client, "Jane Doe", "jane.new@example.com")
    with db.session() as s:
        note_old_email(s, jane, "jane.old@example.com", make.T0)
    activecampaign.add("jane.old@example.com")
    crm = ActiveCampaign(activecampaign.url, AC_TOKEN, **no_wait())

    for _ in range(2):
        [difference] = check_emails(db, gateway, [crm]).differences
        assert difference == Difference(
            jane, "Jane Doe", "jane.new@example.com", None, [("ActiveCampaign", "jane.old@example.com")]
        )
    assert due(db, jane) == [("jane.old@example.com", True)]


def test_the_incremental_check_asks_the_crms_only_about_customers_whose_email_changed(
    db, slack, local_stripe, stripe_client, gateway, activecampaign
):
    """Thirty customers whose emails never changed, one changed in the Stripe Dashboard and synced into our record
    by the signed `customer.updated` webhook: the CRM hears of that one only, two requests."""
    from tests.test_webhooks import event, post, signed, web_for

    for i in range(30):
        in_stripe_and_ours(db, stripe_client, f"Steady Customer{i}", f"steady{i}@example.com")
        activecampaign.add(f"steady{i}.previous@example.com")  # what a CRM holds for them is never looked up
    zoe = in_stripe_and_ours(db, stripe_client, "Zoë Martin", "zoe.old@example.com")
    activecampaign.add("zoe.old@example.com")
    with db.session() as s:
        zoe_stripe = s.get(Customer, zoe).stripe_customer_id
    stripe_client.v1.customers.update(zoe_stripe, params={"email": "zoe.new@example.com"})
    status, _answer = post(
        web_for(db, slack, local_stripe),
        *signed(event("evt_zoe_moved", "customer.updated", {"id": zoe_stripe})),
    )
    assert status.startswith("200")
    with db.session() as s:
        assert s.get(Customer, zoe).email == "zoe.new@example.com"
    assert due(db, zoe) == [("zoe.old@example.com", True)]
    crm = ActiveCampaign(activecampaign.url, AC_TOKEN, **no_wait())

    check = check_emails(db, gateway, [crm])

    assert check.checked == 31
    assert check.differences == [
        Difference(
            zoe, "Zoë Martin", "zoe.new@example.com", None, [("ActiveCampaign", "zoe.old@example.com")]
        )
    ]
    assert [r.query["email"] for r in activecampaign.requests] == [
        "zoe.new@example.com",
        "zoe.old@example.com",
    ]
    assert (check.asked, check.calls, check.waiting) == (1, 2, 0)


def test_a_difference_only_in_a_crm_is_found_by_a_full_run(
    db, slack, local_stripe, stripe_client, activecampaign, monkeypatch, capsys
):
    """Jane's change was checked when ActiveCampaign had neither address; it took the old one since (an import, a
    form). The daily check asks nobody; `customer-bot run-job email-sync --full` finds it."""
    from runtime.cli import main

    jane = in_stripe_and_ours(db, stripe_client, "Jane Doe", "jane.new@example.com")
    with db.session() as s:
        note_old_email(s, jane, "jane.old@example.com", make.T0)
    for name, value in {
        "DATABASE_URL": db.url,
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_API_URL": slack.api_url,
        "ALERTS_CHANNEL": CHANNEL,
        "STRIPE_API_KEY": local_stripe.api_key,
        "STRIPE_API_BASE": local_stripe.url,
        "ACTIVECAMPAIGN_URL": activecampaign.url,
        "ACTIVECAMPAIGN_API_KEY": AC_TOKEN,
    }.items():
        monkeypatch.setenv(name, value)

    assert main(["run-job", "email-sync"]) == 0
    assert capsys.readouterr().out.strip() == "0"
    assert due(db, jane) == [("jane.old@example.com", False)], "checked: ActiveCampaign had neither address"
    activecampaign.add("jane.old@example.com")
    activecampaign.requests.clear()

    assert main(["run-job", "email-sync"]) == 0
    assert capsys.readouterr().out.strip() == "0"
    assert activecampaign.requests == [], "nothing changed since the last check: nobody is asked about"

    assert main(["run-job", "email-sync", "--full"]) == 0
    assert capsys.readouterr().out.strip() == "1"
    report = reports(slack)[-1]
    assert "ActiveCampaign: `jane.old@example.com`" in text_of(report)
    assert action_ids(report) == [f"push_email-{jane}"]

    assert main(["run-job", "missed-payments", "--full"]) == 2
    assert "--full is for the email-sync job only" in capsys.readouterr().err


class DiesAfter:
    """A CRM connection in a process that dies (killed, out of memory) after `calls` requests: the run stops
    there, with no chance to tidy up."""

    def __init__(self, crm: ActiveCampaign, calls: int) -> None:
        self.crm, self.left, self.name = crm, calls, crm.name

    def find_contact(self, email: str):
        if self.left == 0:
            raise SystemExit("killed")
        self.left -= 1
        return self.crm.find_contact(email)

    def change_email(self, contact, new_email: str) -> None:
        self.crm.change_email(contact, new_email)


def three_changed(db, activecampaign) -> dict[str, int]:
    """Ann, Bob and Cat changed their emails (noted in that order); ActiveCampaign still has every old address."""
    ids = {}
    with db.session() as s:
        for name in ("Ann", "Bob", "Cat"):
            customer = make.customer(s, f"{name} Moved", f"{name.lower()}.new@example.com")
            note_old_email(s, customer.id, f"{name.lower()}.old@example.com", make.T0)
            activecampaign.add(f"{name.lower()}.old@example.com")
            ids[name] = customer.id
    return ids


def test_a_run_that_dies_half_way_loses_nobody(db, gateway, activecampaign):
    ids = three_changed(db, activecampaign)
    crm = ActiveCampaign(activecampaign.url, AC_TOKEN, **no_wait())

    with pytest.raises(SystemExit):
        check_emails(db, gateway, [DiesAfter(crm, 3)])  # Ann answered; killed while asking about Bob

    assert all(d for _e, d in due(db, ids["Bob"]) + due(db, ids["Cat"]))
    check = check_emails(db, gateway, [crm])
    assert [(d.name, d.crm_differences) for d in check.differences] == [
        (f"{n} Moved", [("ActiveCampaign", f"{n.lower()}.old@example.com")]) for n in ("Ann", "Bob", "Cat")
    ]
    asked = [r.query["email"] for r in activecampaign.requests[3:]]
    assert asked[:4] == [
        "bob.new@example.com",
        "bob.old@example.com",
        "cat.new@example.com",
        "cat.old@example.com",
    ], "the customers the dead run never finished come first"


def test_a_run_asked_to_stop_reports_what_it_found_and_the_next_carries_on(
    db, slack, local_stripe, stripe_client, activecampaign
):
    """The clock process is told to stop (SIGTERM) while the check asks ActiveCampaign about Bob: Bob is finished,
    the report says what was found and that Cat waits, and the next run asks about Cat first."""
    import threading

    ids = three_changed(db, activecampaign)
    with db.session() as s:
        for customer_id in ids.values():  # in Stripe too, agreeing with us
            stripe_id = stripe_client.v1.customers.create(
                params={"email": s.get(Customer, customer_id).email}
            ).id
            s.get(Customer, customer_id).stripe_customer_id = stripe_id
    settings = settings_for(
        db,
        slack,
        stripe_api_key=local_stripe.api_key,
        stripe_api_base=local_stripe.url,
        activecampaign_url=activecampaign.url,
        activecampaign_api_key=AC_TOKEN,
        alerts_channel=CHANNEL,
    )
    stopping = threading.Event()
    answer = activecampaign.answer

    def sigterm_on_the_third_request(seen):
        if len(activecampaign.requests) == 3:
            stopping.set()
        return answer(seen)

    activecampaign.answer = sigterm_on_the_third_request
    client = WebClient(token="xoxb-test", base_url=slack.api_url)

    assert run_email_sync(db, client, CHANNEL, settings, stopping=stopping) == 2

    report = reports(slack)[-1]
    assert message_problems(report.blocks, report.text) == []
    assert action_ids(report) == [f"push_email-{ids['Ann']}", f"push_email-{ids['Bob']}"]
    assert "The next check asks about 1 more customer whose email changed." in text_of(report)
    activecampaign.answer = answer
    activecampaign.requests.clear()

    assert run_email_sync(db, client, CHANNEL, settings) == 3
    assert [r.query["email"] for r in activecampaign.requests][:2] == [
        "cat.new@example.com",
        "cat.old@example.com",
    ]
    assert len(action_ids(reports(slack)[-1])) == 3


def test_the_change_email_result_without_crms_says_other_systems_are_updated_by_hand(
    db, slack, local_stripe, stripe_client
):
    settings = settings_for(
        db,
        slack,
        payment_admins=frozenset({ADMIN}),
        stripe_api_key=local_stripe.api_key,
        stripe_api_base=local_stripe.url,
    )
    jane = in_stripe_and_ours(db, stripe_client, "Jane Doe", "jane.old@example.com")

    outcome = change_in_slack(slack, settings, db, "jane doe", "jane.new@example.com")

    assert outcome == (
        ":white_check_mark: Changed Jane Doe's email from jane.old@example.com to jane.new@example.com in our "
        "records and Stripe; no CRMs are connected to the bot, so any other system that has the old address must "
        "be updated by hand."
    )
    assert due(db, jane) == [("jane.old@example.com", True)], "noted for a CRM connected later"


# --- the upgrade ---------------------------------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def database_at_0006(request, tmp_path):
    from tests.test_migrations import database_at

    with database_at(request.param, "0006", tmp_path) as database:
        yield database


def test_the_upgrade_notes_the_emails_changed_from_slack_before_it(database_at_0006, gateway, activecampaign):
    """A database of the release before: Jane's email was changed from Slack (the audit trail says from what), Bob
    has no change. After the upgrade in place, the first check asks the CRM about Jane and lists her."""
    db = database_at_0006
    at = make.T0 if db.engine.dialect.name == "postgresql" else make.T0.replace(tzinfo=None)
    with db.engine.begin() as connection:  # rows of the release before, so written as SQL
        connection.execute(
            text(
                "INSERT INTO customers (id, name, email, created_at) VALUES"
                " (1, 'Jane Doe', 'jane.new@example.com', :at), (2, 'Bob Stone', 'bob@example.com', :at)"
            ),
            {"at": at},
        )
    jane, bob = 1, 2
    with db.session() as s:
        for outcome in ("succeeded", "failed"):
            s.add(
                AuditEvent(
                    at=make.T0,
                    actor=ADMIN,
                    action="change_email",
                    target_type="customer",
                    target_id=jane,
                    outcome=outcome,
                    details={
                        "summary": "changed Jane Doe's email from jane.old@example.com to jane.new@example.com "
                        "in our records and Stripe; no CRMs are connected to the bot, so no other system holds "
                        "the old address"
                        if outcome == "succeeded"
                        else "changed nothing: jane.other@example.com"
                    },
                )
            )

    db.upgrade()

    assert due(db, jane) == [("jane.old@example.com", True)] and due(db, bob) == []
    activecampaign.add("jane.old@example.com")
    check = check_emails(db, gateway, [ActiveCampaign(activecampaign.url, AC_TOKEN, **no_wait())])
    assert [(d.customer_id, d.crm_differences) for d in check.differences] == [
        (jane, [("ActiveCampaign", "jane.old@example.com")])
    ]


def test_a_redraw_after_a_push_keeps_what_the_crms_were_asked():
    """The header carries the CRM counts, so the redraw says the same; a report posted by the release before,
    whose header carries three values, redraws too."""
    from blocks.email_sync import report_after_push
    from bot.viewmodels import Notice

    posted = email_sync_report([difference(1), difference(2)], 40, crms=["Keap"], asked=2, waiting=5)
    redrawn = report_after_push(posted.blocks, 1, Notice(ADMIN, "pushed"))
    assert message_problems(redrawn.blocks, redrawn.text) == []
    assert redrawn.blocks[1]["block_id"] == posted.blocks[0]["block_id"]
    assert "asked Keap about the 2 customers whose email changed. The next check asks about 5 more" in str(
        redrawn.blocks
    )
    older = [dict(b) for b in posted.blocks]
    older[0] = {**older[0], "block_id": 'email_sync:[40,0,["Keap"]]'}
    assert listed_differences(report_after_push(older, 1, Notice(ADMIN, "pushed")).blocks) == [difference(2)]
