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


def render_record(
    services: Services, kind: str, record_id: int, back: CardState, *, notice: str | None = None
) -> Message:
    """A customer card, a subscription or plan record, or an order record, as it is now."""
    with services.db.session() as session:
        if kind == "order":
            return record_blocks.order_record(records.order_record(session, record_id, back), notice=notice)
        if kind == "recurring":
            view = records.recurring_record(
                session, record_id, back, payments_shown=record_blocks.PAYMENTS_SHOWN
            )
            return record_blocks.recurring_record(view, notice=notice)
        state = back if back.customer_id == record_id else CardState(record_id)
        card = records.customer_card(
            session,
            state,
            recurring_page_size=customer_blocks.RECURRING_PAGE_SIZE,
            orders_page_size=customer_blocks.ORDERS_PAGE_SIZE,
        )
        return customer_blocks.customer_card(card, notice=notice)


def register(app: App, services: Services) -> None:
    @app.action(ids.SHOW_CARD)
    def show_card(ack: Ack, body: dict, action: dict, respond: Respond, logger: logging.Logger) -> None:
        ack()
        with telling_the_user(ack, respond, logger):
            state = CardState.decode(action["value"])
            show(respond, body, render_record(services, "customer", state.customer_id, state))

    @app.action(ids.SHOW_RECURRING)
    def show_recurring(ack: Ack, body: dict, action: dict, respond: Respond, logger: logging.Logger) -> None:
        ack()
        with telling_the_user(ack, respond, logger):
            recurring_id, back = parse_record_value(action["value"])
            show(respond, body, render_record(services, "recurring", recurring_id, back))

    @app.action(ids.SHOW_ORDER)
    def show_order(ack: Ack, body: dict, action: dict, respond: Respond, logger: logging.Logger) -> None:
        ack()
        with telling_the_user(ack, respond, logger):
            order_id, back = parse_record_value(action["value"])
            show(respond, body, render_record(services, "order", order_id, back))

    @app.action(ids.SHARE_CARD)
    def share_card(ack: Ack, body: dict, action: dict, respond: Respond, logger: logging.Logger) -> None:
        ack()
        with telling_the_user(ack, respond, logger):
            customer_id = CardState.decode(action["value"]).customer_id
            with services.db.session() as session:
                view = records.customer_card(
                    session,
                    CardState(customer_id),
                    recurring_page_size=customer_blocks.RECURRING_PAGE_SIZE,
                    orders_page_size=customer_blocks.ORDERS_PAGE_SIZE,
                )
            message = customer_blocks.customer_card(view, shared_by=body["user"]["id"])
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
