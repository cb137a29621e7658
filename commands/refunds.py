"""Refunds from Slack: the Refund button of an order, the Refund a payment button of a subscription or plan, the
form, the confirmation stating exactly what will happen, and the refund itself."""

from __future__ import annotations

import logging

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from blocks import ids, modals
from bot.actions.outcomes import Done, Invalid, Pending
from bot.actions.refunds import Refunds
from bot.money import Money
from bot.records import Records
from bot.viewmodels import RefundRequest, parse_record_value
from commands.acting import act_and_tell, answer_working
from commands.forms import Form, selected, text
from commands.replies import failure_message, telling_the_user

TITLE = "Refund"


def open_order_refund(
    ack: Ack,
    body: dict,
    action: dict,
    client: WebClient,
    respond: Respond,
    logger: logging.Logger,
    refunds: Refunds,
) -> None:
    ack()
    with telling_the_user(ack, respond, logger):
        order_id, back = parse_record_value(action.get("value", ""))
        quote = refunds.order_form(body["user"]["id"], order_id)
        form = Form.opened_from(body, ("order", order_id), back, orders=[order_id])
        client.views_open(trigger_id=body["trigger_id"], view=modals.refund_form([quote], form.encode()))


def open_payment_refund(
    ack: Ack,
    body: dict,
    action: dict,
    client: WebClient,
    respond: Respond,
    logger: logging.Logger,
    refunds: Refunds,
) -> None:
    ack()
    with telling_the_user(ack, respond, logger):
        recurring_id, back = parse_record_value(action.get("value", ""))
        quotes = refunds.payments_form(body["user"]["id"], recurring_id)
        form = Form.opened_from(body, ("recurring", recurring_id), back, orders=[q.order_id for q in quotes])
        client.views_open(trigger_id=body["trigger_id"], view=modals.refund_form(quotes, form.encode()))


def review_refund(ack: Ack, view: dict, logger: logging.Logger, refunds: Refunds) -> None:
    values = view["state"]["values"]
    try:
        form = Form.decode(view["private_metadata"])
        offered: list[int] = form.data["orders"]
        chosen = selected(values, modals.ORDER)
        order_id = offered[0] if len(offered) == 1 else int(chosen) if chosen and chosen.isdecimal() else None
        quote, request = refunds.check(
            order_id,
            text(values, modals.AMOUNT),
            selected(values, modals.REASON),
            text(values, modals.NOTE) or None,
            offered=offered,
        )
    except Invalid as invalid:
        ack(response_action="errors", errors=invalid.problems or {modals.AMOUNT: invalid.message})
        return
    except Exception as error:
        ack(response_action="update", view=modals.failed(TITLE, failure_message(error, logger)))
        return
    confirmed = form.add(
        order=request.order_id,
        amount=request.amount.amount,
        currency=request.amount.currency,
        reason=request.reason,
        note=request.note,
        seen=list(request.seen),
    )
    ack(response_action="update", view=modals.refund_confirm(quote, request, confirmed.encode()))


def start_refund(ack: Ack, view: dict, logger: logging.Logger) -> None:
    answer_working(ack, view, TITLE, "Refunding…", logger)


def refund(
    body: dict, view: dict, client: WebClient, logger: logging.Logger, refunds: Refunds, records: Records
) -> None:
    def confirmed(form: Form, actor: str) -> Done | Pending:
        data = form.data
        amount = Money(data["amount"], data["currency"])
        request = RefundRequest(data["order"], amount, data["reason"], data["note"], tuple(data["seen"]))
        return refunds.refund(actor, request)

    act_and_tell(TITLE, confirmed, body=body, view=view, client=client, records=records, logger=logger)


def register(app: App) -> None:
    app.action(ids.pattern(ids.REFUND_ORDER))(open_order_refund)
    app.action(ids.pattern(ids.REFUND_PAYMENT))(open_payment_refund)
    app.view(modals.REFUND_FORM)(review_refund)
    app.view(modals.REFUND_CONFIRM)(ack=start_refund, lazy=[refund])
