"""Send receipt from Slack: the button on an order record, the form (which payment, to which address), the
confirmation stating what Stripe will send to whom, and the sending."""

from __future__ import annotations

import logging

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from blocks import ids, modals
from bot.actions.outcomes import Done, Invalid, Pending
from bot.actions.receipts import Receipts
from bot.records import Records
from bot.viewmodels import ReceiptRequest, parse_record_value
from commands.acting import act_and_tell, answer_working
from commands.forms import TOO_BIG, Form, selected, text
from commands.replies import failure_message, telling_the_user

TITLE = "Send receipt"


def open_send_receipt(
    ack: Ack,
    body: dict,
    action: dict,
    client: WebClient,
    respond: Respond,
    logger: logging.Logger,
    receipts: Receipts,
) -> None:
    ack()
    with telling_the_user(ack, respond, logger):
        order_id, back = parse_record_value(action.get("value", ""))
        offered = receipts.form(body["user"]["id"], order_id)
        form = Form.opened_from(body, ("order", order_id), back, order=order_id)
        client.views_open(
            trigger_id=body["trigger_id"], view=modals.send_receipt_form(offered, form.encode())
        )


def review_receipt(ack: Ack, body: dict, view: dict, logger: logging.Logger, receipts: Receipts) -> None:
    values = view["state"]["values"]
    try:
        form = Form.decode(view["private_metadata"])
        chosen = selected(values, modals.ORDER)
        offered, request = receipts.check(
            body["user"]["id"],
            form.data["order"],
            int(chosen) if chosen and chosen.isdecimal() else None,
            text(values, modals.EMAIL),
            text(values, modals.NOTE) or None,
        )
        confirmed = form.add(payment=request.payment_id, email=request.email, note=request.note)
        if not confirmed.fits:
            raise Invalid.of({modals.NOTE: TOO_BIG})
        confirm = modals.send_receipt_confirm(offered, request, confirmed.encode())
    except Invalid as invalid:
        ack(response_action="errors", errors=invalid.problems or {modals.EMAIL: invalid.message})
        return
    except Exception as error:
        ack(response_action="update", view=modals.failed(TITLE, failure_message(error, logger)))
        return
    ack(response_action="update", view=confirm)


def start_send_receipt(ack: Ack, view: dict, logger: logging.Logger) -> None:
    answer_working(ack, view, TITLE, "Asking Stripe to send the receipt…", logger)


def send_receipt(
    body: dict, view: dict, client: WebClient, logger: logging.Logger, receipts: Receipts, records: Records
) -> None:
    def confirmed(form: Form, actor: str) -> Done | Pending:
        data = form.data
        return receipts.send(
            actor, data["order"], ReceiptRequest(data["payment"], data["email"], data["note"])
        )

    act_and_tell(TITLE, confirmed, body=body, view=view, client=client, records=records, logger=logger)


def register(app: App) -> None:
    app.action(ids.pattern(ids.SEND_RECEIPT))(open_send_receipt)
    app.view(modals.SEND_RECEIPT_FORM)(review_receipt)
    app.view(modals.SEND_RECEIPT_CONFIRM)(ack=start_send_receipt, lazy=[send_receipt])
