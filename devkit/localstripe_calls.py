"""localstripe taught the Stripe calls the bot makes that it lacks, answered as Stripe documents them; imported by
`devkit.localstripe_server`, which runs localstripe in its own process.

- Refunds take `reason` (duplicate, fraudulent, requested_by_customer) and carry it; a refund beyond what is left
  of the payment is refused as Stripe refuses it.
- Subscription updates take `pause_collection` ({behavior, resumes_at}, or "" to resume), `trial_end` (a future
  time, or "now") with `proration_behavior`, `cancel_at_period_end`, and `cancel_at` "" (a cancel on a date taken
  back), and answer the subscription with the fields Stripe sets for each: `pause_collection` (status unchanged; cleared once `resumes_at` has passed),
  `status` "trialing" with `trial_start`/`trial_end` and the billing cycle anchored at the trial's end,
  `cancel_at`/`canceled_at`. Cancelling now sets `canceled_at` and `ended_at`. A canceled subscription takes no
  other change. The current billing period (on the subscription and, as in API versions since 2025-03-31, on each
  item) is the one containing now, counted from the billing cycle anchor, whole `interval_count` intervals.
- Invoices: `POST /v1/invoices/{id}/void` takes an open or uncollectible invoice, as Stripe does, and ends the
  subscription only when the invoice is its first one, still unpaid (`incomplete` → `incomplete_expired`); localstripe
  ended the subscription whichever invoice was voided. `POST /v1/invoices/{id}/mark_uncollectible` takes an open
  invoice and answers it `uncollectible` (`status_transitions.marked_uncollectible_at`); it can still be voided.
  Others are refused as Stripe refuses them (400). An invoice has `payments` (API versions since 2025-03-31.basil):
  its payment intent as its one invoice payment, so `expand[]=payments` (and `data.payments` on a list) works.
- Customers take `business_name` and `individual_name` on update (API versions since 2025) and carry them.
- Idempotency, when the server is started with it (`idempotency()`): a POST's `Idempotency-Key` answers the
  same parameters with the first answer again for 24 hours (`Idempotent-Replayed: true`), other parameters with
  400 `idempotency_error`, and a key still being worked on with 409. As Stripe does, only answers of a request
  that began executing are kept (2xx, 402, 5xx); a refused one (400, 404, ...) is not.
- What localstripe still cannot do (an unknown parameter, its "Not implemented", a crash) is answered with a 400
  saying the local emulator cannot do it, never a 500: a 500 would tell the bot that Stripe may have acted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import localstripe.resources as resources
from aiohttp import web
from dateutil.relativedelta import relativedelta
from localstripe.errors import UserError

logger = logging.getLogger(__name__)

REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
PAUSE_BEHAVIORS = ("keep_as_draft", "mark_uncollectible", "void")
PRORATION_BEHAVIORS = ("always_invoice", "create_prorations", "none")
TRIAL_LIMIT = 2 * 365 * 86_400  # Stripe: a trial ends at most two years from the billing cycle anchor
REPLAY_WINDOW = 86_400.0  # seconds Stripe keeps an idempotency key's answer
_UNSET = object()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _now() -> int:
    return int(time.time())


def _invalid(message: str, param: str | None = None, code: str | None = None) -> UserError:
    contents: dict[str, Any] = {}
    if param is not None:
        contents["param"] = param
    if code is not None:
        contents["code"] = code
    return UserError(400, message, contents)


def _one_of(value: Any, allowed: tuple[str, ...], param: str) -> str:
    if value not in allowed:
        raise _invalid(f"Invalid {param}: must be one of {', '.join(allowed[:-1])}, or {allowed[-1]}", param)
    return value


def _future_timestamp(value: Any, param: str) -> int:
    moment = resources.try_convert_to_int(value)
    if type(moment) is not int or moment <= _now():
        raise _invalid("Invalid timestamp: must be an integer Unix timestamp in the future.", param)
    return moment


# --- refunds --------------------------------------------------------------------------------------------------

_original_refund_init = resources.Refund.__init__


def _refund_init(self, charge=None, payment_intent=None, amount=None, metadata=None, reason=None, **kwargs):
    if reason is not None and reason != "":
        _one_of(reason, REFUND_REASONS, "reason")
    _refuse_refunding_too_much(charge, payment_intent, amount)
    _original_refund_init(
        self, charge=charge, payment_intent=payment_intent, amount=amount, metadata=metadata, **kwargs
    )
    self.reason = reason or None


def _refuse_refunding_too_much(charge_id: Any, payment_intent_id: Any, amount: Any) -> None:
    """Stripe's answers to a refund of more than is left, or of a payment that took no money."""
    if isinstance(payment_intent_id, str) and charge_id is None:
        intent = resources.PaymentIntent._api_retrieve(payment_intent_id)
        if intent.latest_charge is None or intent.status not in ("succeeded", "processing"):
            raise _invalid(
                f"This PaymentIntent ({payment_intent_id}) does not have a successful charge to refund.",
                "payment_intent",
            )
        charge = intent.latest_charge
    elif isinstance(charge_id, str):
        charge = resources.Charge._api_retrieve(charge_id)
    else:
        return  # localstripe answers the missing payment itself
    left = charge.amount - charge.amount_refunded
    if left <= 0:
        raise _invalid(f"Charge {charge.id} has already been refunded.", code="charge_already_refunded")
    asked = resources.try_convert_to_int(amount)
    if type(asked) is int and asked > left:
        raise _invalid(
            f"Refund amount ({_shown(asked, charge.currency)}) is greater than unrefunded amount on charge "
            f"({_shown(left, charge.currency)})",
            "amount",
        )


