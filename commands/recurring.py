"""Changing a subscription or payment plan from Slack: Cancel, Pause payments, Resume payments, Undo cancel, Undo
pause, Change next bill date and a plan's Change status, each a button on its record and (but Resume) a form."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from blocks import ids, modals
from bot.actions import recurring as changes
from bot.actions.notes import note_problems
from bot.actions.outcomes import Done, Pending, Problems
from bot.actions.recurring import SubscriptionChanges
from bot.records import Records
from bot.viewmodels import BadValue, RecurringRecord, parse_record_value, parse_seen
from commands.acting import act_and_tell, answer_working, notice_of
from commands.forms import Form, StaleForm, picked_date, selected, text
from commands.records import render_record
from commands.replies import ephemeral, failure_message, telling_the_user

BuildForm = Callable[[RecurringRecord, str], dict]


def _open_form(
    body: dict,
    action: dict,
    client: WebClient,
    subscriptions: SubscriptionChanges,
    change: str,
    build: BuildForm,
) -> None:
    recurring_id, back = parse_record_value(action.get("value", ""))
    record = subscriptions.form(body["user"]["id"], change, recurring_id, back)
    form = Form.opened_from(body, ("recurring", recurring_id), back, id=recurring_id, seen=record.fingerprint)
    client.views_open(trigger_id=body["trigger_id"], view=build(record, form.encode()))


def open_cancel_form(
    ack: Ack,
    body: dict,
    action: dict,
    client: WebClient,
    respond: Respond,
    logger: logging.Logger,
    subscriptions: SubscriptionChanges,
) -> None:
    ack()
    with telling_the_user(ack, respond, logger):
        _open_form(body, action, client, subscriptions, changes.CANCEL, modals.cancel_form)


def open_pause_form(
    ack: Ack,
    body: dict,
    action: dict,
    client: WebClient,
    respond: Respond,
    logger: logging.Logger,
    subscriptions: SubscriptionChanges,
) -> None:
    ack()
    with telling_the_user(ack, respond, logger):
        recurring_id, back = parse_record_value(action.get("value", ""))
        offered = subscriptions.pause_form(body["user"]["id"], recurring_id, back)
        form = Form.opened_from(
            body,
            ("recurring", recurring_id),
            back,
            id=recurring_id,
            seen=offered.record.fingerprint,
            bills=[bill.payment_id for bill in offered.failed_bills],
        )
        view = modals.pause_form(offered, subscriptions.first_day(), form.encode())
        client.views_open(trigger_id=body["trigger_id"], view=view)


def open_bill_date_form(
    ack: Ack,
    body: dict,
    action: dict,
    client: WebClient,
    respond: Respond,
    logger: logging.Logger,
    subscriptions: SubscriptionChanges,
) -> None:
    ack()
    with telling_the_user(ack, respond, logger):
        first_day = subscriptions.first_day()

        def build(record: RecurringRecord, meta: str) -> dict:
            return modals.next_bill_date_form(record, first_day, meta)

        _open_form(body, action, client, subscriptions, changes.MOVE_BILL_DATE, build)


def open_plan_status_form(
    ack: Ack,
    body: dict,
    action: dict,
    client: WebClient,
    respond: Respond,
    logger: logging.Logger,
    subscriptions: SubscriptionChanges,
) -> None:
    ack()
    with telling_the_user(ack, respond, logger):
        _open_form(body, action, client, subscriptions, "change_plan_status", modals.plan_status_form)


def _open_undo_form(
    body: dict,
    action: dict,
    client: WebClient,
    subscriptions: SubscriptionChanges,
    change: str,
    build: BuildForm,
) -> None:
    recurring_id, back = parse_record_value(action.get("value", ""))
    record = subscriptions.undo_form(body["user"]["id"], change, recurring_id, back)
    form = Form.opened_from(body, ("recurring", recurring_id), back, id=recurring_id, seen=record.fingerprint)
    client.views_open(trigger_id=body["trigger_id"], view=build(record, form.encode()))


def open_undo_cancel_form(
    ack: Ack,
    body: dict,
    action: dict,
    client: WebClient,
    respond: Respond,
    logger: logging.Logger,
    subscriptions: SubscriptionChanges,
) -> None:
    ack()
    with telling_the_user(ack, respond, logger):
        _open_undo_form(body, action, client, subscriptions, changes.UNDO_CANCEL, modals.undo_cancel_form)


def open_undo_pause_form(
    ack: Ack,
    body: dict,
    action: dict,
    client: WebClient,
    respond: Respond,
    logger: logging.Logger,
    subscriptions: SubscriptionChanges,
) -> None:
    ack()
    with telling_the_user(ack, respond, logger):
        _open_undo_form(body, action, client, subscriptions, changes.UNDO_PAUSE, modals.undo_pause_form)


# The submits that act: checked as Slack waits (field errors stay in the form), then done in a lazy listener.


def _note(view: dict) -> str | None:
    """The optional note of a change's form (none in a Try again view: its note is kept in the form's memory)."""
    return text(view.get("state", {}).get("values", {}), modals.NOTE) or None


def _working(
    ack: Ack, view: dict, logger: logging.Logger, title: str, working: str, problems: Problems
) -> None:
    problems = {**problems, **note_problems(_note(view))}
    if problems:
        ack(response_action="errors", errors=problems)
    else:
        answer_working(ack, view, title, working, logger)


def start_cancel(ack: Ack, view: dict, logger: logging.Logger) -> None:
    _working(ack, view, logger, "Cancel", "Cancelling…", {})


def cancel(
    body: dict,
    view: dict,
    client: WebClient,
    logger: logging.Logger,
    subscriptions: SubscriptionChanges,
    records: Records,
) -> None:
    at_period_end = selected(view["state"]["values"], modals.WHEN) != "now"
    note = _note(view)
    if note_problems(note):
        return
    act_and_tell(
        "Cancel",
        lambda form, actor: subscriptions.cancel(
            actor, form.data["id"], at_period_end=at_period_end, seen=form.data["seen"], note=note
        ),
        body=body,
        view=view,
        client=client,
        records=records,
        logger=logger,
    )


def _bills_seen(form: Form) -> list[int]:
    """The failed bills the pause form showed (payment ids, kept in its memory)."""
    bills = form.data.get("bills", [])
    if not isinstance(bills, list) or not all(type(b) is int for b in bills):
        raise BadValue("the pause form's bills")
    return bills


def _pause_request(view: dict) -> tuple[date | None, bool, str | None]:
    """(resume date, pausing until a date, what to do with the failed bills) as the pause form was filled in."""
    values = view["state"]["values"]
    until_a_date = selected(values, modals.WHEN) == "until_date"
    resumes_on = picked_date(values, modals.RESUMES_AT)
    return resumes_on, until_a_date, selected(values, modals.FAILED_BILL)


def _pause_problems(view: dict, subscriptions: SubscriptionChanges) -> Problems:
    resumes_on, until_a_date, bill = _pause_request(view)
    try:
        bills = _bills_seen(Form.decode(view["private_metadata"]))
    except (StaleForm, BadValue):
        bills = []  # told when the form is acted on
    return {
        **changes.pause_problems(until_a_date, resumes_on, subscriptions.today()),
        **changes.failed_bill_problems(bill, bills),
        **note_problems(_note(view)),
    }


def start_pause(ack: Ack, view: dict, logger: logging.Logger, subscriptions: SubscriptionChanges) -> None:
    _working(ack, view, logger, "Pause payments", "Pausing payments…", _pause_problems(view, subscriptions))


def pause(
    body: dict,
    view: dict,
    client: WebClient,
    logger: logging.Logger,
    subscriptions: SubscriptionChanges,
    records: Records,
) -> None:
    if _pause_problems(view, subscriptions):
        return  # the person was shown the problems and the form stays open
    resumes_on, until_a_date, bill = _pause_request(view)
    note = _note(view)
    _pause(
        body,
        view,
        client,
        logger,
        subscriptions,
        records,
        lambda _form: (resumes_on if until_a_date else None, bill, note),
    )


# (resume date, the failed bills' choice, the note) of a form
Asked = Callable[[Form], tuple[date | None, str | None, str | None]]


def _pause(
    body: dict,
    view: dict,
    client: WebClient,
    logger: logging.Logger,
    subscriptions: SubscriptionChanges,
    records: Records,
    asked: Asked,
) -> None:
    def act(form: Form, actor: str) -> Done | Pending:
        resumes_on, bill, note = asked(form)
        return subscriptions.pause(
            actor,
            form.data["id"],
            resumes_on=resumes_on,
            seen=form.data["seen"],
            bill=bill,
            bills_seen=_bills_seen(form),
            note=note,
        )

    def again(form: Form) -> str:
        """The very same request, kept for Try again: the pause as asked and the bills' choice."""
        resumes_on, bill, note = asked(form)
        return form.add(
            resumes_on=resumes_on.isoformat() if resumes_on else None, bill=bill, note=note
        ).encode()

    act_and_tell(
        "Pause payments",
        act,
        body=body,
        view=view,
        client=client,
        records=records,
        logger=logger,
        retry=(modals.PAUSE_RETRY, again),
    )


