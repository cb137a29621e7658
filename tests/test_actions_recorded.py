"""Actions whose Stripe calls localstripe cannot perform (pause_collection, resume, trial_end) and Stripe failures
it cannot produce (a 500), driven through Slack against a recording Stripe stand-in. The exact requests are asserted
against Stripe's API reference in test_stripe_gateway; here we check what the person and our records see."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.actions.ledger import IN_FLIGHT
from bot.models import ActionAttempt, Order, Recurring
from bot.stripe_gateway import CallLimits
from devkit.local_slack import SlackPerson, wsgi_transport
from runtime.app import create_app
from runtime.web import WebApp
from tests import factories as make
from tests.clock import Clock
from tests.conftest import SIGNING_SECRET, Harness, settings_for
from tests.slack_text import buttons, text_of
from tests.stripe_support import RecordingHTTPClient, recording_gateway, stripe_error_body, subscription_body

RETRIES = len(CallLimits().retry_delays)  # the gateway's retries of one call, within its budget
ADMIN = "U0ADMIN01"


@pytest.fixture
def recorder() -> RecordingHTTPClient:
    return RecordingHTTPClient(subscription_body("sub_123"))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def acting(db, slack, recorder, clock) -> Harness:
    settings = settings_for(db, slack, payment_admins=frozenset({ADMIN}))
    web = WebApp(create_app(settings, db, gateway=recording_gateway(recorder), clock=clock), db)
    return Harness(
        settings, db, slack, web, SlackPerson(slack, wsgi_transport(web), SIGNING_SECRET, user_id=ADMIN)
    )


def open_plan(acting: Harness, **fields):
    with acting.db.session() as s:
        jane = make.customer(s, stripe_customer_id="cus_123")
        plan_id = make.payment_plan(s, jane, stripe_subscription_id="sub_123", **fields).id
    card = acting.person.command("jane doe")
    acting.person.click(card, f"open_payment_plan-{plan_id}")
    return plan_id, acting.slack.message(card.ts)


def result_text(acting: Harness, view_id: str) -> str:
    acting.slack.wait_for(lambda: acting.slack.views[view_id].get("callback_id") == "result")
    return acting.slack.views[view_id]["blocks"][0]["text"]["text"]


def test_pause_payments_until_a_date(acting, recorder):
    plan_id, record = open_plan(acting)
    resumes = (datetime.now(UTC) + timedelta(days=30)).date()
    recorder.respond(
        subscription_body(
            "sub_123",
            pause_collection={
                "behavior": "void",
                "resumes_at": int(datetime(resumes.year, resumes.month, resumes.day, tzinfo=UTC).timestamp()),
            },
        )
    )

    acting.person.click(record, f"pause_payments-{plan_id}")
    form = acting.slack.latest_view()
    acting.person.submit(form, {"when": "until_date", "resumes_at": resumes.isoformat()})

    assert "Paused payments of Guitar course" in result_text(acting, form["id"])
    assert recorder.last.params["pause_collection[behavior]"] == "void"
    updated = acting.slack.message(record.ts)
    assert "payments paused until" in text_of(updated)
    assert "Resume payments" in buttons(updated) and "Pause payments" not in buttons(updated)
    with acting.db.session() as s:
        plan = s.get(Recurring, plan_id)
        assert (plan.status, plan.payments_paused, plan.paused_until.date()) == ("paused", True, resumes)


def test_the_pause_form_as_it_opens_is_accepted_and_pauses_for_a_month(acting, recorder):
    plan_id, record = open_plan(acting)
    recorder.respond(subscription_body("sub_123", pause_collection={"behavior": "void", "resumes_at": None}))
    acting.person.click(record, f"pause_payments-{plan_id}")
    form = acting.slack.latest_view()

    answer = acting.person.submit(form)  # nothing changed: the dates it offers

    assert answer.get("response_action") != "errors"
    assert "Paused payments" in result_text(acting, form["id"])
    resumes = datetime.fromtimestamp(int(recorder.last.params["pause_collection[resumes_at]"]), UTC).date()
    assert resumes == datetime.now(UTC).date() + timedelta(days=30)


def test_a_next_bill_date_form_on_an_overdue_plan_offers_a_date_it_accepts(acting, recorder):
    plan_id, record = open_plan(acting, next_bill_at=datetime.now(UTC) - timedelta(days=3))
    recorder.respond(subscription_body("sub_123", status="trialing"))
    acting.person.click(record, f"change_next_bill_date-{plan_id}")
    form = acting.slack.latest_view()

    answer = acting.person.submit(form)

    assert answer.get("response_action") != "errors"
    assert "Moved the next bill date" in result_text(acting, form["id"])


def test_a_paused_plan_whose_bill_date_was_moved_is_still_paused(acting, recorder):
    plan_id, record = open_plan(acting)
    recorder.respond(
        subscription_body(
            "sub_123", status="trialing", pause_collection={"behavior": "void", "resumes_at": None}
        )
    )
    acting.person.click(record, f"pause_payments-{plan_id}")
    form = acting.slack.latest_view()
    acting.person.submit(form, {"when": "until_resumed"})

    result_text(acting, form["id"])
    with acting.db.session() as s:
        assert s.get(Recurring, plan_id).status == "paused"


def test_a_pause_date_in_the_past_is_an_inline_error(acting, recorder):
    plan_id, record = open_plan(acting)
    acting.person.click(record, f"pause_payments-{plan_id}")
    form = acting.slack.latest_view()

    answer = acting.person.submit(form, {"when": "until_date", "resumes_at": "2020-01-01"})

    assert answer["response_action"] == "errors" and "after today" in answer["errors"]["resumes_at"]
    assert recorder.requests == []


def test_resume_payments_from_the_confirm_dialog(acting, recorder):
    plan_id, record = open_plan(acting, status="paused", payments_paused=True)
    acting.person.click(record, f"resume_payments-{plan_id}")

    acting.slack.wait_for(lambda: "resumed payments" in text_of(acting.slack.message(record.ts)))
    assert recorder.last.params["pause_collection"] == ""
    with acting.db.session() as s:
        assert s.get(Recurring, plan_id).status == "active"


def test_move_the_next_bill_date(acting, recorder):
    plan_id, record = open_plan(acting)
    new_date = (datetime.now(UTC) + timedelta(days=45)).date()
    trial_end = int(datetime(new_date.year, new_date.month, new_date.day, 12, tzinfo=UTC).timestamp())
    recorder.respond(subscription_body("sub_123", status="trialing", trial_end=trial_end))

    acting.person.click(record, f"change_next_bill_date-{plan_id}")
    form = acting.slack.latest_view()
    acting.person.submit(form, {"next_bill_date": new_date.isoformat()})

    assert "Moved the next bill date" in result_text(acting, form["id"])
    assert (recorder.last.params["trial_end"], recorder.last.params["proration_behavior"]) == (
        str(trial_end),
        "none",
    )
    updated = text_of(acting.slack.message(record.ts))
    assert f"<!date^{trial_end}^" in updated and "Active" in updated, "shown as a moved date, not as a trial"


def test_plan_status_paused_then_active(acting, recorder):
    plan_id, record = open_plan(acting)
    recorder.respond(subscription_body("sub_123", pause_collection={"behavior": "void", "resumes_at": None}))

    acting.person.click(record, f"change_plan_status-{plan_id}")
    form = acting.slack.latest_view()
    acting.person.submit(form, {"status": "paused"})

    assert "until resumed" in result_text(acting, form["id"])
    with acting.db.session() as s:
        assert s.get(Recurring, plan_id).status == "paused"


def test_a_plan_paused_from_change_status_keeps_its_failed_bill_retried_and_says_so(acting, recorder):
    plan_id, record = open_plan(acting)
    with acting.db.session() as s:
        make.payment(s, s.get(Recurring, plan_id), "failed").stripe_invoice_id = "in_123"
    recorder.respond(subscription_body("sub_123", pause_collection={"behavior": "void", "resumes_at": None}))

    acting.person.click(record, f"change_plan_status-{plan_id}")
    form = acting.slack.latest_view()
    acting.person.submit(form, {"status": "paused"})

    assert "the failed $50.00 bill of Jan 15, 2026 is still retried by Stripe" in result_text(
        acting, form["id"]
    )
    assert [r.path for r in recorder.requests] == ["/v1/subscriptions/sub_123"], "the bill is left as it was"


def test_the_pause_form_without_a_failed_bill_is_as_it_was(acting, recorder):
    plan_id, record = open_plan(acting)
    acting.person.click(record, f"pause_payments-{plan_id}")
    form = acting.slack.latest_view()

    assert [b.get("block_id") for b in form["blocks"] if b["type"] == "input"] == [
        "when",
        "resumes_at",
        "note",
    ]


def start_refund_that_stripe_never_answers(acting: Harness, recorder: RecordingHTTPClient):
    with acting.db.session() as s:
        jane = make.customer(s)
        order_id = make.order(s, jane, 5000, stripe_payment_intent_id="pi_123").id
    card = acting.person.command("jane doe")
    acting.person.click(card, f"open_order-{order_id}")
    acting.person.click(acting.slack.message(card.ts), f"refund_order-{order_id}")
    form = acting.slack.latest_view()
    acting.person.submit(form, {"amount": "10.00"})
    confirm = acting.slack.views[form["id"]]
    recorder.fail_with_connection_error(times=1 + RETRIES)  # every try of this request
    acting.person.submit(confirm)
    assert "cannot tell yet whether it went through" in result_text(acting, form["id"])
    with acting.db.session() as s:
        order = s.get(Order, order_id)
        assert (order.amount_refunded, make.order_payment(s, order).amount_refund_pending) == (0, 1000), (
            "held until Stripe's answer is known"
        )
    acting.slack.replace_view(form["id"], confirm)
    return order_id, form, confirm


def refunds_sent(recorder: RecordingHTTPClient) -> list:
    return [r for r in recorder.requests if r.method == "POST" and r.path == "/v1/refunds"]


def test_a_retry_while_the_request_may_still_be_on_its_way_sends_nothing(acting, recorder, clock):
    order_id, form, confirm = start_refund_that_stripe_never_answers(acting, recorder)
    sent = len(recorder.requests)

    clock.advance(IN_FLIGHT - timedelta(seconds=5))
    acting.person.submit(confirm)

    assert "so it was not sent again" in result_text(acting, form["id"])
    assert len(recorder.requests) == sent, "nothing sent: the first request could still land"
    with acting.db.session() as s:
        assert make.order_payment(s, s.get(Order, order_id)).amount_refund_pending == 1000


REFUND = {"id": "re_123", "object": "refund", "status": "succeeded", "amount": 1000, "currency": "usd"}


def test_a_retry_after_the_window_sends_the_latest_try_again_under_its_own_key(acting, recorder, clock):
    # Stripe replays a key's answer, runs it if it never arrived, or answers 409 while it runs: whatever became
    # of the first try, sending it again under its own key cannot refund twice.
    order_id, form, confirm = start_refund_that_stripe_never_answers(acting, recorder)
    first_key = refunds_sent(recorder)[0].header("Idempotency-Key")
    clock.advance(IN_FLIGHT + timedelta(seconds=1))
    recorder.respond(REFUND)

    acting.person.submit(confirm)

    assert "Refunded $10.00" in result_text(acting, form["id"])
    assert refunds_sent(recorder)[-1].header("Idempotency-Key") == first_key
    with acting.db.session() as s:
        order = s.get(Order, order_id)
        assert (order.amount_refunded, make.order_payment(s, order).amount_refund_pending) == (1000, 0)
        assert s.scalar(select(ActionAttempt.stripe_id)) == "re_123"


def test_a_key_stripe_still_runs_is_left_to_run(acting, recorder, clock):
    order_id, form, confirm = start_refund_that_stripe_never_answers(acting, recorder)
    clock.advance(IN_FLIGHT + timedelta(seconds=1))
    recorder.fail_with_status(
        409,
        times=1 + RETRIES,
        body=stripe_error_body("idempotency_error", "in progress", code="idempotency_key_in_use"),
    )

    acting.person.submit(confirm)

    assert "Stripe is still working on this very request" in result_text(acting, form["id"])
    assert not [r for r in recorder.requests if r.method == "GET"], "nothing searched, nothing fresh sent"
    with acting.db.session() as s:
        assert make.order_payment(s, s.get(Order, order_id)).amount_refund_pending == 1000


def test_after_a_stored_server_error_stripe_is_searched_and_a_fresh_key_refunds_once(acting, recorder, clock):
    order_id, form, confirm = start_refund_that_stripe_never_answers(acting, recorder)
    first_key = refunds_sent(recorder)[0].header("Idempotency-Key")
    clock.advance(IN_FLIGHT + timedelta(seconds=1))
    recorder.fail_with_status(500, headers={"Stripe-Should-Retry": "false"})  # what Stripe stored for the key
    recorder.respond({"object": "list", "data": [], "has_more": False})  # and no refund was made
    recorder.respond(REFUND)

    acting.person.submit(confirm)

    assert "Refunded $10.00" in result_text(acting, form["id"])
    lookup = [r for r in recorder.requests if r.method == "GET" and r.path == "/v1/refunds"]
    assert lookup and lookup[0].params["payment_intent"] == "pi_123"
    retry_key = refunds_sent(recorder)[-1].header("Idempotency-Key")
    assert retry_key != first_key, "a fresh key: Stripe would only replay the first request's failure"
    assert (
        refunds_sent(recorder)[-1].params["metadata[action_key]"]
        == refunds_sent(recorder)[0].params["metadata[action_key]"]
    )
    with acting.db.session() as s:
        order = s.get(Order, order_id)
        assert (order.amount_refunded, make.order_payment(s, order).amount_refund_pending) == (1000, 0)


def test_a_rate_limited_resend_says_nothing_of_the_first_try_so_stripe_is_searched(acting, recorder, clock):
    order_id, form, confirm = start_refund_that_stripe_never_answers(acting, recorder)
    clock.advance(IN_FLIGHT + timedelta(seconds=1))
    marker = refunds_sent(recorder)[0].params["metadata[action_key]"]
    recorder.fail_with_status(429, times=1 + RETRIES)  # the resend is refused before Stripe looks at its key
    recorder.respond(
        {"object": "list", "data": [{**REFUND, "metadata": {"action_key": marker}}], "has_more": False}
    )

    acting.person.submit(confirm)

    assert "Refunded $10.00" in result_text(acting, form["id"]), "what the first try made, found and recorded"
    with acting.db.session() as s:
        assert (s.get(Order, order_id).amount_refunded, s.scalar(select(ActionAttempt.status))) == (
            1000,
            "succeeded",
        )


def test_a_refund_that_went_through_unseen_is_recorded_not_repeated(acting, recorder, clock):
    order_id, form, confirm = start_refund_that_stripe_never_answers(acting, recorder)
    clock.advance(IN_FLIGHT + timedelta(seconds=1))
    marker = refunds_sent(recorder)[0].params["metadata[action_key]"]
    recorder.fail_with_status(500, headers={"Stripe-Should-Retry": "false"})
    made = {**REFUND, "id": "re_seen"}
    recorder.respond(
        {"object": "list", "data": [{**made, "metadata": {"action_key": marker}}], "has_more": False}
    )
    sent_before = len(refunds_sent(recorder))

    acting.person.submit(confirm)

    assert "Refunded $10.00" in result_text(acting, form["id"])
    assert len(refunds_sent(recorder)) == sent_before + 1, "only the latest try, sent again; no fresh refund"
    with acting.db.session() as s:
        assert s.get(Order, order_id).amount_refunded == 1000
        assert s.scalar(select(ActionAttempt.stripe_id)) == "re_seen"


def test_a_confirmation_opened_before_an_update_is_refused_plainly(acting, recorder):
    _, form, confirm = start_refund_that_stripe_never_answers(acting, recorder)
    old = {**confirm, "private_metadata": '{"u": null, "s": ["order", 1], "d": {"order": 1, "seen": 0}}'}
    acting.slack.replace_view(form["id"], old)
    sent = len(recorder.requests)

    acting.person.submit(old)

    assert "opened before the bot was updated" in result_text(acting, form["id"])
    assert len(recorder.requests) == sent


def test_a_refund_form_with_metadata_not_ours_is_answered_not_a_server_error(acting, recorder):
    with acting.db.session() as s:
        order_id = make.order(s, make.customer(s), 5000, stripe_payment_intent_id="pi_9").id
    card = acting.person.command("jane doe")
    acting.person.click(card, f"open_order-{order_id}")
    acting.person.click(acting.slack.message(card.ts), f"refund_order-{order_id}")
    form = acting.slack.latest_view()

    answer = acting.person.submit({**form, "private_metadata": "[]"}, {"amount": "1.00"})

    assert answer["response_action"] == "update" and "can no longer be used" in str(answer["view"])


def test_a_plan_set_to_cancel_at_period_end_moved_back_to_active_undoes_the_cancel(acting, recorder):
    plan_id, record = open_plan(acting, cancel_at_period_end=True)
    recorder.respond(subscription_body("sub_123", cancel_at_period_end=False, pause_collection=None))

    acting.person.click(record, f"change_plan_status-{plan_id}")
    form = acting.slack.latest_view()
    chosen = next(b for b in form["blocks"] if b.get("block_id") == "status")["element"]["initial_option"]
    assert chosen["value"] == "canceled_period_end", "the form starts from the plan's status"
    acting.person.submit(form, {"status": "active"})

    assert "Set Guitar course" in result_text(acting, form["id"]) and "back to active" in result_text(
        acting, form["id"]
    )
    assert recorder.last.params == {"cancel_at_period_end": "false", "pause_collection": ""}
    with acting.db.session() as s:
        plan = s.get(Recurring, plan_id)
        assert (plan.status, plan.cancel_at_period_end, plan.payments_paused) == ("active", False, False)


def test_choosing_the_status_a_plan_already_has_changes_nothing_and_says_so(acting, recorder):
    plan_id, record = open_plan(acting)

    acting.person.click(record, f"change_plan_status-{plan_id}")
    form = acting.slack.latest_view()
    acting.person.submit(form, {"status": "active"})

    assert "is already active: nothing was changed" in result_text(acting, form["id"])
    assert recorder.requests == []


def test_a_change_asked_again_after_the_state_came_back_is_made_again(acting, recorder):
    """Pause, resume, pause, resume: the record's state repeats, but each request is a new one."""
    plan_id, record = open_plan(acting)
    paused = subscription_body("sub_123", pause_collection={"behavior": "void", "resumes_at": None})
    for _ in range(2):
        recorder.respond(paused)
        acting.person.click(acting.slack.message(record.ts), f"change_plan_status-{plan_id}")
        form = acting.slack.latest_view()
        acting.person.submit(form, {"status": "paused"})
        assert "Paused payments" in result_text(acting, form["id"])
        recorder.respond(subscription_body("sub_123"))
        acting.person.click(acting.slack.message(record.ts), f"resume_payments-{plan_id}")
        # The button, not the words: History keeps the earlier round's "resumed payments".
        acting.slack.wait_for(lambda: "Pause payments" in buttons(acting.slack.message(record.ts)))

    assert [
        r.params.get("pause_collection[behavior]", r.params.get("pause_collection"))
        for r in recorder.requests
    ] == [
        "void",
        "",
        "void",
        "",
    ]
    with acting.db.session() as s:
        assert s.get(Recurring, plan_id).status == "active"
