"""Send receipt: Stripe emails the receipt of one of an order's paid payments to the customer's address, or to
another one typed in. Payment admins only: it moves no money, but it emails a customer in the merchant's name.

Stripe sends a charge's receipt when the charge's `receipt_email` is set to a new address (`POST /v1/charges/{id}`);
`POST /v1/invoices/{id}/send` would send the invoice, not a receipt of its payment, and only to the customer's
own address. Two limits follow from Stripe: it sends no email in test mode, and it does not send again to the
address the charge already has, so asking for that address is refused with what to do instead."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.actions.email import email_problems
from bot.actions.family import Family
from bot.actions.ledger import Attempt, Intent, Made
from bot.actions.notes import clean_note, note_problems
from bot.actions.outcomes import Done, Invalid, Pending, Problems
from bot.actions.stripe_access import StripeSide
from bot.crm import same_email
from bot.models import Customer, Order, Payment, PaymentStatus
from bot.money import Money
from bot.naming import shown_name
from bot.records import RecordNotFound
from bot.stripe_gateway import StripeGateway
from bot.viewmodels import ReceiptForm, ReceiptPayment, ReceiptRequest, payment_label

ACTION = "send_receipt"
MOST_PAYMENTS = 100  # a select offers at most 100 options


class Receipts(Family):
    def form(self, actor: str, order_id: int) -> ReceiptForm:
        """The order's paid payments Stripe has a charge of, newest first; Invalid when there is none."""
        self.permission.require(actor, ACTION, "order", order_id)
        with self.db.session() as session:
            order = session.get(Order, order_id)
            if order is None:
                raise RecordNotFound("order", order_id)
            customer = session.get(Customer, order.customer_id)
            assert customer is not None  # a foreign key guarantees it
            payments = session.scalars(
                select(Payment)
                .where(
                    Payment.order_id == order_id,
                    Payment.status == PaymentStatus.PAID.value,
                    Payment.stripe_charge_id.is_not(None),
                )
                .order_by(Payment.due_at.desc(), Payment.id.desc())
                .limit(MOST_PAYMENTS)
            ).all()
            if not payments:
                raise Invalid(
                    f"Order #{order.number} has no payment made through Stripe, so Stripe has no receipt to send."
                )
            return ReceiptForm(
                order.id,
                order.number,
                shown_name(customer.name, customer.email),
                customer.email,
                [_receipt_payment(p) for p in payments],
            )

    def check(
        self, actor: str, order_id: int, payment_id: int | None, email: str, note: str | None
    ) -> tuple[ReceiptForm, ReceiptRequest]:
        """A filled-in Send receipt form, checked against the order as it is now; Invalid naming the fields."""
        form = self.form(actor, order_id)
        if len(form.payments) == 1:
            payment_id = form.payments[0].payment_id
        problems: Problems = {}
        if payment_id is None:
            problems["order"] = "Choose the payment whose receipt to send."
        elif form.payment(payment_id) is None:
            problems["order"] = "Choose one of the payments listed."
        problems |= email_problems(email) | note_problems(note)
        if problems:
            raise Invalid.of(problems)
        assert payment_id is not None
        return form, ReceiptRequest(payment_id, email.strip(), clean_note(note))

    def send(self, actor: str, order_id: int, request: ReceiptRequest) -> Done | Pending:
        """Have Stripe email the payment's receipt to the address, once."""
        self.permission.require(actor, ACTION, "order", order_id)
        gateway = self.stripe.require(actor, ACTION, "payment", request.payment_id)
        with self.db.session() as session:
            payment = session.get(Payment, request.payment_id)
            if payment is None or payment.order_id != order_id:
                raise RecordNotFound("payment", request.payment_id)
            order = session.get(Order, order_id)
            assert order is not None  # the payment's foreign key guarantees it
            customer = session.get(Customer, order.customer_id)
            assert customer is not None  # a foreign key guarantees it
            paid_in_stripe = (
                payment.status == PaymentStatus.PAID.value and payment.stripe_charge_id is not None
            )
            charge_id = payment.stripe_charge_id
            label = payment_label(payment.kind, payment.paid_at or payment.due_at)
            paid = Money(payment.amount, payment.currency)
            number, customer_id, name = order.number, customer.id, shown_name(customer.name, customer.email)
        problems = email_problems(request.email) | note_problems(request.note)
        if not paid_in_stripe or charge_id is None:
            problems = {
                "order": "This payment was not paid through Stripe, so Stripe has no receipt to send."
            }
        elif not problems and same_email(gateway.charge_receipt_email(charge_id), request.email):
            # Read before anything is written (no transaction open): Stripe does not send to the address the charge
            # already has. A request already made is answered as done by the ledger, whatever this says now.
            problems = {"email": already_sent(request.email)}
        what = (
            f"the receipt of the {label[:1].lower()}{label[1:]} ({paid.format()}) of order #{number} ({name})"
        )
        intent = Intent(
            actor=actor,
            action=ACTION,
            target=("payment", request.payment_id),
            identity={"email": request.email.lower()},  # the note is not part of it
            asked=f"send {what} to {request.email}",
            done=f"sent {what} to {request.email} through Stripe",
            customer_id=customer_id,
            record=("order", order_id),
            request={"charge": charge_id, "email": request.email},
            note=request.note,
        )
        return self.ledger.perform(intent, problems)


def already_sent(email: str) -> str:
    return (
        f"Stripe already sent this payment's receipt to {email}, and sends it again only to another address. "
        "Type another address, or resend it from the payment's page in the Stripe Dashboard."
    )


def _receipt_payment(payment: Payment) -> ReceiptPayment:
    card = (
        f"{(payment.card_brand or 'card').title()} •••• {payment.card_last4}" if payment.card_last4 else None
    )
    return ReceiptPayment(
        payment.id,
        payment_label(payment.kind, payment.paid_at or payment.due_at),
        Money(payment.amount, payment.currency),
        card,
    )


@dataclass(frozen=True)
class ReceiptEffect(StripeSide):
    """A charge's receipt emailed by Stripe. Our records keep it in the audit trail (the record's History) only."""

    # Taking over, Stripe is asked first whether the charge has the address: setting it again would send nothing.
    resend_first: ClassVar[bool] = False

    request: Mapping[str, Any]

    @classmethod
    def of(cls, gateway: StripeGateway | None, attempt: Attempt) -> ReceiptEffect:
        return cls(gateway, attempt.request)

    def call(self, idempotency_key: str) -> Made:
        self.stripe.send_receipt(
            self.request["charge"], self.request["email"], idempotency_key=idempotency_key
        )
        return Made(self.request["charge"])

    def find(self) -> Made | None:
        email = self.stripe.charge_receipt_email(self.request["charge"])
        return Made(self.request["charge"]) if same_email(email, self.request["email"]) else None

    def made_from(self, obj: Mapping[str, Any]) -> Made:
        return Made(obj.get("id"))

    def record(self, session: Session, made: Made, now: datetime) -> None:
        """Nothing of ours changes: the ledger's audit entry is the record of it."""