def _asked_again(form: Form) -> tuple[date | None, str | None, str | None]:
    """The request a Try again view keeps (see `again` above)."""
    try:
        resumes_on = form.data["resumes_on"]
        bill = form.data["bill"]
        note = form.data.get("note")
        return (date.fromisoformat(resumes_on) if resumes_on else None), bill, note
    except (KeyError, TypeError, ValueError) as error:
        raise BadValue("the pause to try again") from error


def start_pause_retry(ack: Ack, view: dict, logger: logging.Logger) -> None:
    _working(ack, view, logger, "Pause payments", "Trying again…", {})


def retry_pause(
    body: dict,
    view: dict,
    client: WebClient,
    logger: logging.Logger,
    subscriptions: SubscriptionChanges,
    records: Records,
) -> None:
    """Try again, from the answer to a pause that left part undone: the very same request, so what was done is
    answered as done and only what was not is sent."""
    _pause(body, view, client, logger, subscriptions, records, _asked_again)


def _bill_date_problems(view: dict, subscriptions: SubscriptionChanges) -> Problems:
    return changes.bill_date_problems(
        picked_date(view["state"]["values"], modals.NEXT_BILL_DATE), subscriptions.today()
    )


def start_bill_date(ack: Ack, view: dict, logger: logging.Logger, subscriptions: SubscriptionChanges) -> None:
    _working(
        ack,
        view,
        logger,
        "Next bill date",
        "Moving the next bill date…",
        _bill_date_problems(view, subscriptions),
    )


