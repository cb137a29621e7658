"""The last step of every action: Slack was answered at once with a "working" view; this runs in the lazy listener,
asks bot/ to act, then updates the record the person was looking at and puts the outcome in the modal."""

from __future__ import annotations

import logging
from collections.abc import Callable

from slack_bolt import Ack
from slack_bolt.context.respond import Respond
from slack_sdk import WebClient

from blocks import modals
from bot.actions.outcomes import Done, Pending
from bot.records import Records
from bot.viewmodels import Notice
from commands.forms import Form, StaleForm
from commands.records import render_record
from commands.replies import failure_message


def notice_of(actor: str, outcome: Done | Pending) -> Notice:
    said = f"{outcome.summary}. {outcome.left.rstrip('.')}" if outcome.left else outcome.summary
    return Notice(actor, said, pending=isinstance(outcome, Pending))


def answer_working(ack: Ack, view: dict, title: str, working: str, logger: logging.Logger) -> None:
    """Answer a confirmed modal at once with a "working" view, or, for a form this bot cannot read, with why.
    The lazy listener then says the same thing, so whichever of the two views reaches Slack last, the modal
    does not stay on "working" for a form that was never acted on."""
    try:
        Form.decode(view["private_metadata"])
    except StaleForm as stale:
        ack(response_action="update", view=modals.failed(title, failure_message(stale, logger)))
        return
    ack(response_action="update", view=modals.working(title, working))


def act_and_tell(
    title: str,
    act: Callable[[Form, str], Done | Pending],
    *,
    body: dict,
    view: dict,
    client: WebClient,
    records: Records,
    logger: logging.Logger,
    retry: tuple[str, Callable[[Form], str]] | None = None,
) -> None:
    """Do `act(form, actor)` for the modal `view` submitted, and tell: the record, then the modal. Whatever
    happens, the modal leaves its "working" view: with the outcome, or with why it cannot be shown. `retry`: the
    callback_id and the metadata (from the form) of a view that asks for the very same request again, offered
    when part of it was left undone."""
    actor = body["user"]["id"]
    try:
        form = Form.decode(view["private_metadata"])
        outcome = act(form, actor)
    except Exception as error:  # every failure becomes the modal's answer
        refused = error  # the name `error` is unbound when the except block ends
        _show(client, view, title, lambda: modals.failed(title, failure_message(refused, logger)), logger)
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
    again = (retry[0], retry[1](form)) if retry and outcome.left else None
    if isinstance(outcome, Pending):
        _show(
            client,
            view,
            title,
            lambda: modals.pending(title, outcome.summary, outcome.why, outcome.left, again),
            logger,
        )
    else:
        _show(
            client,
            view,
            title,
            lambda: modals.result(title, _sentence(outcome.summary), outcome.left, again),
            logger,
        )


def _show(
    client: WebClient, view: dict, title: str, render: Callable[[], dict], logger: logging.Logger
) -> None:
    """Put `render()` in the modal; if it cannot be drawn, a view that says so rather than "working" forever."""
    try:
        shown = render()
    except Exception:
        logger.exception("could not draw the answer to %s", title)
        shown = modals.unshown(title)
    try:
        client.views_update(view_id=view["id"], view=shown)
    except Exception:  # closed by the person, expired, or Slack unreachable: the record still tells
        logger.exception("could not show the answer to %s", title)


def _sentence(clause: str) -> str:
    return clause[:1].upper() + clause[1:] + "."