_ZERO_DECIMAL = {
    "bif",
    "clp",
    "djf",
    "gnf",
    "jpy",
    "kmf",
    "krw",
    "mga",
    "pyg",
    "rwf",
    "ugx",
    "vnd",
    "vuv",
    "xaf",
}
_THREE_DECIMAL = {"bhd", "jod", "kwd", "omr", "tnd"}


def _shown(amount: int, currency: str) -> str:
    currency = currency.lower()
    places = 0 if currency in _ZERO_DECIMAL else 3 if currency in _THREE_DECIMAL else 2
    return f"{amount / 10**places:,.{places}f} {currency.upper()}"


# --- subscriptions ----------------------------------------------------------------------------------------------

_original_subscription_update = resources.Subscription._update


def _pause_collection(subscription) -> dict[str, Any] | None:
    """What Stripe shows: the pause, until its `resumes_at` has passed (then Stripe collects again)."""
    pause = subscription.__dict__.get("_pause")
    if pause and pause.get("resumes_at") and pause["resumes_at"] <= _now():
        subscription._pause = pause = None
    return dict(pause) if pause else None


def _pause_asked(value: Any) -> dict[str, Any] | None:
    if value == "":
        return None  # "" unsets it: payments are collected again
    if not isinstance(value, dict):
        raise _invalid("Invalid pause_collection: must be an object or an empty string", "pause_collection")
    unknown = set(value) - {"behavior", "resumes_at"}
    if unknown:
        raise _invalid(f"Received unknown parameter: pause_collection[{sorted(unknown)[0]}]")
    if not value.get("behavior"):
        raise _invalid(
            "Missing required param: pause_collection[behavior].",
            "pause_collection[behavior]",
            "parameter_missing",
        )
    pause: dict[str, Any] = {
        "behavior": _one_of(value["behavior"], PAUSE_BEHAVIORS, "pause_collection[behavior]"),
        "resumes_at": None,
    }
    if value.get("resumes_at") not in (None, ""):
        pause["resumes_at"] = _future_timestamp(value["resumes_at"], "pause_collection[resumes_at]")
    return pause


def _trial_end_asked(subscription, value: Any) -> int | str:
    if value == "now":
        return "now"
    moment = _future_timestamp(value, "trial_end")
    if moment > _billing_anchor(subscription) + TRIAL_LIMIT:
        raise _invalid(
            "Invalid trial_end: can be at most two years from the billing cycle anchor.", "trial_end"
        )
    return moment


