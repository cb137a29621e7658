"""The one place the bot talks to Stripe: refunds, off-session charges, subscription changes, a subscription's failed
bills (void, write off) and customer emails.

Every call goes through stripe-python's `StripeClient` with the API version pinned (`API_VERSION`). Every write
carries the idempotency key its caller derived from our own rows, so a retry (ours, or a person clicking twice)
can never move money twice: Stripe replays a key's first answer for 24 hours.

**One call takes at most `CallLimits.budget` seconds** (30 s by default), retries included, so the ledger knows
when a request it sent can no longer be on its way (see bot.actions.ledger). Each try has a connect and a read
timeout; the gateway itself retries, with the same key, a connection failure, a timeout, a 409, a 429 and a 5xx
(unless Stripe answers `Stripe-Should-Retry: false`, which it does when it would only replay a stored answer),
pausing 0.5 s, 1 s, 2 s in between, and only while another try still fits in the budget. stripe-python's own
retries are off (`max_network_retries=0`): its pauses follow `Retry-After` up to a minute, which no budget fits.

A failure reaches the caller as a `StripeFailure` carrying a plain sentence for the person in Slack, and whether
Stripe may have acted (`outcome_unknown`).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import stripe

logger = logging.getLogger(__name__)

# The API version stripe-python 16.1 is generated against (`stripe.api_version`). Pinned here, sent on every request
# as `Stripe-Version`, so upgrading the library never silently changes what Stripe answers. Bump it deliberately,
# after reading Stripe's changelog, together with the library.
API_VERSION = "2026-10-28.endive"

# Metadata naming the bot's action a payment or refund was made for, so a later retry can find it.
ACTION_KEY = "action_key"
# The code of a failure meaning Stripe is still running a request sent earlier with the same idempotency key.
IN_PROGRESS = "request_in_progress"
# Stripe's code for an object it has no record of (deleted, or never there); it answers it with 404.
RESOURCE_MISSING = "resource_missing"
# Read like one object (`retrieve(CUSTOMER_CARDS, customer id)`): the cards saved to a customer, as Stripe lists
# them (newest first), in `data`. The unit of work that falls back on a customer's newest card gathers it so.
CUSTOMER_CARDS = "cards_of_customer"
# Read like one object (`retrieve(INVOICES_PAID_BY, payment intent id)`): the invoice payments of a payment intent,
# each with its invoice, in `data`. Since API version 2025-03-31.basil a payment intent no longer names the invoice
# it pays; this is how a unit of work tells an invoice's payment from a one-off one.
INVOICES_PAID_BY = "invoices_paid_by_payment_intent"
# Read like one object (`retrieve(CUSTOMER_TAX_IDS, customer id)`): a customer's tax ids, as Stripe lists them
# (`GET /v1/customers/{id}/tax_ids`); read when the customer's own `tax_ids` did not come with all of them.
CUSTOMER_TAX_IDS = "tax_ids_of_customer"


@dataclass(frozen=True)
class CallLimits:
    """How long one Stripe call may take. `budget` bounds the whole call, every try and pause included."""

    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    budget: float = 30.0
    retry_delays: tuple[float, ...] = (0.5, 1.0, 2.0)  # before each retry (plus up to half again, at random)

    @property
    def longest_try(self) -> float:
        return self.connect_timeout + self.read_timeout


REFUND_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer"})

T = TypeVar("T")
Obj = dict[str, Any]


# --- failures ---------------------------------------------------------------------------------------------------


class StripeFailure(Exception):
    """Stripe did not do what we asked. `user_message` is a plain sentence for the person in Slack (what happened,
    what to do); `code` is Stripe's error code when there is one; `outcome_unknown` is True only when we cannot
    know whether Stripe acted (network failure or timeout after retries, 5xx) — the caller then keeps its
    idempotency key to retry safely."""

    def __init__(
        self,
        user_message: str,
        *,
        code: str | None = None,
        outcome_unknown: bool = False,
        stripe_message: str | None = None,
        request_id: str | None = None,
        payment_intent_id: str | None = None,
        answered: bool = True,
        replayed: bool = False,
    ) -> None:
        super().__init__(user_message)
        self.answered = answered  # Stripe sent an HTTP answer (False: the network failed or timed out)
        self.replayed = replayed  # the answer Stripe stored for this idempotency key, sent again
        self.user_message = user_message
        self.code = code
        self.outcome_unknown = outcome_unknown
        self.stripe_message = (
            stripe_message  # Stripe's own words, for logs and the audit trail; not for Slack
        )
        self.request_id = request_id  # Stripe's request id, to find the request in the Stripe dashboard
        self.payment_intent_id = (
            payment_intent_id  # the payment a failed charge left behind, when Stripe says
        )


class CardDeclined(StripeFailure):
    """The card was declined; `decline_code` is the bank's reason as Stripe reports it."""

    def __init__(self, user_message: str, *, decline_code: str | None = None, **kwargs: Any) -> None:
        super().__init__(user_message, **kwargs)
        self.decline_code = decline_code


