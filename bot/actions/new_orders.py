"""New orders: charging a customer's card on file, off-session, for one of the merchant's products or anything
described, and putting the order on their record."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot import order_book
from bot.actions.family import Family
from bot.actions.ledger import Attempt, Intent, Made
from bot.actions.notes import clean_note, note_problems
from bot.actions.outcomes import Done, Invalid, Pending, Problems
from bot.actions.stripe_access import StripeSide
from bot.models import Customer, Order, OrderSource, Product
from bot.money import InvalidAmount, Money, parse_amount
from bot.naming import shown_name
from bot.records import customer_row
from bot.stripe_gateway import (
    ACTION_KEY,
    AuthenticationRequired,
    ChargeResult,
    StripeFailure,
    StripeGateway,
    charge_result,
)
from bot.viewmodels import DESCRIPTION_LENGTH, NewOrderForm, NewOrderRequest, ProductOption

logger = logging.getLogger(__name__)

ACTION = "new_order"
CURRENCIES = ("usd", "eur", "gbp", "cad", "aud", "jpy", "kwd", "chf", "sek", "nok", "dkk", "pln", "nzd")
MAX_AMOUNT = 99_999_999  # Stripe's largest charge: eight digits in the smallest unit, for most currencies
MAX_QUANTITY = 1000
MOST_PRODUCTS = 100


class NewOrders(Family):
    def form(self, actor: str, customer_id: int) -> NewOrderForm:
        """What the form offers; Invalid when the customer has no card on file to charge."""
        self.permission.require(actor, ACTION, "customer", customer_id)
        return self._offer(customer_id)

    def _offer(self, customer_id: int, last_order_seen: int | None = None) -> NewOrderForm:
        with self.db.session() as session:
            customer = customer_row(session, customer_id)
            name = shown_name(customer.name, customer.email)
            card = _card(customer)
            if card is None:
                raise Invalid(_NO_CARD.format(name=name))
            usual = session.scalar(
                select(Order.currency)
                .where(Order.customer_id == customer_id)
                .group_by(Order.currency)
                .order_by(func.count().desc(), Order.currency)
                .limit(1)
            )
            currency = usual if usual in CURRENCIES else "usd"
            last = session.scalar(select(func.max(Order.id)).where(Order.customer_id == customer_id)) or 0
            products = session.scalars(
                select(Product)
                .where(Product.active.is_(True), Product.currency == currency)
                .order_by(Product.name)
                .limit(MOST_PRODUCTS)
            ).all()
            options = [ProductOption(p.id, p.name, Money(p.unit_amount, p.currency)) for p in products]
            seen = last if last_order_seen is None else last_order_seen
            return NewOrderForm(customer_id, name, card, currency, CURRENCIES, options, seen)

    def check(
        self,
        customer_id: int,
        last_order_seen: int,
        *,
        product_id: str | None,
        description: str,
        amount_text: str,
        currency: str | None,
        quantity_text: str,
        note: str | None = None,
    ) -> tuple[NewOrderForm, NewOrderRequest]:
        """A filled-in New order form, checked: the order to confirm, or Invalid naming the fields at fault. An
        empty description or amount takes the chosen product's. `last_order_seen` is the form's, kept."""
        form = self._offer(customer_id, last_order_seen)
        currency = currency or form.currency
        product = next((p for p in form.products if str(p.id) == product_id), None)
        description = description.strip() or (product.name if product else "")
        problems: Problems = {}
        if currency not in form.currencies:
            problems["currency"] = "Choose one of the currencies offered."
        unit_amount = 0
        if amount_text.strip():
            try:
                unit_amount = parse_amount(amount_text, currency)
            except InvalidAmount as invalid:
                problems["amount"] = str(invalid)
        elif product and product.price.currency == currency:
            unit_amount = product.price.amount
        elif product:
            problems["amount"] = (
                f"{product.name} is priced in {product.price.currency.upper()}: enter the amount in "
                f"{currency.upper()}."
            )
        else:
            problems["amount"] = "Enter the amount to charge."
        quantity_text = quantity_text.strip() or "1"
        # isdecimal alone admits other scripts' digits, which int() may refuse ("²")
        quantity = int(quantity_text) if quantity_text.isascii() and quantity_text.isdecimal() else 0
        problems = problems | {
            field: problem
            for field, problem in order_problems(description, unit_amount, currency, quantity).items()
            if field not in problems
        }
        problems |= note_problems(note)
        if problems:
            raise Invalid.of(problems)
        request = NewOrderRequest(
            form.customer_id,
            description,
            Money(unit_amount, currency),
            quantity,
            form.last_order_seen,
            clean_note(note),
        )
        return form, request

    def charge(self, actor: str, request: NewOrderRequest) -> Done | Pending:
        customer_id, total = request.customer_id, request.total
        self.permission.require(actor, ACTION, "customer", customer_id)
        self.stripe.require(actor, ACTION, "customer", customer_id, total)
        with self.db.session() as session:
            customer = customer_row(session, customer_id)
            name = shown_name(customer.name, customer.email)
            stripe_customer, payment_method = customer.stripe_customer_id, customer.default_payment_method_id
            card = _card(customer)
        unit = request.unit_amount
        problems = order_problems(request.description, unit.amount, unit.currency, request.quantity)
        problems |= note_problems(request.note)
        if card is None:
            problems["record"] = _NO_CARD.format(name=name)
        what = f"{total.format()} to {name}'s card for {request.quantity} × {request.description}"
        intent = Intent(
            actor=actor,
            action=ACTION,
            target=("customer", customer_id),
            # The note is not part of what the request is: the same charge asked again with other words is the
            # same charge, and must not be made twice (a new order reserves nothing; its identity is its guard).
            identity={
                "description": request.description,
                "unit_amount": unit.amount,
                "currency": unit.currency,
                "quantity": request.quantity,
                "seen": request.last_order_seen,
            },
            asked=f"charge {what}",
            done=f"charged {what}",
            customer_id=customer_id,
            record=("customer", customer_id),
            request={
                "stripe_customer": stripe_customer,
                "payment_method": payment_method,
                "description": request.description,
                "unit_amount": unit.amount,
                "currency": unit.currency,
                "quantity": request.quantity,
            },
            money=total,
            note=request.note,
        )
        return self.ledger.perform(intent, problems)


_NO_CARD = "{name} has no card on file, so there is nothing to charge. Send them a checkout link instead."


def order_problems(description: str, unit_amount: int, currency: str, quantity: int) -> Problems:
    """Field → what is wrong with a new order; empty when it may be charged."""
    problems: Problems = {}
    if not description.strip():
        problems["description"] = "Choose a product or describe what you are selling."
    elif len(description) > DESCRIPTION_LENGTH:
        problems["description"] = f"Keep the description to {DESCRIPTION_LENGTH} characters."
    if not 1 <= quantity <= MAX_QUANTITY:
        problems["quantity"] = f"Enter a whole number from 1 to {MAX_QUANTITY}."
    if unit_amount <= 0:
        problems["amount"] = "Enter an amount above zero."
    elif unit_amount * max(quantity, 1) > MAX_AMOUNT:
        most = Money(MAX_AMOUNT, currency).format()
        problems["amount"] = f"That is more than Stripe charges at once ({most})."
    return problems


@dataclass(frozen=True)
class ChargeEffect(StripeSide):
    """A charge of the card on file in Stripe, and the internal order it pays for in our records."""

    resend_first: ClassVar[bool] = True

    key: str  # the attempt's, kept in the payment's metadata so a later look finds it
    actor: str
    customer_id: int
    request: Mapping[str, Any]

    @classmethod
    def of(cls, gateway: StripeGateway | None, attempt: Attempt) -> ChargeEffect:
        return cls(gateway, attempt.key, attempt.actor, attempt.target[1], attempt.request)

    def call(self, idempotency_key: str) -> Made:
        try:
            charge = self._charge(idempotency_key)
        except AuthenticationRequired as waiting:
            self._cancel(waiting.payment_intent_id, idempotency_key)
            raise
        return Made(charge.payment_intent_id, charge.amount, charge)

    def _cancel(self, payment_intent_id: str | None, idempotency_key: str) -> None:
        """The bank wants the customer to confirm, and they are not here: the payment is cancelled, so it cannot
        be completed later beside a charge asked for again."""
        if payment_intent_id is None:
            return
        try:
            self.stripe.cancel_payment_intent(payment_intent_id, idempotency_key=f"{idempotency_key}-cancel")
        except StripeFailure:
            logger.exception(
                "could not cancel payment %s that awaits the customer's confirmation", payment_intent_id
            )

    def _charge(self, idempotency_key: str) -> ChargeResult:
        request = self.request
        return self.stripe.charge_off_session(
            request["stripe_customer"],
            request["payment_method"],
            request["unit_amount"] * request["quantity"],
            request["currency"],
            metadata={
                "description": request["description"][:500],
                "quantity": str(request["quantity"]),
                "requested_by": self.actor,
                ACTION_KEY: self.key,
            },
            idempotency_key=idempotency_key,
        )

    def find(self) -> Made | None:
        charge = self.stripe.find_charge(self.request["stripe_customer"], self.key)
        return Made(charge.payment_intent_id, charge.amount, charge) if charge else None

    def made_from(self, obj: Mapping[str, Any]) -> Made:
        charge = charge_result(dict(obj))
        return Made(charge.payment_intent_id, charge.amount, charge)

    def record(self, session: Session, made: Made, now: datetime) -> None:
        charge: ChargeResult = made.answer
        if order_book.payment_paid_by(session, charge.payment_intent_id, charge.charge_id) is not None:
            return  # recorded already
        customer = customer_row(session, self.customer_id)
        quantity, unit = self.request["quantity"], self.request["unit_amount"]
        if unit * quantity != charge.amount:  # Stripe's amount is what was paid: one line for it
            quantity, unit = 1, charge.amount
        order_book.add_paid_order(
            session,
            customer_id=self.customer_id,
            source=OrderSource.INTERNAL,
            paid=order_book.StripePayment(
                charge.payment_intent_id,
                charge.charge_id,
                charge.amount,
                charge.currency,
                charge.card_brand or customer.card_brand,
                charge.card_last4 or customer.card_last4,
            ),
            lines=[order_book.Line(self.request["description"], quantity, unit)],
            created_at=now,
        )


def _card(customer: Customer) -> str | None:
    if customer.default_payment_method_id and customer.stripe_customer_id and customer.card_last4:
        return f"{(customer.card_brand or 'card').title()} •••• {customer.card_last4}"
    return None
