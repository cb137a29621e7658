"""The /customer slash command: find a customer and answer with their record or a short list; an order number
opens that order's record."""

from __future__ import annotations

import logging

from slack_bolt import Ack, App, Respond

from blocks import customer as customer_blocks
from blocks import records as record_blocks
from bot.records import Records
from commands.replies import ephemeral, telling_the_user


def find_customer(
    ack: Ack, command: dict, respond: Respond, logger: logging.Logger, records: Records
) -> None:
    with telling_the_user(ack, respond, logger):
        text = command.get("text", "").strip()
        if not text:
            ack(**ephemeral(customer_blocks.usage()))
            return
        order = records.order_numbered(
            text, payments_shown=record_blocks.PAYMENTS_SHOWN, history_shown=record_blocks.HISTORY_PAGE_SIZE
        )
        if order is not None:
            ack(**ephemeral(record_blocks.order_record(order)))
            return
        result, card = records.find(
            text,
            recurring_page_size=customer_blocks.RECURRING_PAGE_SIZE,
            orders_page_size=customer_blocks.ORDERS_PAGE_SIZE,
        )
        if card is not None:
            ack(**ephemeral(customer_blocks.customer_card(card)))
        elif result.matches:
            ack(**ephemeral(customer_blocks.search_results(result)))
        else:
            ack(**ephemeral(customer_blocks.no_match(text)))


def register(app: App) -> None:
    app.command("/customer")(find_customer)