def move_bill_date(
    body: dict,
    view: dict,
    client: WebClient,
    logger: logging.Logger,
    subscriptions: SubscriptionChanges,
    records: Records,
) -> None:
    if _bill_date_problems(view, subscriptions):
        return
    day = picked_date(view["state"]["values"], modals.NEXT_BILL_DATE)
    assert day is not None  # checked above
    note = _note(view)
    if note_problems(note):
        return
    act_and_tell(
        "Next bill date",
        lambda form, actor: subscriptions.move_next_bill_date(
            actor, form.data["id"], to=day, seen=form.data["seen"], note=note
        ),
        body=body,
        view=view,
        client=client,
        records=records,
        logger=logger,
    )


def start_undo_cancel(ack: Ack, view: dict, logger: logging.Logger) -> None:
    _working(ack, view, logger, "Undo cancel", "Undoing the cancel…", {})


def undo_cancel(
    body: dict,
    view: dict,
    client: WebClient,
    logger: logging.Logger,
    subscriptions: SubscriptionChanges,
    records: Records,
) -> None:
    _undo("Undo cancel", subscriptions.undo_cancel, body, view, client, logger, records)


def start_undo_pause(ack: Ack, view: dict, logger: logging.Logger) -> None:
    _working(ack, view, logger, "Undo pause", "Undoing the pause…", {})


