"""New order from Slack: the New order button on a customer card, the form, the confirmation stating exactly what
the card will be charged, and the charge."""

from __future__ import annotations

import logging

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from blocks import ids, modals
from bot.actions.new_orders import NewOrders
from bot.actions.outcomes import Done, Invalid, Pending
from bot.money import Money
from bot.records import Records
from bot.viewmodels import CardState, NewOrderRequest
from commands.acting import act_and_tell, answer_working
from commands.forms import TOO_BIG, Form, selected, text
from commands.replies import failure_message, telling_the_user

TITLE = "New order"


def open_new_order(
    ack: Ack,
    body: dict,
    action: dict,
    client: WebClient,
    respond: Respond,
    logger: logging.Logger,
    new_orders: NewOrders,
) -> None:
    ack()
    with telling_the_user(ack, respond, logger):
        back = CardState.decode(action.get("value", ""))
        offered = new_orders.form(body["user"]["id"], back.customer_id)
        form = Form.opened_from(body, ("customer", back.customer_id), back, last=offered.last_order_seen)
        client.views_open(trigger_id=body["trigger_id"], view=modals.new_order_form(offered, form.encode()))


def review_new_order(ack: Ack, view: dict, logger: logging.Logger, new_orders: NewOrders) -> None:
    values = view["state"]["values"]
    try:
        form = Form.decode(view["private_metadata"])
        offered, request = new_orders.check(
            form.shown[1],
            form.data["last"],
            product_id=selected(values, modals.PRODUCT),
            description=text(values, modals.DESCRIPTION),
            amount_text=text(values, modals.AMOUNT),
            currency=selected(values, modals.CURRENCY),
            quantity_text=text(values, modals.QUANTITY),
            note=text(values, modals.NOTE) or None,
        )
    except Invalid as invalid:
        ack(response_action="errors", errors=invalid.problems or {modals.AMOUNT: invalid.message})
        return
    except Exception as error:
        ack(response_action="update", view=modals.failed(TITLE, failure_message(error, logger)))
        return
    confirmed = form.add(
        description=request.description,
        unit_amount=request.unit_amount.amount,
        currency=request.unit_amount.currency,
        quantity=request.quantity,
        note=request.note,
    )
    if not confirmed.fits:
        ack(response_action="errors", errors={modals.NOTE: TOO_BIG})
        return
    ack(response_action="update", view=modals.new_order_confirm(offered, request, confirmed.encode()))


def start_charge(ack: Ack, view: dict, logger: logging.Logger) -> None:
    answer_working(ack, view, TITLE, "Charging the card…", logger)


def charge(
    body: dict, view: dict, client: WebClient, logger: logging.Logger, new_orders: NewOrders, records: Records
) -> None:
    def confirmed(form: Form, actor: str) -> Done | Pending:
        data = form.data
        unit = Money(data["unit_amount"], data["currency"])
        request = NewOrderRequest(
            form.shown[1], data["description"], unit, data["quantity"], data["last"], data.get("note")
        )
        return new_orders.charge(actor, request)

    act_and_tell(TITLE, confirmed, body=body, view=view, client=client, records=records, logger=logger)


def register(app: App) -> None:
    app.action(ids.NEW_ORDER)(open_new_order)
    app.view(modals.NEW_ORDER_FORM)(review_new_order)
    app.view(modals.NEW_ORDER_CONFIRM)(ack=start_charge, lazy=[charge])
