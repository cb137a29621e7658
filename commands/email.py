"""Change email from Slack: the button on a customer card, the form, and the change (our record and Stripe)."""

from __future__ import annotations

import logging

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from blocks import ids, modals
from bot.actions.email import EmailChanges, email_problems
from bot.actions.notes import note_problems
from bot.records import Records
from bot.viewmodels import CardState
from commands.acting import act_and_tell, answer_working
from commands.forms import Form, text
from commands.replies import telling_the_user

TITLE = "Change email"


def open_change_email(
    ack: Ack,
    body: dict,
    action: dict,
    client: WebClient,
    respond: Respond,
    logger: logging.Logger,
    email: EmailChanges,
) -> None:
    ack()
    with telling_the_user(ack, respond, logger):
        back = CardState.decode(action.get("value", ""))
        offered = email.form(body["user"]["id"], back.customer_id)
        form = Form.opened_from(body, ("customer", back.customer_id), back)
        client.views_open(
            trigger_id=body["trigger_id"], view=modals.change_email_form(offered, form.encode())
        )


def start_change_email(ack: Ack, view: dict, logger: logging.Logger) -> None:
    values = view["state"]["values"]
    problems = email_problems(text(values, modals.EMAIL)) | note_problems(text(values, modals.NOTE))
    if problems:
        ack(response_action="errors", errors=problems)
    else:
        answer_working(ack, view, TITLE, "Changing the email…", logger)


def change_email(
    body: dict, view: dict, client: WebClient, logger: logging.Logger, email: EmailChanges, records: Records
) -> None:
    values = view["state"]["values"]
    new_email, note = text(values, modals.EMAIL), text(values, modals.NOTE) or None
    if email_problems(new_email) or note_problems(note):
        return  # the person was shown the problems and the form stays open
    act_and_tell(
        TITLE,
        lambda form, actor: email.change(actor, form.shown[1], new_email, note),
        body=body,
        view=view,
        client=client,
        records=records,
        logger=logger,
    )


def register(app: App) -> None:
    app.action(ids.CHANGE_EMAIL)(open_change_email)
    app.view(modals.CHANGE_EMAIL_FORM)(ack=start_change_email, lazy=[change_email])
