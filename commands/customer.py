"""The /customer slash command: find a customer and answer with their record or a short list."""

from __future__ import annotations

import logging

from slack_bolt import Ack, App, Respond

from blocks import customer as customer_blocks
from bot import records
from bot.search import find_customers
from bot.viewmodels import CardState
from commands import Services
from commands.replies import ephemeral, telling_the_user


def register(app: App, services: Services) -> None:
    @app.command("/customer")
    def customer_command(ack: Ack, command: dict, respond: Respond, logger: logging.Logger) -> None:
        with telling_the_user(ack, respond, logger):
            text = command.get("text", "").strip()
            if not text:
                ack(**ephemeral(customer_blocks.usage()))
                return
            with services.db.session() as session:
                result = find_customers(session, text)
                if len(result.matches) == 1 and not result.capped:
                    card = records.customer_card(
                        session,
                        CardState(result.matches[0].customer_id),
                        recurring_page_size=customer_blocks.RECURRING_PAGE_SIZE,
                        orders_page_size=customer_blocks.ORDERS_PAGE_SIZE,
                    )
                    ack(**ephemeral(customer_blocks.customer_card(card)))
                elif result.matches:
                    ack(**ephemeral(customer_blocks.search_results(result)))
                else:
                    ack(**ephemeral(customer_blocks.no_match(text)))
