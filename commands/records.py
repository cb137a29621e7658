"""Buttons on record cards: open a customer, toggle Active / All, page, open a record, go back, share, close."""

from __future__ import annotations

import logging

from slack_bolt import Ack, App, Respond

from blocks import customer as customer_blocks
from blocks import ids
from blocks import records as record_blocks
from blocks.message import Message
from bot.records import Records
from bot.viewmodels import CardState, Notice, parse_history_value, parse_record_value
from commands.replies import ephemeral, telling_the_user


def render_record(
    records: Records,
    kind: str,
    record_id: int,
    back: CardState,
    *,
    notice: Notice | None = None,
    history_page: int = 0,
) -> Message:
    """A customer card, a subscription or plan record, or an order record, as it is now (the last two with a page
    of their History: the newest, unless `history_page` says another)."""
    shown = {"history_shown": record_blocks.HISTORY_PAGE_SIZE, "history_page": history_page}
    if kind == "order":
        view = records.order_record(record_id, back, payments_shown=record_blocks.PAYMENTS_SHOWN, **shown)
        return record_blocks.order_record(view, notice=notice)
    if kind == "recurring":
        view = records.recurring_record(record_id, back, payments_shown=record_blocks.PAYMENTS_SHOWN, **shown)
        return record_blocks.recurring_record(view, notice=notice)
    state = back if back.customer_id == record_id else CardState(record_id)
    return customer_blocks.customer_card(customer_card(records, state), notice=notice)


def render_customer_history(
    records: Records, back: CardState, *, page: int = 0, notice: Notice | None = None
) -> Message:
    view = records.customer_history(back, page=page, page_size=record_blocks.HISTORY_PAGE_SIZE)
    return record_blocks.customer_history(view, notice=notice)


def customer_card(records: Records, state: CardState):
    return records.customer_card(
        state,
        recurring_page_size=customer_blocks.RECURRING_PAGE_SIZE,
        orders_page_size=customer_blocks.ORDERS_PAGE_SIZE,
    )


def show_card(
    ack: Ack, body: dict, action: dict, respond: Respond, logger: logging.Logger, records: Records
) -> None:
    ack()
    with telling_the_user(ack, respond, logger):
        state = CardState.decode(action.get("value", ""))
        show(respond, body, render_record(records, "customer", state.customer_id, state))


def show_recurring(
    ack: Ack, body: dict, action: dict, respond: Respond, logger: logging.Logger, records: Records
) -> None:
    ack()
    with telling_the_user(ack, respond, logger):
        recurring_id, back = parse_record_value(action.get("value", ""))
        show(respond, body, render_record(records, "recurring", recurring_id, back))


def show_order(
    ack: Ack, body: dict, action: dict, respond: Respond, logger: logging.Logger, records: Records
) -> None:
    ack()
    with telling_the_user(ack, respond, logger):
        order_id, back = parse_record_value(action.get("value", ""))
        show(respond, body, render_record(records, "order", order_id, back))


def show_history(
    ack: Ack, body: dict, action: dict, respond: Respond, logger: logging.Logger, records: Records
) -> None:
    """History on the customer card, and Newer / Older in any record's History."""
    ack()
    with telling_the_user(ack, respond, logger):
        (kind, record_id), page, back = parse_history_value(action.get("value", ""))
        if kind == "customer":
            back = back if back.customer_id == record_id else CardState(record_id)
            show(respond, body, render_customer_history(records, back, page=page))
        else:
            show(respond, body, render_record(records, kind, record_id, back, history_page=page))


def share_card(
    ack: Ack, body: dict, action: dict, respond: Respond, logger: logging.Logger, records: Records
) -> None:
    ack()
    with telling_the_user(ack, respond, logger):
        customer_id = CardState.decode(action.get("value", "")).customer_id
        message = customer_blocks.customer_card(
            customer_card(records, CardState(customer_id)), shared_by=body["user"]["id"]
        )
        respond(response_type="in_channel", replace_original=False, text=message.text, blocks=message.blocks)


def close(ack: Ack, respond: Respond) -> None:
    ack()
    respond(delete_original=True)


def show(respond: Respond, body: dict, message: Message) -> None:
    """Replace the person's own (ephemeral) message in place; from a shared message, answer them privately."""
    if body.get("container", {}).get("is_ephemeral"):
        respond(replace_original=True, text=message.text, blocks=message.blocks)
    else:
        respond(replace_original=False, **ephemeral(message))


def register(app: App) -> None:
    app.action(ids.SHOW_CARD)(show_card)
    app.action(ids.SHOW_RECURRING)(show_recurring)
    app.action(ids.SHOW_ORDER)(show_order)
    app.action(ids.SHOW_HISTORY_PAGE)(show_history)
    app.action(ids.SHARE_CARD)(share_card)
    app.action(ids.CLOSE)(close)
