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


def ephemeral(message: Message) -> dict:
    return {"response_type": "ephemeral", "text": message.text, "blocks": message.blocks}


@contextlib.contextmanager
def telling_the_user(ack: Ack, respond: Respond, logger: logging.Logger) -> Iterator[None]:
    """Turn any failure inside the block into a message for the person who asked; never a stack trace."""
    try:
        yield
    except DatabaseUnavailable as down:  # an outage, not a bug: one line per request, no traceback
        logger.warning("database unavailable: %s", down)
        _reply(ack, respond, notices.database_unavailable())
    except BadValue:
        _reply(ack, respond, notices.bad_value())
    except RecordNotFound as gone:
        _reply(ack, respond, notices.record_gone(gone.what))
    except NotAllowed as refused:
        _reply(ack, respond, modals.not_allowed(refused.admins))
    except (Invalid, Failed) as failed:
        _reply(ack, respond, modals.failure(failed.message))
    except Exception:
        reference = uuid.uuid4().hex[:8]
        logger.exception("unexpected error, reference %s", reference)
        _reply(ack, respond, notices.unexpected_error(reference))


def _reply(ack: Ack, respond: Respond, message: Message) -> None:
    if ack.response is None:
        ack(**ephemeral(message))
    else:
        respond(replace_original=False, **ephemeral(message))