def _update_subscription(
    self,
    pause_collection=_UNSET,
    trial_end=None,
    proration_behavior=None,
    cancel_at_period_end=None,
    cancel_at=None,
    **rest,
):
    # Every check first: an update Stripe refuses changes nothing.
    changes = {key for key, value in rest.items() if value is not None and key != "metadata"}
    asked = (
        pause_collection is not _UNSET
        or trial_end is not None
        or cancel_at_period_end is not None
        or cancel_at is not None
    )
    if self.status in ("canceled", "incomplete_expired") and (changes or asked):
        raise _invalid("A canceled subscription can only update its cancellation_details and metadata.")
    if proration_behavior is not None:
        _one_of(proration_behavior, PRORATION_BEHAVIORS, "proration_behavior")
    pause = _pause_asked(pause_collection) if pause_collection is not _UNSET else _UNSET
    trial = _trial_end_asked(self, trial_end) if trial_end is not None else None
    if cancel_at not in (None, ""):  # only unsetting a cancel on a date is taught (Undo cancel)
        raise _invalid("The local emulator can only unset cancel_at (an empty string).", "cancel_at")
    cancel_at_end = resources.try_convert_to_bool(cancel_at_period_end)
    if cancel_at_end is not None and type(cancel_at_end) is not bool:
        raise _invalid("Invalid boolean: cancel_at_period_end", "cancel_at_period_end")

    _original_subscription_update(self, **rest)

    if pause is not _UNSET:
        self._pause = pause
    if trial == "now":
        _end_trial_now(self)
    elif trial is not None:
        _start_trial_until(self, trial)
    if cancel_at_end is True:
        self.cancel_at_period_end = True
        self.cancel_at = self.current_period_end
        self.canceled_at = _now()  # Stripe: the time of the request, not the period's end
    elif cancel_at_end is False or cancel_at == "":
        self.cancel_at_period_end = False
        self.cancel_at = self.canceled_at = None


def _start_trial_until(subscription, trial_end: int) -> None:
    """Stripe: the subscription is `trialing` until `trial_end`, which becomes its billing cycle anchor; nothing is
    billed meanwhile (with proration_behavior none, nothing is credited either)."""
    now = _now()
    if subscription.status != "trialing":
        subscription.trial_start = now
    subscription.status = "trialing"
    subscription.trial_end = trial_end
    subscription.billing_cycle_anchor = trial_end
    subscription._period_start = now


def _end_trial_now(subscription) -> None:
    """Stripe: "now" ends a trial at once and bills the first period; a subscription not in a trial has none to end."""
    if subscription.status != "trialing":
        return
    now = _now()
    subscription.trial_end = now
    subscription.billing_cycle_anchor = now
    subscription._period_start = now
    subscription.status = "active"
    subscription._create_invoice()


_original_subscription_delete = resources.Subscription._api_delete.__func__


def _cancel_subscription(cls, id):
    subscription = _original_subscription_delete(cls, id)
    subscription.canceled_at = subscription.canceled_at or subscription.ended_at
    subscription.cancel_at_period_end = False
    subscription.cancel_at = None
    return subscription


# --- invoices ---------------------------------------------------------------------------------------------------

_original_invoice_status = resources.Invoice.status


def _invoice_status(invoice) -> str:
    status = _original_invoice_status.fget(invoice)
    return "uncollectible" if status == "open" and invoice.__dict__.get("_uncollectible") else status


def _void_invoice(cls, id, **kwargs):
    if kwargs:
        raise _invalid(f"Received unknown parameter: {sorted(kwargs)[0]}")
    invoice = resources.Invoice._api_retrieve(id)
    if invoice.status not in ("open", "uncollectible"):
        raise _invalid("You can only pass in open invoices. This invoice isn't open.")
    if invoice.payment_intent:
        intent = resources.PaymentIntent._api_retrieve(invoice.payment_intent)
        if intent.status not in ("canceled", "succeeded"):
            resources.PaymentIntent._api_cancel(invoice.payment_intent)
    invoice._voided = True
    invoice.status_transitions["voided_at"] = _now()
    if invoice.subscription:
        subscription = resources.Subscription._api_retrieve(invoice.subscription)
        if subscription.status == "incomplete":  # its first invoice: Stripe lets the subscription expire
            subscription._on_initial_payment_voided(invoice)
    return invoice