class AuthenticationRequired(StripeFailure):
    """The bank wants the customer to confirm the payment themselves (3D Secure); it cannot be charged from here."""


class StripeRejected(StripeFailure):
    """Stripe refused the request (invalid, not allowed, bad API key). Sending it again will not help."""


class StripeUnavailable(StripeFailure):
    """Stripe could not be reached, answered with a server error, or kept rate-limiting us, even after retries."""


# --- results ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefundResult:
    id: str
    status: str  # Stripe's: pending, requires_action, succeeded, failed, canceled
    amount: int
    currency: str


@dataclass(frozen=True)
class ChargeResult:
    payment_intent_id: str
    charge_id: str | None
    status: str  # succeeded, or processing
    amount: int
    currency: str
    card_brand: str | None
    card_last4: str | None


# --- messages ---------------------------------------------------------------------------------------------------

_ASK_ANOTHER_CARD = "Ask the customer to use another card or to call their bank."

# Decline codes in plain words. Codes that point at fraud (lost, stolen, pickup, fraudulent) get the generic
# sentence, as Stripe advises: whoever reads it may pass it on to the customer.
_DECLINE_MESSAGES: dict[str, str] = {
    "insufficient_funds": "The card was declined: not enough money on it. Ask the customer to use another card, or try again once they have topped it up.",
    "expired_card": "The card has expired. Ask the customer to add a new card, then try again.",
    "do_not_honor": f"The customer's bank declined the payment without giving a reason. {_ASK_ANOTHER_CARD}",
    "generic_decline": f"The card was declined. {_ASK_ANOTHER_CARD}",
    "incorrect_cvc": "The card was declined: its security code does not match. Ask the customer to add the card again.",
    "incorrect_number": "The card was declined: its number is not valid. Ask the customer to add the card again.",
    "card_velocity_exceeded": f"The card was declined: it has reached its spending limit. {_ASK_ANOTHER_CARD}",
    "withdrawal_count_limit_exceeded": f"The card was declined: it has reached its spending limit. {_ASK_ANOTHER_CARD}",
    "card_not_supported": "The card does not support this kind of payment. Ask the customer to use another card.",
    "currency_not_supported": "The card cannot be charged in this currency. Ask the customer to use another card.",
    "transaction_not_allowed": f"The customer's bank does not allow this payment on this card. {_ASK_ANOTHER_CARD}",
    "processing_error": "The card could not be charged because of a processing error. Nothing was taken; try again in a few minutes.",
    "try_again_later": "The customer's bank asked us to try again later. Nothing was taken; try again in a few minutes.",
    "reenter_transaction": "The customer's bank could not process the payment. Nothing was taken; try again in a few minutes.",
    "call_issuer": f"The card was declined; the customer's bank wants them to call it. {_ASK_ANOTHER_CARD}",
}
_GENERIC_DECLINE = _DECLINE_MESSAGES["generic_decline"]

AUTHENTICATION_REQUIRED_MESSAGE = (
    "The customer's bank wants them to confirm this payment themselves, so it cannot be charged from here. "
    "Nothing was taken; send the customer a payment link or ask them to pay at checkout."
)

