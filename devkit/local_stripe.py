"""Start localstripe, a local Stripe emulator, for demos and tests: `with LocalStripe() as stripe_server: ...`.

localstripe is GPL and a dev dependency (`pip install -e '.[dev]'`), never a runtime one: this module imports
nothing from it and only runs it as a separate process, through `devkit.localstripe_server` (which starts it
with its state kept in memory only, its store indexed by kind, the Stripe calls the bot makes that localstripe
lacks taught to it, and listening on 127.0.0.1 only; see there and `devkit.localstripe_calls`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from types import TracebackType
from typing import IO
from urllib.parse import urlencode

API_KEY = "sk_test_local"  # localstripe accepts any key that starts with sk_
HOST = "127.0.0.1"  # this machine only: a demo's emulator is nobody else's business
STARTUP_TIMEOUT = 20.0  # seconds


class LocalStripeUnavailable(RuntimeError):
    """localstripe is not installed, or did not start."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


class LocalStripe:
    """A localstripe process on a free port of this machine (127.0.0.1 only), started empty. With `idempotency`
    it keeps Stripe's idempotency keys, as the shell needs; tests that inject faults leave it off and put
    `tests/stripe_standin.py`, which keeps its own, in front."""

    def __init__(
        self, *, port: int | None = None, startup_timeout: float = STARTUP_TIMEOUT, idempotency: bool = False
    ) -> None:
        self.port = port
        self.idempotency = idempotency
        self.api_key = API_KEY
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("LocalStripe is not started")
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> LocalStripe:
        if self._process is not None:
            return self
        if importlib.util.find_spec("localstripe") is None:
            raise LocalStripeUnavailable(
                "localstripe is not installed in this Python environment; install the dev tools with "
                "pip install -e '.[dev]'"
            )
        chosen_port = self.port
        attempts = 1 if chosen_port is not None else 3  # a free port may be taken before localstripe binds it
        for attempt in range(1, attempts + 1):
            self.port = chosen_port if chosen_port is not None else _free_port()
            self._log = tempfile.NamedTemporaryFile(prefix="localstripe-", suffix=".log")  # noqa: SIM115
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "devkit.localstripe_server",
                    "--host",
                    HOST,
                    "--port",
                    str(self.port),
                    "--from-scratch",
                    *(["--idempotency"] if self.idempotency else []),
                ],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )
            try:
                self._wait_until_answering()
                return self
            except LocalStripeUnavailable:
                exited_early = self._process is not None and self._process.poll() is not None
                self.stop()
                if attempt == attempts or not exited_early:
                    raise
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _wait_until_answering(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self._startup_timeout
        delay = 0.02
        while True:
            if self._process.poll() is not None:
                raise LocalStripeUnavailable(
                    f"localstripe exited with code {self._process.returncode} before answering "
                    f"on port {self.port}:\n{self._log_text()}"
                )
            try:
                with urllib.request.urlopen(self.url + "/v1/customers?limit=1", timeout=1):
                    return
            except urllib.error.HTTPError:
                return  # any HTTP answer (even 401) means it is serving
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise LocalStripeUnavailable(
                    f"localstripe did not answer on {self.url} within {self._startup_timeout:.0f} s:\n"
                    f"{self._log_text()}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def _log_text(self) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        with open(self._log.name, "rb") as log:
            return log.read().decode("utf-8", "replace")[-4000:]

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    def configure_webhook(
        self, webhook_id: str, url: str, secret: str, events: Iterable[str] | None = None
    ) -> None:
        """Have localstripe send signed events to `url` (all events when `events` is None)."""
        form: list[tuple[str, str]] = [("url", url), ("secret", secret)]
        form += [("events[]", event) for event in events or ()]
        request = urllib.request.Request(
            f"{self.url}/_config/webhooks/{webhook_id}",
            data=urlencode(form).encode(),
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10):
                pass
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", "replace")
            with contextlib.suppress(ValueError):
                detail = json.loads(detail)["error"].get("message", detail)
            raise LocalStripeUnavailable(
                f"localstripe refused the webhook configuration: {detail}"
            ) from error

    def __enter__(self) -> LocalStripe:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def link_demo_customer(db, server: LocalStripe, customer_id: int = 1) -> None:
    """Give one demo customer a life in this local Stripe, so the shell can really act on them: a Stripe customer
    with a test card, a paid payment for each of their payments not yet fully refunded, and a subscription for each live
    subscription or plan (billing next when our record says; a plan carries its instalments in its metadata, as
    the bot's plans do); our records then point at them. Other demo customers keep ids Stripe does not know."""
    import stripe
    from sqlalchemy import select

    from bot.models import LIVE_STATUSES, Customer, Order, Payment, PaymentStatus, Recurring
    from bot.stripe_sync import PLAN_METADATA

    client = stripe.StripeClient(server.api_key, base_addresses={"api": server.url}, max_network_retries=0)
    with db.session() as session:
        customer = session.get(Customer, customer_id)
        if customer is None:
            return
        created = client.v1.customers.create(params={"email": customer.email, "name": customer.name})
        card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}
        method = client.v1.payment_methods.create(params={"type": "card", "card": card})
        client.v1.payment_methods.attach(method.id, params={"customer": created.id})
        client.v1.customers.update(
            created.id, params={"invoice_settings": {"default_payment_method": method.id}}
        )
        customer.stripe_customer_id, customer.default_payment_method_id = created.id, method.id
        customer.card_brand, customer.card_last4, customer.card_exp_month, customer.card_exp_year = (
            "visa",
            "4242",
            12,
            2030,
        )
        paid = (
            select(Payment)
            .join(Order, Order.id == Payment.order_id)
            .where(
                Order.customer_id == customer_id,
                Payment.status == PaymentStatus.PAID.value,
                Payment.amount_refunded < Payment.amount,
            )
        )
        for payment in session.scalars(paid):
            intent = client.v1.payment_intents.create(
                params={
                    "amount": payment.amount,
                    "currency": payment.currency,
                    "customer": created.id,
                    "payment_method": method.id,
                    "confirm": True,
                }
            )
            charge = intent.latest_charge
            payment.stripe_payment_intent_id = intent.id
            payment.stripe_charge_id = charge if isinstance(charge, str) else getattr(charge, "id", None)
        live = select(Recurring).where(
            Recurring.customer_id == customer_id, Recurring.status.in_([s.value for s in LIVE_STATUSES])
        )
        for recurring in session.scalars(live):
            product = client.v1.products.create(params={"name": recurring.product})
            plan = client.v1.plans.create(
                params={
                    "amount": recurring.amount,
                    "currency": recurring.currency,
                    "interval": recurring.interval,
                    "interval_count": recurring.interval_count,
                    "product": product.id,
                }
            )
            params: dict = {"customer": created.id, "items": [{"plan": plan.id}]}
            if recurring.installments_total:
                params["metadata"] = {PLAN_METADATA: str(recurring.installments_total)}
            period_end = recurring.current_period_end
            if period_end is not None and period_end.timestamp() > time.time():
                # Stripe bills next when our record does: the period it has just been paid for ends there.
                params["billing_cycle_anchor"] = int(period_end.timestamp())
            subscription = client.v1.subscriptions.create(params=params)
            recurring.stripe_subscription_id = subscription.id
