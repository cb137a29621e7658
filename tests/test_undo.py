"""Undo cancel and Undo pause, driven through Slack against the recording Stripe stand-in (localstripe has no
`pause_collection`): the button only when there is something to undo, the confirmation's words and dates, Stripe's
exact request, the record after, History with the note, a double submit acting once, and a non-admin refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from slack_sdk.models.views import View
from sqlalchemy import func, select

from bot.models import ActionAttempt, AuditEvent, Recurring
from devkit.local_slack import SlackPerson, wsgi_transport
from runtime.app import create_app
from runtime.web import WebApp
from tests import factories as make
from tests.conftest import SIGNING_SECRET, Harness, settings_for
from tests.slack_text import buttons, text_of
from tests.stripe_support import RecordingHTTPClient, recording_gateway, subscription_body
from tests.test_history import history_of

ADMIN = "U0ADMIN01"
PERIOD_END = datetime(2026, 2, 14, 12, tzinfo=UTC)
PERIOD_END_TOKEN = f"<!date^{int(PERIOD_END.timestamp())}^{{date_short}}|Feb 14, 2026>"
PAUSED_UNTIL = datetime(2026, 3, 1, tzinfo=UTC)
PAUSED_UNTIL_TOKEN = f"<!date^{int(PAUSED_UNTIL.timestamp())}^{{date_short}}|Mar 1, 2026>"


@pytest.fixture
def recorder() -> RecordingHTTPClient:
    return RecordingHTTPClient(subscription_body("sub_123"))


@pytest.fixture
def acting(db, slack, recorder) -> Harness:
    settings = settings_for(db, slack, payment_admins=frozenset({ADMIN}))
    web = WebApp(create_app(settings, db, gateway=recording_gateway(recorder)), db)
    return Harness(
        settings, db, slack, web, SlackPerson(slack, wsgi_transport(web), SIGNING_SECRET, user_id=ADMIN)
    )


def open_record(acting: Harness, kind: str = "subscription", person: SlackPerson | None = None, **fields):
    """A subscription (or plan) of Jane's linked to sub_123, opened from her card: (its id, the record)."""
    person = person or acting.person
    with acting.db.session() as s:
        jane = make.customer(s, stripe_customer_id="cus_123")
        values = {"stripe_subscription_id": "sub_123", "next_bill_at": PERIOD_END, **fields}
        values.setdefault("current_period_end", PERIOD_END)
        if kind == "subscription":
            row = make.subscription(s, jane, **values)
        else:
            row = make.payment_plan(s, jane, **values)
        recurring_id = row.id
    card = person.command("jane doe")
    person.click(card, f"open_{kind}-{recurring_id}")
    return recurring_id, acting.slack.message(card.ts)


def result_text(acting: Harness, view_id: str) -> str:
    acting.slack.wait_for(lambda: acting.slack.views[view_id].get("callback_id") == "result")
    return acting.slack.views[view_id]["blocks"][0]["text"]["text"]


def sections(view: dict) -> list[str]:
    return [b["text"]["text"] for b in view["blocks"] if b.get("type") == "section"]


def attempt_key(acting: Harness, action: str) -> str:
    with acting.db.session() as s:
        return s.scalar(select(ActionAttempt.stripe_idempotency_key).where(ActionAttempt.action == action))


# Undo cancel --------------------------------------------------------------------------------------------------


def test_the_buttons_appear_only_when_there_is_something_to_undo(acting):
    _, plain = open_record(acting)
    assert "Undo cancel" not in buttons(plain) and "Undo pause" not in buttons(plain)

    with acting.db.session() as s:
        row = s.scalar(select(Recurring))
        row.cancel_at_period_end, row.cancel_at = True, PERIOD_END
        row.status, row.payments_paused, row.paused_until = "paused", True, PAUSED_UNTIL
    again = acting.person.command("jane doe")
    acting.person.click(again, f"open_subscription-{row.id}")
    both = acting.slack.message(again.ts)
    assert {"Undo cancel", "Undo pause", "Resume payments"} <= set(buttons(both))