_REJECTED_MESSAGES: dict[str, str] = {
    "charge_already_refunded": "This payment has already been refunded in full; nothing more was refunded.",
    "amount_too_large": "That is more than is left to refund on this payment; nothing was refunded. Check the amount and try again.",
    "charge_disputed": "This payment is disputed by the customer, so it cannot be refunded here; answer the dispute in Stripe.",
    RESOURCE_MISSING: "Stripe has no record of this {noun}; it may have been deleted. Check the record in Stripe.",
    "email_invalid": "Stripe does not accept that email address; check it and try again.",
    "payment_method_unexpected_state": "The customer's saved card cannot be used any more. Ask the customer to add a card again.",
}


def _worth_retrying(error: stripe.StripeError) -> bool:
    """A failure another try with the same key may get past: the network, a conflict, a rate limit, a 5xx."""
    if isinstance(error, stripe.APIConnectionError):
        return True
    said = (error.headers or {}).get("stripe-should-retry") if hasattr(error, "headers") else None
    if said in ("true", "false"):
        return said == "true"
    status = error.http_status or 0
    return status in (409, 429) or status >= 500


def _refused_unheard(error: stripe.StripeError) -> bool:
    """Refused before Stripe's idempotency layer: rate limited, or the key not accepted."""
    return isinstance(error, stripe.RateLimitError | stripe.AuthenticationError | stripe.PermissionError)


def _error_body(error: stripe.StripeError) -> dict[str, Any]:
    body = error.json_body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"]
    return {}


