"""Add note, on every record: the button opens a form with a note field; saving writes the note and the record
(or the customer's History) updates in place, saying who added it. Anyone who can see the record may add one."""

from __future__ import annotations

import logging

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from blocks import ids, modals
from bot.actions.notes import Notes, note_problems
from bot.actions.outcomes import Invalid
from bot.records import Records
from bot.viewmodels import Notice, parse_history_value
from commands.forms import Form, text
from commands.records import render_customer_history, render_record
from commands.replies import failure_message, telling_the_user

TITLE = "Add note"


def open_note_form(
    ack: Ack, body: dict, action: dict, client: WebClient, respond: Respond, logger: logging.Logger
) -> None:
    ack()
    with telling_the_user(ack, respond, logger):
        target, _, back = parse_history_value(action.get("value", ""))
        # From a customer's History view, the note is shown there afterwards; from anywhere else, the record.
        on_history = str(action.get("action_id", "")).startswith(ids.per_item(ids.ADD_NOTE, ids.ON_HISTORY))
        form = Form.opened_from(body, target, back, history=on_history)
        client.views_open(trigger_id=body["trigger_id"], view=modals.note_form(form.encode()))


def save_note(
    ack: Ack,
    body: dict,
    view: dict,
    client: WebClient,
    logger: logging.Logger,
    notes: Notes,
    records: Records,
) -> None:
    """Write the note as Slack waits (milliseconds): field errors keep the form open; saved, it closes."""
    note = text(view["state"]["values"], modals.NOTE)
    problems = note_problems(note, required=True)
    if problems:
        ack(response_action="errors", errors=problems)
        return
    actor = body["user"]["id"]
    try:
        form = Form.decode(view["private_metadata"])
        done = notes.add(actor, form.shown, note)
    except Invalid as invalid:
        ack(response_action="errors", errors=invalid.problems or {modals.NOTE: invalid.message})
        return
    except Exception as error:  # a stale form, an outage: every other failure becomes the modal's answer
        ack(response_action="update", view=modals.failed(TITLE, failure_message(error, logger)))
        return
    ack(response_action="clear")
    if not form.response_url:
        return
    notice = Notice(actor, done.summary)
    kind, record_id = form.shown
    try:
        if kind == "customer" and form.data.get("history"):
            message = render_customer_history(records, form.back, notice=notice)
        else:
            message = render_record(records, kind, record_id, form.back, notice=notice)
        Respond(response_url=form.response_url)(
            replace_original=form.in_place,
            response_type="ephemeral",
            text=message.text,
            blocks=message.blocks,
        )
    except Exception:  # the note is saved; the record shows it when it is opened again
        logger.exception("could not update the record after adding a note")


def register(app: App) -> None:
    app.action(ids.pattern(ids.ADD_NOTE))(open_note_form)
    app.view(modals.NOTE_FORM)(save_note)