def _mark_uncollectible(cls, id, **kwargs):
    if kwargs:
        raise _invalid(f"Received unknown parameter: {sorted(kwargs)[0]}")
    invoice = resources.Invoice._api_retrieve(id)
    if invoice.status != "open":
        raise _invalid("You can only mark open invoices as uncollectible.")
    invoice._uncollectible = True
    invoice.status_transitions["marked_uncollectible_at"] = _now()
    return invoice


def _invoice_payments(invoice) -> dict[str, Any]:
    """Stripe's `payments` of an invoice: its payment intent as its one (default) invoice payment, none before it
    has one."""
    data = []
    if invoice.payment_intent:
        status = invoice.status
        transitions = invoice.status_transitions
        data.append(
            {
                "id": "inpay_" + invoice.id.removeprefix("in_"),
                "object": "invoice_payment",
                "amount_paid": invoice.amount_paid if status == "paid" else None,
                "amount_requested": invoice.amount_due,
                "created": transitions.get("finalized_at") or invoice.date,
                "currency": invoice.currency,
                "invoice": invoice.id,
                "is_default": True,
                "livemode": False,
                "payment": {"type": "payment_intent", "payment_intent": invoice.payment_intent},
                "status": {"paid": "paid", "void": "canceled"}.get(status, "open"),
                "status_transitions": {
                    "canceled_at": transitions.get("voided_at"),
                    "paid_at": transitions.get("paid_at"),
                },
            }
        )
    return {
        "object": "list",
        "data": data,
        "has_more": False,
        "url": f"/v1/invoice_payments?invoice={invoice.id}",
    }


def _teach_invoices() -> None:
    resources.Invoice.status = property(_invoice_status)
    resources.Invoice.payments = property(_invoice_payments)
    resources.Invoice._uncollectible = False
    void = classmethod(_void_invoice).__get__(None, resources.Invoice)
    uncollectible = classmethod(_mark_uncollectible).__get__(None, resources.Invoice)
    routes = [route for route in resources.extra_apis if route[:2] != ("POST", "/v1/invoices/{id}/void")]
    routes += [
        ("POST", "/v1/invoices/{id}/void", void),
        ("POST", "/v1/invoices/{id}/mark_uncollectible", uncollectible),
    ]
    resources.extra_apis[:] = routes


# --- billing periods --------------------------------------------------------------------------------------------


def _billing_anchor(subscription) -> int:
    return subscription.billing_cycle_anchor or subscription.start_date


def _after(moment: int, plan, periods: int) -> int:
    count = periods * (plan.interval_count or 1)
    step = {
        "day": relativedelta(days=count),
        "week": relativedelta(weeks=count),
        "month": relativedelta(months=count),
        "year": relativedelta(years=count),
    }[plan.interval]
    return int((datetime.fromtimestamp(moment) + step).timestamp())


def _current_period(item) -> dict[str, int]:
    """The billing period containing now: up to an anchor still ahead (a trial, or a first, partial period), else
    whole intervals counted from the anchor, as Stripe renews."""
    now = _now()
    subscription = resources.store.get("subscription:" + item._subscription) if item._subscription else None
    if subscription is None:
        return {"start": now, "end": _after(now, item.plan, 1)}
    anchor = _billing_anchor(subscription)
    if anchor > now:
        start = subscription.__dict__.get("_period_start") or subscription.start_date
        return {"start": min(start, anchor), "end": anchor}
    periods = 1
    while _after(anchor, item.plan, periods) <= now:
        periods += 1
    return {"start": _after(anchor, item.plan, periods - 1), "end": _after(anchor, item.plan, periods)}


# --- the HTTP side: idempotency, and no 500 for what the emulator cannot do ------------------------------------------