def test_undo_a_cancel_at_the_period_end_with_a_note(acting, recorder):
    sub_id, record = open_record(acting, cancel_at_period_end=True, cancel_at=PERIOD_END)
    assert "Undo cancel" in buttons(record)

    acting.person.click(record, f"undo_cancel-{sub_id}")
    form = acting.slack.latest_view()
    View(**{k: v for k, v in form.items() if k != "id"}).validate_json()
    assert (form["callback_id"], form["submit"]["text"], form["close"]["text"]) == (
        "undo_cancel_form",
        "Undo cancel",
        "Keep cancel",
    )
    assert sections(form)[1] == (
        f"The cancel scheduled for the end of the period ({PERIOD_END_TOKEN}) is taken back: the subscription "
        f"goes on, and Stripe bills Jane Doe $29.00 next on {PERIOD_END_TOKEN}, as scheduled."
    )
    assert recorder.requests == [], "opening the confirmation asks nothing of Stripe"

    acting.person.submit(form, {"note": "Changed her mind <!here>"})

    assert "Undid the scheduled cancel of Pro Membership (Jane Doe)" in result_text(acting, form["id"])
    (request,) = recorder.requests
    assert (request.method, request.path, request.params) == (
        "POST",
        "/v1/subscriptions/sub_123",
        {"cancel_at_period_end": "false"},
    )
    key = request.header("Idempotency-Key")
    assert key == attempt_key(acting, "undo_cancel") and key.startswith("crb-")
    with acting.db.session() as s:
        row = s.get(Recurring, sub_id)
        assert (row.status, row.cancel_at_period_end, row.cancel_at) == ("active", False, None)
        event = s.scalar(select(AuditEvent).where(AuditEvent.action == "undo_cancel"))
        assert (event.actor, event.outcome, event.details["note"]) == (
            ADMIN,
            "succeeded",
            "Changed her mind <!here>",
        )
    updated = acting.slack.message(record.ts)
    assert "Undo cancel" not in buttons(updated) and "Cancel subscription" in buttons(updated)
    history = history_of(updated)
    assert "undid the scheduled cancel of Pro Membership (Jane Doe)" in history
    assert "“Changed her mind &lt;!here&gt;”" in history


def test_undo_a_cancel_on_a_date_unsets_cancel_at(acting, recorder):
    on = datetime(2026, 1, 31, tzinfo=UTC)
    plan_id, record = open_record(acting, "payment_plan", cancel_at=on)

    acting.person.click(record, f"undo_cancel-{plan_id}")
    form = acting.slack.latest_view()
    token = f"<!date^{int(on.timestamp())}^{{date_short}}|Jan 31, 2026>"
    assert sections(form)[1].startswith(
        f"The cancel scheduled for {token} is taken back: the payment plan goes on"
    )
    acting.person.submit(form)

    assert "Undid the scheduled cancel" in result_text(acting, form["id"])
    assert [(r.path, r.params) for r in recorder.requests] == [
        ("/v1/subscriptions/sub_123", {"cancel_at": ""})
    ]
    with acting.db.session() as s:
        assert s.get(Recurring, plan_id).cancel_at is None


def test_a_double_submit_undoes_the_cancel_once(acting, recorder):
    sub_id, record = open_record(acting, cancel_at_period_end=True)
    acting.person.click(record, f"undo_cancel-{sub_id}")
    form = acting.slack.latest_view()

    acting.person.submit(form)
    result_text(acting, form["id"])
    acting.slack.replace_view(form["id"], form)  # the same confirmation submitted again (a double click)
    acting.person.submit(form)

    assert "already done" in result_text(acting, form["id"])
    assert len(recorder.requests) == 1
    with acting.db.session() as s:
        assert s.scalar(select(func.count()).select_from(ActionAttempt)) == 1


def test_a_non_admin_is_refused_and_nothing_opens(acting, recorder):
    outsider = acting.someone_else("U0SUPPORT9")
    sub_id, record = open_record(acting, person=outsider, cancel_at_period_end=True)
    opened = len(acting.slack.opened)

    outsider.click(record, f"undo_cancel-{sub_id}")

    assert "Only payment admins" in text_of(outsider.visible()[-1])
    assert len(acting.slack.opened) == opened and recorder.requests == []
    with acting.db.session() as s:
        assert s.get(Recurring, sub_id).cancel_at_period_end is True