def _payment_intent_id_of(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return value.get("id")
    return None


def _card_failure(
    code: str | None,
    decline_code: str | None,
    *,
    stripe_message: str | None,
    request_id: str | None,
    payment_intent_id: str | None,
    replayed: bool = False,
) -> StripeFailure:
    common = {
        "code": code,
        "stripe_message": stripe_message,
        "request_id": request_id,
        "payment_intent_id": payment_intent_id,
        "replayed": replayed,
    }
    if "authentication_required" in (code, decline_code):
        return AuthenticationRequired(AUTHENTICATION_REQUIRED_MESSAGE, **common)
    reason = decline_code or code or "generic_decline"
    return CardDeclined(_DECLINE_MESSAGES.get(reason, _GENERIC_DECLINE), decline_code=decline_code, **common)


def _translate(error: stripe.StripeError, noun: str) -> StripeFailure:
    """Turn what stripe-python raised into our failure with a sentence for Slack."""
    body = _error_body(error)
    # Stripe's 404s always carry resource_missing; an answer without a code (localstripe's) means the same.
    code = body.get("code") or error.code or (RESOURCE_MISSING if error.http_status == 404 else None)
    message = body.get("message") or error.user_message
    request_id = error.request_id
    replayed = (error.headers or {}).get("idempotent-replayed") == "true"
    common = {"stripe_message": message, "request_id": request_id, "replayed": replayed}

    if isinstance(error, stripe.CardError):
        return _card_failure(
            code,
            body.get("decline_code"),
            stripe_message=message,
            request_id=request_id,
            payment_intent_id=_payment_intent_id_of(body.get("payment_intent")),
            replayed=replayed,
        )
    if isinstance(error, stripe.AuthenticationError):
        return StripeRejected("Stripe refused our API key; tell whoever runs the bot.", code=code, **common)
    if isinstance(error, stripe.PermissionError):
        return StripeRejected(
            "Our Stripe API key is not allowed to do this; tell whoever runs the bot.", code=code, **common
        )
    if isinstance(error, stripe.IdempotencyError):
        return StripeRejected(
            "Stripe already received this action with different details, so it refused this one. "
            "Reload the record and start again.",
            code=code or "idempotency_error",
            **common,
        )
    if isinstance(error, stripe.RateLimitError):
        return StripeUnavailable(
            "Stripe is getting too many requests right now; nothing was done. Try again in a minute.",
            code=code or "rate_limit",
            outcome_unknown=False,  # a rate-limited request is refused before Stripe runs it
            **common,
        )
    if isinstance(error, stripe.InvalidRequestError):
        template = _REJECTED_MESSAGES.get(code or "")
        if template is None and error.http_status == 404:
            template = _REJECTED_MESSAGES[RESOURCE_MISSING]
        if (
            template is None
            and (message or "").startswith("Refund amount")
            and "greater than" in (message or "")
        ):
            template = _REJECTED_MESSAGES["amount_too_large"]
        if template is None:
            reason = (message or "no reason given").rstrip(".")
            return StripeRejected(f"Stripe refused to do this: {reason}.", code=code, **common)
        return StripeRejected(template.format(noun=noun), code=code, **common)
    if isinstance(error, stripe.APIConnectionError):
        return StripeUnavailable(
            "Stripe could not be reached, so we cannot tell whether this went through. "
            "Check the record in a minute before trying again.",
            code=code,
            outcome_unknown=True,
            answered=False,
            **common,
        )
    if error.http_status == 409:  # the same key is still being worked on
        return StripeUnavailable(
            "Stripe is still working on an earlier request of the same kind, so we cannot tell yet whether this "
            "went through. Check the record in a minute before trying again.",
            code=IN_PROGRESS,
            outcome_unknown=True,
            **common,
        )
    # APIError: a 5xx, or an answer we could not read. Stripe may have acted.
    return StripeUnavailable(
        "Stripe had a problem on its side, so we cannot tell whether this went through. "
        "Check the record in a minute before trying again.",
        code=code,
        outcome_unknown=True,
        **common,
    )


# --- helpers ----------------------------------------------------------------------------------------------------


def _timestamp(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    return datetime.fromtimestamp(int(value), tz=UTC)


def _unix(when: datetime) -> int:
    if when.tzinfo is None:
        raise ValueError("Stripe times must be timezone-aware (UTC)")
    return int(when.timestamp())


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, stripe.StripeObject):
        return obj.to_dict()
    return dict(obj)


def charge_result(pi: Obj) -> ChargeResult:
    """A payment intent as Stripe sends it, as the charge it made."""
    charge_id, brand, last4 = _charge_id_and_card(pi)
    return ChargeResult(pi["id"], charge_id, pi["status"], pi["amount"], pi["currency"], brand, last4)


def _charge_id_and_card(pi: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    card: Mapping[str, Any] = {}
    payment_method = pi.get("payment_method")
    if isinstance(payment_method, Mapping):
        card = payment_method.get("card") or {}
    latest = pi.get("latest_charge")
    charge_id = latest if isinstance(latest, str) else (latest or {}).get("id")
    if not card and isinstance(latest, Mapping):
        card = ((latest.get("payment_method_details") or {}).get("card")) or {}
    return charge_id, card.get("brand"), card.get("last4")


# --- the gateway ------------------------------------------------------------------------------------------------


class StripeGateway:
    """Every Stripe call the bot makes. Give it a `StripeClient` made without retries, or use `connect`."""

    def __init__(
        self,
        client: stripe.StripeClient,
        limits: CallLimits | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self.limits = limits or CallLimits()
        self._sleep = sleep

    @classmethod
    def connect(
        cls,
        api_key: str,
        *,
        api_base: str | None = None,
        http_client: stripe.HTTPClient | None = None,
        limits: CallLimits | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> StripeGateway:
        """A gateway on a new client: API version pinned, each try bounded by `limits`, `api_base` for localstripe
        or a proxy."""
        limits = limits or CallLimits()
        client = stripe.StripeClient(
            api_key,
            stripe_version=API_VERSION,
            max_network_retries=0,  # the gateway retries, within its budget
            base_addresses={"api": api_base.rstrip("/")} if api_base else None,
            http_client=http_client
            or stripe.RequestsClient(timeout=(limits.connect_timeout, limits.read_timeout)),
        )
        return cls(client, limits, sleep=sleep)

    # -- plumbing --

    def _call(self, what: str, noun: str, request: Callable[[], T]) -> T:
        """Run one Stripe request, trying again with the same options (and so the same idempotency key) while a
        failure is worth retrying and another try fits in the budget; translate any failure."""
        deadline = time.monotonic() + self.limits.budget
        delays = list(self.limits.retry_delays)
        may_have_acted = False  # an earlier try of this call may have reached Stripe
        while True:
            try:
                return request()
            except stripe.StripeError as error:
                failure = _translate(error, noun)
                delay = delays.pop(0) * random.uniform(1.0, 1.5) if delays else None
                fits = delay is not None and time.monotonic() + delay + self.limits.longest_try <= deadline
                if fits and _worth_retrying(error):
                    may_have_acted = may_have_acted or failure.outcome_unknown
                    logger.info(
                        "Stripe %s failed (%s); trying again in %.1f s", what, type(error).__name__, delay
                    )
                    self._sleep(delay)  # type: ignore[arg-type]
                    continue
                if may_have_acted and _refused_unheard(error):
                    # Refused before Stripe looked at the key: it says nothing of what the earlier try did.
                    failure = StripeUnavailable(
                        "Stripe did not answer one of our tries and then refused the next, so we cannot tell "
                        "whether this went through. Check the record in a minute before trying again.",
                        code=failure.code,
                        outcome_unknown=True,
                        stripe_message=failure.stripe_message,
                        request_id=failure.request_id,
                    )
                logger.warning(
                    "Stripe %s failed: %s (code %s, request %s, outcome unknown: %s)",
                    what,
                    failure.stripe_message,
                    failure.code,
                    failure.request_id,
                    failure.outcome_unknown,
                )
                raise failure from error

    @staticmethod
    def _write_options(idempotency_key: str) -> stripe.RequestOptions:
        if not idempotency_key:
            raise ValueError("every Stripe write needs an idempotency key")
        return {"idempotency_key": idempotency_key}

    # -- payments --

    def refund(
        self,
        payment_intent_id: str,
        amount: int,
        *,
        reason: str | None,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> RefundResult:
        """Refund `amount` (minor units) of a payment. `reason` is Stripe's: duplicate, fraudulent (which also puts
        the card and email on Stripe's block lists), requested_by_customer, or None."""
        if amount <= 0:
            raise ValueError("a refund amount must be positive")
        if reason is not None and reason not in REFUND_REASONS:
            raise ValueError(
                f"unknown refund reason {reason!r}; Stripe takes {sorted(REFUND_REASONS)} or None"
            )
        params: dict[str, Any] = {"payment_intent": payment_intent_id, "amount": amount}
        if reason is not None:
            params["reason"] = reason
        if metadata:
            params["metadata"] = metadata
        options = self._write_options(idempotency_key)
        refund = self._call(
            "refund", "payment", lambda: self._client.v1.refunds.create(params=params, options=options)
        )
        return RefundResult(
            id=refund.id, status=refund.status, amount=refund.amount, currency=refund.currency
        )

    def charge_off_session(
        self,
        customer_id: str,
        payment_method_id: str,
        amount: int,
        currency: str,
        *,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> ChargeResult:
        """Charge a saved card while the customer is away. A decline or a bank asking for the customer's own
        confirmation raises `CardDeclined` / `AuthenticationRequired`; it never returns a failed payment."""
        if amount <= 0:
            raise ValueError("a charge amount must be positive")
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency.lower(),
            "customer": customer_id,
            "payment_method": payment_method_id,
            # Cards only: with Stripe's automatic payment methods, confirming may demand a return_url for
            # redirect-based methods, which makes no sense for a customer who is not there.
            "payment_method_types": ["card"],
            "confirm": True,
            "off_session": True,
            "expand": ["payment_method"],
        }
        # No `description`: localstripe rejects it. What was sold travels in metadata.
        if metadata:
            params["metadata"] = metadata
        options = self._write_options(idempotency_key)
        intent = self._call(
            "off-session charge",
            "payment",
            lambda: self._client.v1.payment_intents.create(params=params, options=options),
        )
        pi = _as_dict(intent)
        status = pi["status"]
        if status not in ("succeeded", "processing"):
            # Stripe answers an off-session failure with an error (handled above); a payment that still needs the
            # customer (localstripe answers that way) or has no usable card is the same answer for us.
            error = pi.get("last_payment_error") or {}
            failure = _card_failure(
                "authentication_required" if status == "requires_action" else error.get("code"),
                error.get("decline_code"),
                stripe_message=error.get("message") or f"payment intent status {status}",
                request_id=None,
                payment_intent_id=pi["id"],
            )
            logger.warning("Stripe off-session charge %s ended as %s", pi["id"], status)
            raise failure
        return charge_result(pi)

    def cancel_payment_intent(self, payment_intent_id: str, *, idempotency_key: str) -> None:
        """Cancel a payment that did not take the money, so it can never be completed later."""
        options = self._write_options(idempotency_key)
        self._call(
            "payment cancel",
            "payment",
            lambda: self._client.v1.payment_intents.cancel(payment_intent_id, options=options),
        )

    # -- subscriptions and payment plans: each answers the subscription as Stripe now has it --

    def cancel_subscription(self, subscription_id: str, *, at_period_end: bool, idempotency_key: str) -> Obj:
        """Cancel now (no more bills), or at the end of the period already paid for."""
        if at_period_end:
            return self._update_subscription(
                "cancel at period end", subscription_id, {"cancel_at_period_end": True}, idempotency_key
            )
        options = self._write_options(idempotency_key)
        sub = self._call(
            "cancel",
            "subscription",
            lambda: self._client.v1.subscriptions.cancel(subscription_id, options=options),
        )
        return _as_dict(sub)

    def _update_subscription(
        self, what: str, subscription_id: str, params: dict[str, Any], idempotency_key: str
    ) -> Obj:
        options = self._write_options(idempotency_key)
        sub = self._call(
            what,
            "subscription",
            lambda: self._client.v1.subscriptions.update(subscription_id, params=params, options=options),
        )
        return _as_dict(sub)

    def pause_payments(
        self, subscription_id: str, *, resumes_at: datetime | None, idempotency_key: str
    ) -> Obj:
        """Stop collecting payments: invoices made meanwhile are voided (the customer is not billed for the pause).
        Invoices made before the pause are still retried unless voided. Without `resumes_at`, until resumed."""
        pause: dict[str, Any] = {"behavior": "void"}
        if resumes_at is not None:
            pause["resumes_at"] = _unix(resumes_at)
        params: dict[str, Any] = {"pause_collection": pause}
        return self._update_subscription("pause payments", subscription_id, params, idempotency_key)

    def resume_payments(self, subscription_id: str, *, idempotency_key: str) -> Obj:
        """Collect payments again. An empty string unsets `pause_collection` (stripe-python types it `Literal['']`)."""
        params: dict[str, Any] = {"pause_collection": ""}
        return self._update_subscription("resume payments", subscription_id, params, idempotency_key)

    def reactivate(self, subscription_id: str, *, idempotency_key: str) -> Obj:
        """Back to collecting as scheduled: a cancel at period end taken back, and a pause ended, in one update."""
        params: dict[str, Any] = {"cancel_at_period_end": False, "pause_collection": ""}
        return self._update_subscription("reactivate", subscription_id, params, idempotency_key)

    def undo_cancel(self, subscription_id: str, *, on_a_date: bool, idempotency_key: str) -> Obj:
        """Take back a cancel not yet made: one at the period's end with `cancel_at_period_end=false` (Stripe
        clears the `cancel_at` it set with it), one on a date by unsetting `cancel_at` (an empty string)."""
        params: dict[str, Any] = {"cancel_at": ""} if on_a_date else {"cancel_at_period_end": False}
        return self._update_subscription("undo cancel", subscription_id, params, idempotency_key)

    def move_next_bill_date(self, subscription_id: str, when: datetime, *, idempotency_key: str) -> Obj:
        """Bill next on `when`, without charging for the days in between. Stripe does it with a trial until then,
        so the subscription shows `trialing` meanwhile: show it as "next bill date moved", not as a trial."""
        params: dict[str, Any] = {"trial_end": _unix(when), "proration_behavior": "none"}
        return self._update_subscription("move next bill date", subscription_id, params, idempotency_key)

    # -- a subscription's bills (invoices): each answers the invoice as Stripe now has it --

    def void_invoice(self, invoice_id: str, *, idempotency_key: str) -> Obj:
        """Stop collecting an open (or uncollectible) bill for good: Stripe no longer retries it and the customer
        owes nothing on it. It cannot be undone."""
        options = self._write_options(idempotency_key)
        invoice = self._call(
            "invoice void",
            "invoice",
            lambda: self._client.v1.invoices.void_invoice(invoice_id, options=options),
        )
        return _as_dict(invoice)

    def mark_invoice_uncollectible(self, invoice_id: str, *, idempotency_key: str) -> Obj:
        """Write an open bill off as bad debt: Stripe no longer retries it, and it stays owed (the customer may
        still pay it, or it may be voided later)."""
        options = self._write_options(idempotency_key)
        invoice = self._call(
            "invoice write-off",
            "invoice",
            lambda: self._client.v1.invoices.mark_uncollectible(invoice_id, options=options),
        )
        return _as_dict(invoice)

    def send_receipt(self, charge_id: str, email: str, *, idempotency_key: str) -> str | None:
        """Ask Stripe to email the receipt of a succeeded charge to `email`, by setting the charge's `receipt_email`
        (`POST /v1/charges/{id}`): Stripe sends a receipt when that address changes. Stripe sends none in test mode,
        and none when the charge already has this very address. Returns the address the charge now has."""
        params: dict[str, Any] = {"receipt_email": email}
        options = self._write_options(idempotency_key)
        charge = self._call(
            "receipt",
            "charge",
            lambda: self._client.v1.charges.update(charge_id, params=params, options=options),
        )
        return _as_dict(charge).get("receipt_email") or None

    def charge_receipt_email(self, charge_id: str) -> str | None:
        """The address a charge's receipt was last sent to (its `receipt_email`), or None."""
        charge = self._call("charge lookup", "charge", lambda: self._client.v1.charges.retrieve(charge_id))
        return _as_dict(charge).get("receipt_email") or None

    # -- customers --

    def update_email(self, customer_id: str, email: str, *, idempotency_key: str) -> None:
        params: dict[str, Any] = {"email": email}
        options = self._write_options(idempotency_key)
        self._call(
            "email change",
            "customer",
            lambda: self._client.v1.customers.update(customer_id, params=params, options=options),
        )

    def customer_email(self, customer_id: str) -> str | None:
        customer = self._call(
            "customer lookup", "customer", lambda: self._client.v1.customers.retrieve(customer_id)
        )
        return _as_dict(customer).get("email") or None

    def customer_emails(
        self, *, starting_after: str | None = None
    ) -> tuple[list[tuple[str, str | None]], str | None]:
        """One page of 100 customers as (id, email), and the cursor for the next page (None after the last)."""
        params: dict[str, Any] = {"limit": 100}
        if starting_after:
            params["starting_after"] = starting_after
        page = self._call("customer list", "customer", lambda: self._client.v1.customers.list(params=params))
        rows = [(c["id"], _as_dict(c).get("email") or None) for c in page.data]
        return rows, (rows[-1][0] if page.has_more and rows else None)

    _SERVICES = {
        "customer": "customers",
        "payment_method": "payment_methods",
        "subscription": "subscriptions",
        "product": "products",
        "payment_intent": "payment_intents",
        "charge": "charges",
        "invoice": "invoices",
        "refund": "refunds",
        "invoice_payment": "invoice_payments",
        "dispute": "disputes",
    }
    # What a lookup expands, so the object names what the records need of it. An invoice names its payment intent
    # only in `payments`, which Stripe leaves out unless asked for (API versions since 2025-03-31.basil).
    # A customer's tax ids are left out unless asked for too.
    _EXPANDED = {"invoice": ["payments"], "customer": ["tax_ids"]}

    def retrieve(self, kind: str, object_id: str) -> dict[str, Any]:
        """An object as Stripe has it now, as a plain dict (webhooks re-read what their event names); for
        CUSTOMER_CARDS, the customer's saved cards; for INVOICES_PAID_BY, the invoice payments of a payment
        intent."""
        if kind == CUSTOMER_CARDS:
            return {"id": object_id, "data": self.customer_cards(object_id)}
        if kind == INVOICES_PAID_BY:
            return {"id": object_id, "data": self.invoices_paid_by(object_id)}
        if kind == CUSTOMER_TAX_IDS:
            return {"id": object_id, "data": self.customer_tax_ids(object_id)}
        service = getattr(self._client.v1, self._SERVICES[kind])
        expand = self._EXPANDED.get(kind)
        params: dict[str, Any] = {"expand": expand} if expand else {}
        return _as_dict(
            self._call(
                f"{kind} lookup", kind.replace("_", " "), lambda: service.retrieve(object_id, params=params)
            )
        )

    def list_page(
        self, kind: str, *, starting_after: str | None = None, **params: Any
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of 100 objects, oldest cursor first as Stripe lists them, and the cursor for the next page."""
        service = getattr(self._client.v1, self._SERVICES[kind])
        query: dict[str, Any] = {"limit": 100, **params}
        if starting_after:
            query["starting_after"] = starting_after
        page = self._call(f"{kind} list", kind.replace("_", " "), lambda: service.list(params=query))
        rows = [_as_dict(item) for item in page.data]
        return rows, (rows[-1]["id"] if page.has_more and rows else None)

    def customer_cards(self, customer_id: str) -> list[dict[str, Any]]:
        """The cards saved to a customer, newest first: `GET /v1/payment_methods?customer=…&type=card` (the first
        100; a customer with more is not one whose newest card is in doubt)."""
        cards, _ = self.list_page("payment_method", customer=customer_id, type="card")
        return cards

    def customer_tax_ids(self, customer_id: str) -> list[dict[str, Any]]:
        """A customer's tax ids, newest first: `GET /v1/customers/{id}/tax_ids?limit=100` (the first 100; Stripe
        keeps far fewer for one customer)."""
        page = self._call(
            "tax id list",
            "tax id",
            lambda: self._client.v1.customers.tax_ids.list(customer_id, params={"limit": 100}),
        )
        return [_as_dict(item) for item in page.data]

    def invoices_paid_by(self, payment_intent_id: str) -> list[dict[str, Any]]:
        """The invoice payments of a payment intent, each with its invoice expanded: `GET /v1/invoice_payments?
        payment[type]=payment_intent&payment[payment_intent]=…&expand[]=data.invoice`. None for a one-off payment."""
        payments, _ = self.list_page(
            "invoice_payment",
            payment={"type": "payment_intent", "payment_intent": payment_intent_id},
            expand=["data.invoice"],
        )
        return payments

    # -- what an earlier attempt did, when its answer never reached us --

    def find_refund(self, payment_intent_id: str, action_key: str) -> RefundResult | None:
        """The refund of this payment made for `action_key` (kept in its metadata), if Stripe has one."""
        refunds, _ = self.list_page("refund", payment_intent=payment_intent_id)
        for refund in refunds:
            made = refund.get("status") in (
                "succeeded",
                "pending",
            )  # not failed, canceled, or awaiting action
            if made and (refund.get("metadata") or {}).get(ACTION_KEY) == action_key:
                return RefundResult(refund["id"], refund["status"], refund["amount"], refund["currency"])
        return None

    def find_charge(self, customer_id: str, action_key: str) -> ChargeResult | None:
        """The payment of this customer made for `action_key` that took (or is taking) the money, if Stripe has
        one. Stripe lists the newest 100 first, far more than one customer is charged in the minutes that matter."""
        intents, _ = self.list_page("payment_intent", customer=customer_id)
        for pi in intents:
            made = pi.get("status") in ("succeeded", "processing")
            if made and (pi.get("metadata") or {}).get(ACTION_KEY) == action_key:
                return charge_result(pi)
        return None
