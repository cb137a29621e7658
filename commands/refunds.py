"""Refunds from Slack: the Refund and Refund whole order buttons of an order, the Refund a payment button of a
subscription or plan, the forms, the confirmation stating exactly what will happen, and the refunds themselves."""

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
from commands.forms import TOO_BIG, Form, selected, text
from commands.replies import failure_message, telling_the_user

TITLE = "Refund"
WHOLE_ORDER = "Refund whole order"


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
        quotes = refunds.order_form(body["user"]["id"], order_id)
        form = Form.opened_from(body, ("order", order_id), back, payments=[q.payment_id for q in quotes])
        client.views_open(trigger_id=body["trigger_id"], view=modals.refund_form(quotes, form.encode()))


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
        form = Form.opened_from(
            body, ("recurring", recurring_id), back, payments=[q.payment_id for q in quotes]
        )
        client.views_open(trigger_id=body["trigger_id"], view=modals.refund_form(quotes, form.encode()))


def review_refund(ack: Ack, view: dict, logger: logging.Logger, refunds: Refunds) -> None:
    values = view["state"]["values"]
    try:
        form = Form.decode(view["private_metadata"])
        offered: list[int] = form.data["payments"]
        chosen = selected(values, modals.ORDER)
        payment_id = (
            offered[0] if len(offered) == 1 else int(chosen) if chosen and chosen.isdecimal() else None
        )
        quote, request = refunds.check(
            payment_id,
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
        payment=request.payment_id,
        amount=request.amount.amount,
        currency=request.amount.currency,
        reason=request.reason,
        note=request.note,
        seen=list(request.seen),
    )
    if not confirmed.fits:
        ack(response_action="errors", errors={modals.NOTE: TOO_BIG})
        return
    ack(response_action="update", view=modals.refund_confirm(quote, request, confirmed.encode()))


def start_refund(ack: Ack, view: dict, logger: logging.Logger) -> None:
    answer_working(ack, view, TITLE, "Refunding…", logger)


def refund(
    body: dict, view: dict, client: WebClient, logger: logging.Logger, refunds: Refunds, records: Records
) -> None:
    def confirmed(form: Form, actor: str) -> Done | Pending:
        data = form.data
        amount = Money(data["amount"], data["currency"])
        request = RefundRequest(data["payment"], amount, data["reason"], data["note"], tuple(data["seen"]))
        return refunds.refund(actor, request)

    act_and_tell(TITLE, confirmed, body=body, view=view, client=client, records=records, logger=logger)


def open_whole_order_refund(
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
        whole = refunds.whole_order_form(body["user"]["id"], order_id)
        form = Form.opened_from(body, ("order", order_id), back, order=order_id)
        client.views_open(
            trigger_id=body["trigger_id"], view=modals.whole_order_refund_form(whole, form.encode())
        )


def review_whole_order_refund(
    ack: Ack, body: dict, view: dict, logger: logging.Logger, refunds: Refunds
) -> None:
    values = view["state"]["values"]
    try:
        form = Form.decode(view["private_metadata"])
        reason = selected(values, modals.REASON)
        note = text(values, modals.NOTE) or None
        whole = refunds.check_whole_order(body["user"]["id"], form.data["order"], reason, note)
        reason = None if reason in (None, "other") else reason
        # Each payment is refunded as the confirmation states it: its refundable amount and its state as shown.
        confirmed = form.add(
            reason=reason,
            note=note,
            currency=whole.total.currency,
            payments=[[q.payment_id, q.refundable.amount, *q.seen] for q in whole.payments],
        )
        if not confirmed.fits:
            raise Invalid.of({modals.NOTE: TOO_BIG})
        confirm = modals.whole_order_refund_confirm(whole, reason, note, confirmed.encode())
    except Invalid as invalid:
        ack(response_action="errors", errors=invalid.problems or {modals.REASON: invalid.message})
        return
    except Exception as error:
        ack(response_action="update", view=modals.failed(WHOLE_ORDER, failure_message(error, logger)))
        return
    ack(response_action="update", view=confirm)


def start_whole_order_refund(ack: Ack, view: dict, logger: logging.Logger) -> None:
    answer_working(ack, view, WHOLE_ORDER, "Refunding every payment…", logger)


def refund_whole_order(
    body: dict, view: dict, client: WebClient, logger: logging.Logger, refunds: Refunds, records: Records
) -> None:
    """Refund whole order, as confirmed; Try again (when a payment was left undone) sends the very same request,
    so what was refunded is answered as done and only the rest is sent."""

    def confirmed(form: Form, actor: str) -> Done | Pending:
        data = form.data
        requests = [
            RefundRequest(
                payment_id,
                Money(amount, data["currency"]),
                data["reason"],
                data["note"],
                (refunded, awaiting),
            )
            for payment_id, amount, refunded, awaiting in data["payments"]
        ]
        return refunds.refund_whole_order(actor, data["order"], requests)

    act_and_tell(
        WHOLE_ORDER,
        confirmed,
        body=body,
        view=view,
        client=client,
        records=records,
        logger=logger,
        retry=(modals.WHOLE_ORDER_REFUND_CONFIRM, lambda form: form.encode()),
    )


def register(app: App) -> None:
    app.action(ids.pattern(ids.REFUND_ORDER))(open_order_refund)
    app.action(ids.pattern(ids.REFUND_PAYMENT))(open_payment_refund)
    app.view(modals.REFUND_FORM)(review_refund)
    app.view(modals.REFUND_CONFIRM)(ack=start_refund, lazy=[refund])
    app.action(ids.pattern(ids.REFUND_WHOLE_ORDER))(open_whole_order_refund)
    app.view(modals.WHOLE_ORDER_REFUND_FORM)(review_whole_order_refund)
    app.view(modals.WHOLE_ORDER_REFUND_CONFIRM)(ack=start_whole_order_refund, lazy=[refund_whole_order])
