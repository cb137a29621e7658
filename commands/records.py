"""Buttons on record cards: open a customer, toggle Active / All, page, open a record, go back, share, close."""

from __future__ import annotations

import logging

from slack_bolt import Ack, App, Respond

from blocks import customer as customer_blocks
from blocks import ids
from blocks import records as record_blocks
from blocks.message import Message
from bot import records
from bot.viewmodels import CardState, parse_record_value
from commands import Services
from commands.replies import ephemeral, telling_the_user


def register(app: App, services: Services) -> None:
    def card(state: CardState, shared_by: str | None = None) -> Message:
        with services.db.session() as session:
            view = records.customer_card(
                session,
                state,
                recurring_page_size=customer_blocks.RECURRING_PAGE_SIZE,
                orders_page_size=customer_blocks.ORDERS_PAGE_SIZE,
            )
        return customer_blocks.customer_card(view, shared_by=shared_by)

    @app.action(ids.SHOW_CARD)
    def show_card(ack: Ack, body: dict, action: dict, respond: Respond, logger: logging.Logger) -> None:
        ack()
        with telling_the_user(ack, respond, logger):
            show(respond, body, card(CardState.decode(action["value"])))

    @app.action(ids.SHOW_RECURRING)
    def show_recurring(ack: Ack, body: dict, action: dict, respond: Respond, logger: logging.Logger) -> None:
        ack()
        with telling_the_user(ack, respond, logger):
            recurring_id, back = parse_record_value(action["value"])
            with services.db.session() as session:
                view = records.recurring_record(
                    session, recurring_id, back, payments_shown=record_blocks.PAYMENTS_SHOWN
                )
            show(respond, body, record_blocks.recurring_record(view))

    @app.action(ids.SHOW_ORDER)
    def show_order(ack: Ack, body: dict, action: dict, respond: Respond, logger: logging.Logger) -> None:
        ack()
        with telling_the_user(ack, respond, logger):
            order_id, back = parse_record_value(action["value"])
            with services.db.session() as session:
                view = records.order_record(session, order_id, back)
            show(respond, body, record_blocks.order_record(view))

    @app.action(ids.SHARE_CARD)
    def share_card(ack: Ack, body: dict, action: dict, respond: Respond, logger: logging.Logger) -> None:
        ack()
        with telling_the_user(ack, respond, logger):
            state = CardState(CardState.decode(action["value"]).customer_id)
            message = card(state, shared_by=body["user"]["id"])
            respond(
                response_type="in_channel", replace_original=False, text=message.text, blocks=message.blocks
            )

    @app.action(ids.CLOSE)
    def close(ack: Ack, respond: Respond) -> None:
        ack()
        respond(delete_original=True)


def show(respond: Respond, body: dict, message: Message) -> None:
    """Replace the person's own (ephemeral) message in place; from a shared message, answer them privately."""
    if body.get("container", {}).get("is_ephemeral"):
        respond(replace_original=True, text=message.text, blocks=message.blocks)
    else:
        respond(replace_original=False, **ephemeral(message))