def undo_pause(
    body: dict,
    view: dict,
    client: WebClient,
    logger: logging.Logger,
    subscriptions: SubscriptionChanges,
    records: Records,
) -> None:
    _undo("Undo pause", subscriptions.undo_pause, body, view, client, logger, records)


def _undo(
    title, undo, body: dict, view: dict, client: WebClient, logger: logging.Logger, records: Records
) -> None:
    """Take back a scheduled cancel or pause, as confirmed, with the note written in the dialog."""
    note = _note(view)
    if note_problems(note):
        return
    act_and_tell(
        title,
        lambda form, actor: undo(actor, form.data["id"], seen=form.data["seen"], note=note),
        body=body,
        view=view,
        client=client,
        records=records,
        logger=logger,
    )


def start_plan_status(ack: Ack, view: dict, logger: logging.Logger) -> None:
    status = selected(view["state"]["values"], modals.STATUS)
    _working(ack, view, logger, "Plan status", "Changing the status…", changes.plan_status_problems(status))


def change_plan_status(
    body: dict,
    view: dict,
    client: WebClient,
    logger: logging.Logger,
    subscriptions: SubscriptionChanges,
    records: Records,
) -> None:
    status = selected(view["state"]["values"], modals.STATUS)
    note = _note(view)
    if changes.plan_status_problems(status) or note_problems(note):
        return
    act_and_tell(
        "Plan status",
        lambda form, actor: subscriptions.change_plan_status(
            actor, form.data["id"], status=status or "", seen=form.data["seen"], note=note
        ),
        body=body,
        view=view,
        client=client,
        records=records,
        logger=logger,
    )


# Resume payments: a button that acts at once, on the record as the person saw it.


def answer_resume(ack: Ack) -> None:
    ack()


def resume(
    body: dict,
    action: dict,
    respond: Respond,
    logger: logging.Logger,
    subscriptions: SubscriptionChanges,
    records: Records,
) -> None:
    actor = body["user"]["id"]
    try:
        value, seen = parse_seen(action.get("value", ""))
        recurring_id, back = parse_record_value(value)
        outcome = subscriptions.resume(actor, recurring_id, seen=seen)
        message = render_record(records, "recurring", recurring_id, back, notice=notice_of(actor, outcome))
    except Exception as error:  # told to the person; nothing else to do with it here
        respond(replace_original=False, **ephemeral(failure_message(error, logger)))
        return
    if body.get("container", {}).get("is_ephemeral"):
        respond(replace_original=True, text=message.text, blocks=message.blocks)
    else:
        respond(replace_original=False, **ephemeral(message))


def register(app: App) -> None:
    app.action(ids.pattern(ids.CANCEL_RECURRING))(open_cancel_form)
    app.action(ids.pattern(ids.PAUSE_PAYMENTS))(open_pause_form)
    app.action(ids.pattern(ids.CHANGE_NEXT_BILL_DATE))(open_bill_date_form)
    app.action(ids.pattern(ids.CHANGE_PLAN_STATUS))(open_plan_status_form)
    app.action(ids.pattern(ids.RESUME_PAYMENTS))(ack=answer_resume, lazy=[resume])
    app.view(modals.CANCEL_FORM)(ack=start_cancel, lazy=[cancel])
    app.view(modals.PAUSE_FORM)(ack=start_pause, lazy=[pause])
    app.view(modals.PAUSE_RETRY)(ack=start_pause_retry, lazy=[retry_pause])
    app.view(modals.NEXT_BILL_DATE_FORM)(ack=start_bill_date, lazy=[move_bill_date])
    app.action(ids.pattern(ids.UNDO_CANCEL))(open_undo_cancel_form)
    app.action(ids.pattern(ids.UNDO_PAUSE))(open_undo_pause_form)
    app.view(modals.PLAN_STATUS_FORM)(ack=start_plan_status, lazy=[change_plan_status])
    app.view(modals.UNDO_CANCEL_FORM)(ack=start_undo_cancel, lazy=[undo_cancel])
    app.view(modals.UNDO_PAUSE_FORM)(ack=start_undo_pause, lazy=[undo_pause])
