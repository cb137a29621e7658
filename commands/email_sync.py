"""The "Push our email" button on the email-sync report.

The click is answered at once; a lazy listener then pushes (Stripe and CRMs can take seconds, retries more),
redraws the report without that customer, with who did what on top, and tells the person who clicked.
Anything that goes wrong (not a payment admin, Stripe or a CRM refusing) is told to that person only, and the
report stays as it was.
"""

from __future__ import annotations

import logging

from slack_bolt import Ack, App, Respond

from blocks import ids
from blocks.email_sync import PUSH_EMAIL, parse_push_value, pushed_message, report_after_push
from bot.actions.email import EmailChanges
from bot.email_sync import old_emails
from bot.viewmodels import Notice
from commands.replies import ephemeral, telling_the_user


def answer_push(ack: Ack) -> None:
    ack()


def push_email(
    ack: Ack, body: dict, action: dict, respond: Respond, logger: logging.Logger, email: EmailChanges
) -> None:
    # Slack was answered by answer_push. This listener's own Ack sends nothing; calling it tells
    # telling_the_user to reply through the response URL, privately, as it does after any ack.
    ack()
    with telling_the_user(ack, respond, logger):
        shown = parse_push_value(action.get("value", ""))
        actor = body["user"]["id"]
        pushed = Notice(actor, email.push(actor, shown.customer_id, old_emails=old_emails(shown)))
        blocks = (body.get("message") or {}).get("blocks")
        if blocks:
            report = report_after_push(blocks, shown.customer_id, pushed)
            respond(replace_original=True, text=report.text, blocks=report.blocks)
        respond(replace_original=False, **ephemeral(pushed_message(pushed)))


def register(app: App) -> None:
    app.action(ids.pattern(PUSH_EMAIL))(ack=answer_push, lazy=[push_email])
