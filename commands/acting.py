"""The last step of every action: Slack was answered at once with a "working" view; this runs in the lazy listener,
asks bot/ to act, then updates the record the person was looking at and puts the outcome in the modal."""

from __future__ import annotations

import logging
from collections.abc import Callable

from slack_bolt.context.respond import Respond
from slack_sdk import WebClient

from blocks import modals
from blocks.message import Message
from bot.actions.outcomes import Done, Failed, Invalid, NotAllowed, Pending
from bot.faults import DatabaseUnavailable
from bot.records import RecordNotFound, Records
from bot.viewmodels import Notice
from commands.forms import Form, StaleForm
from commands.records import render_record


def notice_of(actor: str, outcome: Done | Pending) -> Notice:
    return Notice(actor, outcome.summary, pending=isinstance(outcome, Pending))


def act_and_tell(
    title: str,
    act: Callable[[Form, str], Done | Pending],
    *,
    body: dict,
    view: dict,
    client: WebClient,
    records: Records,
    logger: logging.Logger,
) -> None:
    """Do `act(form, actor)` for the modal `view` submitted, and tell: the record, then the modal."""
    actor = body["user"]["id"]
    try:
        form = Form.decode(view["private_metadata"])
        outcome = act(form, actor)
    except Exception as error:  # every failure becomes the modal's answer
        client.views_update(view_id=view["id"], view=modals.failed(title, failure_message(error, logger)))
        return
    if form.response_url:  # the record first: once the modal says done, everything is
        kind, record_id = outcome.record
        try:
            message = render_record(records, kind, record_id, form.back, notice=notice_of(actor, outcome))
            Respond(response_url=form.response_url)(
                replace_original=form.in_place,
                response_type="ephemeral",
                text=message.text,
                blocks=message.blocks,
            )
        except Exception:  # the action's outcome stands; the record catches up when it is opened again
            logger.exception("could not update the record after %s", title)
    if isinstance(outcome, Pending):
        client.views_update(view_id=view["id"], view=modals.pending(title, outcome.summary, outcome.why))
    else:
        client.views_update(view_id=view["id"], view=modals.result(title, _sentence(outcome.summary)))


def _sentence(clause: str) -> str:
    return clause[:1].upper() + clause[1:] + "."


def failure_message(error: Exception, logger: logging.Logger) -> Message:
    """What a person is told when asking for an action ended in `error`. Only errors raised before Stripe was
    asked reach here: after that the ledger answers Done or Pending."""
    if isinstance(error, NotAllowed):
        return modals.not_allowed(error.admins)
    if isinstance(error, StaleForm):
        return modals.failure(
            "This form was opened before the bot was updated and can no longer be used, so nothing was done. "
            "Close it and start again from the record."
        )
    if isinstance(error, Invalid | Failed):
        return modals.failure(error.message)
    if isinstance(error, DatabaseUnavailable):
        return modals.failure(
            "The customer records database is not answering, so nothing was done. Try again in a minute."
        )
    if isinstance(error, RecordNotFound):
        return modals.failure(f"That {error.what} is no longer in the customer records, so nothing was done.")
    logger.exception("action failed")
    return modals.failure("Something went wrong on our side and nothing was done. Try again in a minute.")
