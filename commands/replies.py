"""Answering a Slack request: once, and with a plain message when something fails."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator

from slack_bolt import Ack, Respond

from blocks import modals, notices
from blocks.message import Message
from bot.actions.outcomes import Failed, Invalid, NotAllowed
from bot.faults import DatabaseUnavailable
from bot.records import RecordNotFound
from bot.viewmodels import BadValue
from commands.forms import StaleForm


def ephemeral(message: Message) -> dict:
    return {"response_type": "ephemeral", "text": message.text, "blocks": message.blocks}


@contextlib.contextmanager
def telling_the_user(ack: Ack, respond: Respond, logger: logging.Logger) -> Iterator[None]:
    """Turn any failure inside the block into a message for the person who asked; never a stack trace."""
    try:
        yield
    except Exception as error:
        _reply(ack, respond, failure_message(error, logger))


def failure_message(error: Exception, logger: logging.Logger) -> Message:
    """What a person is told when what they asked for ended in `error`, before anything was changed (after
    Stripe was asked, the ledger answers Done or Pending instead). The one place failures are worded."""
    if isinstance(error, DatabaseUnavailable):  # an outage, not a bug: one line, no traceback
        logger.warning("database unavailable: %s", error)
        return notices.database_unavailable()
    if isinstance(error, BadValue):
        return notices.bad_value()
    if isinstance(error, StaleForm):
        return modals.failure(
            "This form was opened before the bot was updated and can no longer be used, so nothing was done. "
            "Close it and start again from the record."
        )
    if isinstance(error, RecordNotFound):
        return notices.record_gone(error.what)
    if isinstance(error, NotAllowed):
        return modals.not_allowed(error.admins)
    if isinstance(error, Invalid | Failed):
        return modals.failure(error.message)
    reference = uuid.uuid4().hex[:8]
    logger.error("unexpected error, reference %s", reference, exc_info=error)
    return notices.unexpected_error(reference)


def _reply(ack: Ack, respond: Respond, message: Message) -> None:
    if ack.response is None:
        ack(**ephemeral(message))
    else:
        respond(replace_original=False, **ephemeral(message))
