"""Buttons and modals that act on records: refund, cancel, pause and resume, next bill date, plan status, new
order, change email.

A button opens a form (after checking the person may act); a form that moves money is confirmed in a second view
stating exactly what will happen. The final submit answers Slack at once with a "working" view, and a lazy
listener then asks bot.actions to do it, shows the outcome in the modal and updates the record in place.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_bolt.context.respond import Respond as RespondTo
from slack_sdk import WebClient

from blocks import ids, modals
from blocks.customer import ORDERS_PAGE_SIZE, RECURRING_PAGE_SIZE
from bot import records
from bot.actions import Done, Failed, Invalid, NotAllowed
from bot.db import DatabaseUnavailable
from bot.money import InvalidAmount, Money, parse_amount
from bot.viewmodels import CardState, parse_record_value
from commands import Services
from commands.records import render_record
from commands.replies import ephemeral, telling_the_user


@dataclass(frozen=True)
class Form:
    """What a modal remembers (its private_metadata): where the person was, and what they chose so far."""

    response_url: str | None
    shown: tuple[str, int]  # the record the person is looking at: ("order" | "recurring" | "customer", id)
    back: CardState
    data: dict[str, Any] = field(default_factory=dict)
    in_place: bool = True  # the button was on the person's own message; from a shared one, answer privately

    @classmethod
    def opened_from(cls, body: dict, shown: tuple[str, int], back: CardState, **data: Any) -> Form:
        private = bool(body.get("container", {}).get("is_ephemeral"))
        return cls(body.get("response_url"), shown, back, data, in_place=private)

    def encode(self) -> str:
        return json.dumps(
            {
                "u": self.response_url,
                "s": list(self.shown),
                "b": self.back.encode(),
                "d": self.data,
                "p": self.in_place,
            },
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, text: str) -> Form:
        raw = json.loads(text)
        kind, record_id = raw["s"]
        return cls(raw["u"], (kind, int(record_id)), CardState.decode(raw["b"]), raw["d"], raw["p"])

    def add(self, **data: Any) -> Form:
        return replace(self, data={**self.data, **data})


def register(app: App, services: Services) -> None:
    actions = services.actions

    # Refunds ----------------------------------------------------------------------------------------------

    @app.action(ids.pattern(ids.REFUND_ORDER))
    def refund_order(ack: Ack, body: dict, action: dict, client: WebClient, respond: Respond, logger) -> None:
        ack()
        with telling_the_user(ack, respond, logger):
            order_id, back = _record(action)
            actions.require_admin(body["user"]["id"], "refund", "order", order_id)
            quote = actions.refund_quote(order_id)
            if quote.refundable.amount <= 0:
                raise Failed(f"Nothing is left to refund on order #{quote.order_number}.")
            form = Form.opened_from(body, ("order", order_id), back, orders=[order_id])
            _open(client, body, modals.refund_form([quote], form.encode()))

    @app.action(ids.pattern(ids.REFUND_PAYMENT))
    def refund_payment(
        ack: Ack, body: dict, action: dict, client: WebClient, respond: Respond, logger
    ) -> None:
        ack()
        with telling_the_user(ack, respond, logger):
            recurring_id, back = _record(action)
            actions.require_admin(body["user"]["id"], "refund", "recurring", recurring_id)
            quotes = actions.refundable_orders(recurring_id)
            if not quotes:
                raise Failed("No payment of this is left to refund.")
            form = Form.opened_from(
                body, ("recurring", recurring_id), back, orders=[q.order_id for q in quotes]
            )
            _open(client, body, modals.refund_form(quotes, form.encode()))

    @app.view(modals.REFUND_FORM)
    def refund_form_submitted(ack: Ack, view: dict, logger) -> None:
        form = Form.decode(view["private_metadata"])
        values = view["state"]["values"]
        orders = form.data["orders"]
        chosen = _selected(values, modals.ORDER)
        if len(orders) > 1 and chosen is None:
            ack(response_action="errors", errors={modals.ORDER: "Choose the payment to refund."})
            return
        order_id = int(chosen) if len(orders) > 1 and chosen else orders[0]
        if order_id not in orders:
            ack(response_action="errors", errors={modals.ORDER: "Choose one of the payments listed."})
            return
        quote = actions.refund_quote(order_id)
        typed = _text(values, modals.AMOUNT)
        try:
            amount = parse_amount(typed, quote.paid.currency) if typed else quote.refundable.amount
        except InvalidAmount as invalid:
            ack(response_action="errors", errors={modals.AMOUNT: str(invalid)})
            return
        if amount <= 0 or amount > quote.refundable.amount:
            message = (
                "Enter an amount above zero."
                if amount <= 0
                else f"At most {quote.refundable.format()} can be refunded on order #{quote.order_number}."
            )
            ack(response_action="errors", errors={modals.AMOUNT: message})
            return
        reason = _selected(values, modals.REASON)
        reason = None if reason in (None, "other") else reason
        note = _text(values, modals.NOTE)
        confirmed = form.add(
            order=order_id, amount=amount, reason=reason, note=note, seen=quote.refunded_seen
        )
        view = modals.refund_confirm(
            quote, Money(amount, quote.paid.currency), reason, note, confirmed.encode()
        )
        ack(response_action="update", view=view)

    def refund_confirmed(form: Form, actor: str) -> Done:
        data = form.data
        return actions.refund(
            actor,
            data["order"],
            data["amount"],
            reason=data["reason"],
            note=data["note"],
            refunded_seen=data["seen"],
        )

    _final_step(app, services, modals.REFUND_CONFIRM, "Refund", "Refunding…", refund_confirmed)

    # Subscriptions and payment plans ------------------------------------------------------------------------

    def recurring_form(build: Callable[..., dict], what: str):
        def handler(ack: Ack, body: dict, action: dict, client: WebClient, respond: Respond, logger) -> None:
            ack()
            with telling_the_user(ack, respond, logger):
                recurring_id, back = _record(action)
                actions.require_admin(body["user"]["id"], what, "recurring", recurring_id)
                with services.db.session() as session:
                    record = records.recurring_record(session, recurring_id, back, payments_shown=0)
                form = Form.opened_from(body, ("recurring", recurring_id), back)
                form = form.add(id=recurring_id, seen=record.fingerprint)
                _open(client, body, build(record, form.encode()))

        return handler

    app.action(ids.pattern(ids.CANCEL_RECURRING))(
        recurring_form(
            lambda record, meta: modals.cancel_form(
                record.summary,
                record.customer_name,
                f"{record.current_period_end:%b %-d, %Y}" if record.current_period_end else None,
                meta,
            ),
            "cancel",
        )
    )
    app.action(ids.pattern(ids.PAUSE_PAYMENTS))(
        recurring_form(
            lambda record, meta: modals.pause_form(record.summary, record.customer_name, _tomorrow(), meta),
            "pause_payments",
        )
    )
    app.action(ids.pattern(ids.CHANGE_NEXT_BILL_DATE))(
        recurring_form(
            lambda record, meta: modals.next_bill_date_form(
                record.summary, record.customer_name, _tomorrow(), meta
            ),
            "move_next_bill_date",
        )
    )
    app.action(ids.pattern(ids.CHANGE_PLAN_STATUS))(
        recurring_form(
            lambda record, meta: modals.plan_status_form(record.summary, record.customer_name, meta),
            "change_plan_status",
        )
    )

    def cancel(form: Form, actor: str, values: dict) -> Done:
        at_end = _selected(values, modals.WHEN) != "now"
        return actions.cancel(actor, form.data["id"], at_period_end=at_end, seen=form.data["seen"])

    _final_step(app, services, modals.CANCEL_FORM, "Cancel", "Cancelling…", cancel, with_values=True)

    def pause_errors(values: dict) -> dict[str, str]:
        if _selected(values, modals.WHEN) == "until_date":
            day = _date(values, modals.RESUMES_AT)
            if day is None or day <= _today():
                return {modals.RESUMES_AT: "Choose a date after today, or pause until you resume them."}
        return {}

    def pause(form: Form, actor: str, values: dict) -> Done:
        day = _date(values, modals.RESUMES_AT) if _selected(values, modals.WHEN) == "until_date" else None
        resumes_at = datetime.combine(day, time(), tzinfo=UTC) if day else None
        return actions.pause_payments(actor, form.data["id"], resumes_at=resumes_at, seen=form.data["seen"])

    _final_step(
        app,
        services,
        modals.PAUSE_FORM,
        "Pause payments",
        "Pausing payments…",
        pause,
        with_values=True,
        validate=pause_errors,
    )

    def bill_date_errors(values: dict) -> dict[str, str]:
        day = _date(values, modals.NEXT_BILL_DATE)
        if day is None or day <= _today():
            return {modals.NEXT_BILL_DATE: "Choose a date after today."}
        return {}

    def move_bill_date(form: Form, actor: str, values: dict) -> Done:
        day = _date(values, modals.NEXT_BILL_DATE)
        assert day is not None  # validated before
        when = datetime.combine(day, time(12), tzinfo=UTC)  # noon UTC falls on that date in most time zones
        return actions.move_next_bill_date(actor, form.data["id"], to=when, seen=form.data["seen"])

    _final_step(
        app,
        services,
        modals.NEXT_BILL_DATE_FORM,
        "Next bill date",
        "Moving the next bill date…",
        move_bill_date,
        with_values=True,
        validate=bill_date_errors,
    )

    def change_status(form: Form, actor: str, values: dict) -> Done:
        status, recurring_id, seen = _selected(values, modals.STATUS), form.data["id"], form.data["seen"]
        if status == "active":
            return actions.resume_payments(actor, recurring_id, seen=seen)
        if status == "paused":
            return actions.pause_payments(actor, recurring_id, resumes_at=None, seen=seen)
        return actions.cancel(actor, recurring_id, at_period_end=status == "canceled_period_end", seen=seen)

    _final_step(
        app,
        services,
        modals.PLAN_STATUS_FORM,
        "Plan status",
        "Changing the status…",
        change_status,
        with_values=True,
    )

    def resume_now(ack: Ack) -> None:
        ack()

    def resume(body: dict, action: dict, respond: Respond, logger: logging.Logger) -> None:
        recurring_id, back = _record(action)
        actor = body["user"]["id"]
        try:
            with services.db.session() as session:
                seen = records.recurring_record(session, recurring_id, back, payments_shown=0).fingerprint
            done = actions.resume_payments(actor, recurring_id, seen=seen)
        except Exception as error:  # told to the person; nothing else to do with it here
            respond(replace_original=False, **ephemeral(_outcome_message(error, logger)))
            return
        message = render_record(
            services, "recurring", recurring_id, back, notice=f"<@{actor}> {done.summary}."
        )
        respond(replace_original=True, text=message.text, blocks=message.blocks)

    app.action(ids.pattern(ids.RESUME_PAYMENTS))(ack=resume_now, lazy=[resume])

    # New order --------------------------------------------------------------------------------------------

    @app.action(ids.NEW_ORDER)
    def new_order(ack: Ack, body: dict, action: dict, client: WebClient, respond: Respond, logger) -> None:
        ack()
        with telling_the_user(ack, respond, logger):
            back = CardState.decode(action["value"])
            customer_id = back.customer_id
            actions.require_admin(body["user"]["id"], "new_order", "customer", customer_id)
            name, currency, card, last_order = actions.new_order_context(customer_id)
            if card is None:
                raise Failed(
                    f"{name} has no card on file, so there is nothing to charge. Send them a checkout link instead."
                )
            form = Form.opened_from(body, ("customer", customer_id), back)
            form = form.add(customer=customer_id, name=name, card=card, last=last_order)
            _open(
                client,
                body,
                modals.new_order_form(name, card, actions.products(currency), currency, form.encode()),
            )

    @app.view(modals.NEW_ORDER_FORM)
    def new_order_submitted(ack: Ack, view: dict) -> None:
        form = Form.decode(view["private_metadata"])
        values = view["state"]["values"]
        currency = _selected(values, modals.CURRENCY) or "usd"
        product_id = _selected(values, modals.PRODUCT)
        product = next((p for p in actions.products() if str(p[0]) == product_id), None)
        description = _text(values, modals.DESCRIPTION) or (product[1] if product else "")
        typed_amount, typed_quantity = _text(values, modals.AMOUNT), _text(values, modals.QUANTITY) or "1"
        errors: dict[str, str] = {}
        if not description:
            errors[modals.DESCRIPTION] = "Choose a product or describe what you are selling."
        unit_amount = 0
        try:
            if typed_amount:
                unit_amount = parse_amount(typed_amount, currency)
            elif product and product[2].currency == currency:
                unit_amount = product[2].amount
            elif product:
                errors[modals.AMOUNT] = (
                    f"{product[1]} is priced in {product[2].currency.upper()}: enter the amount in {currency.upper()}."
                )
            else:
                errors[modals.AMOUNT] = "Enter the amount to charge."
        except InvalidAmount as invalid:
            errors[modals.AMOUNT] = str(invalid)
        if not errors.get(modals.AMOUNT) and unit_amount <= 0:
            errors[modals.AMOUNT] = "Enter an amount above zero."
        quantity = int(typed_quantity) if typed_quantity.isdigit() else 0
        if not 1 <= quantity <= 1000:
            errors[modals.QUANTITY] = "Enter a whole number from 1 to 1000."
        if errors:
            ack(response_action="errors", errors=errors)
            return
        total = Money(unit_amount * quantity, currency)
        confirmed = form.add(
            description=description, unit_amount=unit_amount, currency=currency, quantity=quantity
        )
        view = modals.new_order_confirm(
            form.data["name"], form.data["card"], description, quantity, total, confirmed.encode()
        )
        ack(response_action="update", view=view)

    def charge(form: Form, actor: str) -> Done:
        data = form.data
        return actions.new_order(
            actor,
            data["customer"],
            description=data["description"],
            unit_amount=data["unit_amount"],
            currency=data["currency"],
            quantity=data["quantity"],
            last_order_seen=data["last"],
        )

    _final_step(app, services, modals.NEW_ORDER_CONFIRM, "New order", "Charging the card…", charge)

    # Email ------------------------------------------------------------------------------------------------

    @app.action(ids.CHANGE_EMAIL)
    def change_email(ack: Ack, body: dict, action: dict, client: WebClient, respond: Respond, logger) -> None:
        ack()
        with telling_the_user(ack, respond, logger):
            back = CardState.decode(action["value"])
            actions.require_admin(body["user"]["id"], "change_email", "customer", back.customer_id)
            with services.db.session() as session:
                card = records.customer_card(
                    session, back, recurring_page_size=RECURRING_PAGE_SIZE, orders_page_size=ORDERS_PAGE_SIZE
                )
            form = Form.opened_from(body, ("customer", back.customer_id), back, customer=back.customer_id)
            view = modals.change_email_form(
                card.name, card.email, card.stripe_customer_id is not None, form.encode()
            )
            _open(client, body, view)

    def email_errors(values: dict) -> dict[str, str]:
        email = _text(values, modals.EMAIL)
        if not email or "@" not in email or "." not in email.rpartition("@")[2] or " " in email:
            return {modals.EMAIL: "Enter an email address like jane@example.com."}
        return {}

    def new_email(form: Form, actor: str, values: dict) -> Done:
        return actions.change_email(actor, form.data["customer"], _text(values, modals.EMAIL))

    _final_step(
        app,
        services,
        modals.CHANGE_EMAIL_FORM,
        "Change email",
        "Changing the email…",
        new_email,
        with_values=True,
        validate=email_errors,
    )


def _final_step(
    app: App,
    services: Services,
    callback_id: str,
    title: str,
    working: str,
    act: Callable[..., Done],
    *,
    with_values: bool = False,
    validate: Callable[[dict], dict[str, str]] | None = None,
) -> None:
    """The submit that acts: answer Slack at once, then act in a lazy listener and show the outcome."""

    def answer_now(ack: Ack, view: dict) -> None:
        errors = validate(view["state"]["values"]) if validate else {}
        if errors:
            ack(response_action="errors", errors=errors)
        else:
            ack(response_action="update", view=modals.working(title, working))

    def act_then_tell(body: dict, view: dict, client: WebClient, logger: logging.Logger) -> None:
        values = view["state"]["values"]
        if validate and validate(values):
            return  # the person was shown the errors and the form stays open
        form = Form.decode(view["private_metadata"])
        actor = body["user"]["id"]
        try:
            done = act(form, actor, values) if with_values else act(form, actor)
        except Exception as error:  # every failure becomes the modal's answer
            message = _outcome_message(error, logger)
            client.views_update(view_id=view["id"], view=modals.result(title, message.text, ok=False))
            return
        if form.response_url:  # the record first: once the modal says done, everything is
            kind, record_id = done.record
            notice = f"<@{actor}> {done.summary}."
            message = render_record(services, kind, record_id, form.back, notice=notice)
            update = RespondTo(response_url=form.response_url)
            update(
                replace_original=form.in_place,
                response_type="ephemeral",
                text=message.text,
                blocks=message.blocks,
            )
        summary = done.summary[0].upper() + done.summary[1:] + "."
        client.views_update(view_id=view["id"], view=modals.result(title, summary, ok=True))

    app.view(callback_id)(ack=answer_now, lazy=[act_then_tell])


def _outcome_message(error: Exception, logger: logging.Logger):
    if isinstance(error, NotAllowed):
        return modals.not_allowed(error.admins)
    if isinstance(error, Invalid | Failed):
        return modals.failure(error.message)
    if isinstance(error, DatabaseUnavailable):
        return modals.failure(
            "The customer records database is not answering, so nothing was done. Try again in a minute."
        )
    if isinstance(error, records.RecordNotFound):
        return modals.failure(f"That {error.what} is no longer in the customer records, so nothing was done.")
    logger.exception("action failed")
    return modals.failure("Something went wrong on our side and nothing was done. Try again in a minute.")


def _open(client: WebClient, body: dict, view: dict | None) -> None:
    if view is not None:
        client.views_open(trigger_id=body["trigger_id"], view=view)


def _record(action: dict) -> tuple[int, CardState]:
    return parse_record_value(action["value"])


def _selected(values: dict, block_id: str) -> str | None:
    element = values.get(block_id, {}).get(block_id, {})
    option = element.get("selected_option")
    return option["value"] if option else None


def _text(values: dict, block_id: str) -> str:
    return (values.get(block_id, {}).get(block_id, {}).get("value") or "").strip()


def _date(values: dict, block_id: str) -> date | None:
    chosen = values.get(block_id, {}).get(block_id, {}).get("selected_date")
    return date.fromisoformat(chosen) if chosen else None


def _today() -> date:
    return datetime.now(UTC).date()


def _tomorrow() -> date:
    return _today() + timedelta(days=1)