# Undo pause ---------------------------------------------------------------------------------------------------


def paused(**fields) -> dict:
    return {"status": "paused", "payments_paused": True, "paused_until": PAUSED_UNTIL, **fields}


def test_undo_a_pause_that_voided_no_bill(acting, recorder):
    plan_id, record = open_record(acting, "payment_plan", **paused())
    assert {"Undo pause", "Resume payments"} <= set(buttons(record))

    acting.person.click(record, f"undo_pause-{plan_id}")
    form = acting.slack.latest_view()
    View(**{k: v for k, v in form.items() if k != "id"}).validate_json()
    assert (form["callback_id"], form["submit"]["text"], form["close"]["text"]) == (
        "undo_pause_form",
        "Undo pause",
        "Keep pause",
    )
    assert sections(form)[1] == (
        f"The pause until {PAUSED_UNTIL_TOKEN} is taken back before it voided any bill: Stripe bills Jane Doe "
        f"$50.00 next on {PERIOD_END_TOKEN}, as scheduled."
    )

    acting.person.submit(form, {"note": "Paused by mistake"})

    assert "Undid the pause of Guitar course, 6 instalments (Jane Doe)" in result_text(acting, form["id"])
    (request,) = recorder.requests
    assert (request.method, request.path, request.params) == (
        "POST",
        "/v1/subscriptions/sub_123",
        {"pause_collection": ""},
    )
    assert request.header("Idempotency-Key") == attempt_key(acting, "undo_pause")
    with acting.db.session() as s:
        row = s.get(Recurring, plan_id)
        assert (row.status, row.payments_paused, row.paused_until) == ("active", False, None)
    updated = acting.slack.message(record.ts)
    assert "Undo pause" not in buttons(updated) and "Pause payments" in buttons(updated)
    assert (
        "undid the pause of Guitar course, 6 instalments (Jane Doe): it bills as scheduled · “Paused by mistake”"
        in history_of(updated)
    )


def test_a_pause_that_voided_a_bill_is_resumed_not_undone(acting, recorder):
    sub_id, older = open_record(acting, **paused())
    assert "Undo pause" in buttons(older)
    with acting.db.session() as s:
        make.payment(s, s.get(Recurring, sub_id), "void", due_at=PERIOD_END, stripe_invoice_id="in_void")

    # The button on the message shown before the bill was voided: told why, and nothing is sent.
    acting.person.click(older, f"undo_pause-{sub_id}")
    assert "already voided a bill" in text_of(acting.person.visible()[-1])
    assert recorder.requests == []

    card = acting.person.command("jane doe")
    acting.person.click(card, f"open_subscription-{sub_id}")
    record = acting.slack.message(card.ts)
    assert "Undo pause" not in buttons(record) and "Resume payments" in buttons(record)


def test_a_double_submit_undoes_the_pause_once(acting, recorder):
    sub_id, record = open_record(acting, **paused(paused_until=None))
    acting.person.click(record, f"undo_pause-{sub_id}")
    form = acting.slack.latest_view()
    assert "The pause until resumed is taken back" in sections(form)[1]

    acting.person.submit(form)
    result_text(acting, form["id"])
    acting.slack.replace_view(form["id"], form)
    acting.person.submit(form)

    assert "already done" in result_text(acting, form["id"])
    assert [r.params for r in recorder.requests] == [{"pause_collection": ""}]


def test_a_non_admin_cannot_undo_a_pause(acting, recorder):
    outsider = acting.someone_else("U0SUPPORT9")
    sub_id, record = open_record(acting, person=outsider, **paused())

    outsider.click(record, f"undo_pause-{sub_id}")

    assert "Only payment admins" in text_of(outsider.visible()[-1])
    assert recorder.requests == []
    with acting.db.session() as s:
        assert s.get(Recurring, sub_id).payments_paused is True