def _cannot(request: web.Request, what: str) -> web.Response:
    message = (
        f"The local Stripe emulator (localstripe) cannot do this ({request.method} {request.path}: {what}). "
        "Stripe itself can: set STRIPE_API_KEY to a test-mode key to try it there."
    )
    return UserError(400, message, {"code": "emulator_unsupported"}).to_response()


@web.middleware
async def answer_what_it_cannot_do(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except UserError as error:
        if error.code < 500:
            return error.to_response()
        return _cannot(request, error.body["error"].get("message") or "not implemented")
    except Exception as error:  # an unknown parameter (TypeError), or one of localstripe's own gaps
        logger.warning("localstripe cannot answer %s %s", request.method, request.path, exc_info=True)
        return _cannot(request, f"{type(error).__name__}: {error}")


class _Idempotency:
    """Stripe's idempotency layer: keys scoped by API key, each answer kept for REPLAY_WINDOW seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.answers: dict[tuple[str, str], tuple[float, tuple, int, bytes, str]] = {}
        self.in_flight: set[tuple[str, str]] = set()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key")
        if request.method != "POST" or not key:
            return await handler(request)
        scope = (request.headers.get("Authorization", ""), key)
        asked = (request.path, tuple(sorted(parse_qsl(await request.text(), keep_blank_values=True))))
        stored = self.answers.get(scope)
        if stored is not None and self.clock() - stored[0] >= REPLAY_WINDOW:
            del self.answers[scope]
            stored = None
        if scope in self.in_flight:
            return _idempotency_error(
                409,
                "There is currently another in-progress request using this Idempotent Key (that probably means "
                "you submitted twice, and the other request is still going through): "
                f"{key}. Please try again later.",
                "idempotency_key_in_use",
            )
        if stored is not None:
            _, first, status, body, content_type = stored
            if first != asked:
                return _idempotency_error(
                    400,
                    "Keys for idempotent requests can only be used with the same parameters they were first used "
                    f"with. Try using a key other than '{key}' if you meant to execute a different request.",
                )
            replayed = web.Response(status=status, body=body, content_type=content_type)
            replayed.headers["Idempotent-Replayed"] = "true"
            replayed.headers["Idempotency-Key"] = key
            return replayed
        self.in_flight.add(scope)
        try:
            response = await answer_what_it_cannot_do(request, handler)
        finally:
            self.in_flight.discard(scope)
        if isinstance(response, web.Response) and (
            200 <= response.status < 300 or response.status == 402 or response.status >= 500
        ):
            body = response.body if isinstance(response.body, bytes) else b""
            self.answers[scope] = (self.clock(), asked, response.status, body, response.content_type)
        response.headers["Idempotency-Key"] = key
        return response


def _idempotency_error(status: int, message: str, code: str | None = None) -> web.Response:
    error: dict[str, Any] = {"type": "idempotency_error", "message": message}
    if code:
        error["code"] = code
    return web.json_response({"error": error}, status=status)


# --- wiring -------------------------------------------------------------------------------------------------------


def patch() -> None:
    """Teach localstripe's resources the calls above; the HTTP side is added by `serve_with` (see below)."""
    resources.Refund.__init__ = _refund_init
    resources.Refund.reason = None
    resources.Customer.business_name = None  # a class default makes them updatable (localstripe's _update)
    resources.Customer.individual_name = None
    resources.Subscription._update = _update_subscription
    resources.Subscription._api_delete = classmethod(_cancel_subscription)
    resources.Subscription.pause_collection = property(_pause_collection)
    resources.Subscription._pause = None
    resources.SubscriptionItem._current_period = _current_period
    _teach_invoices()
    resources.SubscriptionItem.current_period_start = property(lambda item: item._current_period()["start"])
    resources.SubscriptionItem.current_period_end = property(lambda item: item._current_period()["end"])


def add_middlewares(app: web.Application, *, idempotency: bool) -> None:
    """Innermost, after localstripe's own error and authentication layers: answer what it cannot do with a 400, and
    keep Stripe's idempotency if asked."""
    app.middlewares.append(_Idempotency().middleware if idempotency else answer_what_it_cannot_do)
