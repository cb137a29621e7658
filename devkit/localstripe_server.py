"""localstripe, started in its own process with two of its costs that grow with its state fixed, the Stripe calls
the bot makes that it lacks taught to it (`devkit.localstripe_calls`), and listening on this machine only:
`python -m devkit.localstripe_server --port N --from-scratch [--host 127.0.0.1] [--idempotency]`.

- It rewrites its whole state to /tmp/localstripe.pickle after every write (quadratic, and shared by every
  instance on the machine). Started `--from-scratch` it never reads that file back, so the write is turned off.
- Every list call (and every charge's `refunds`, every customer's `subscriptions`) scanned every object it holds.
  The store now also keeps each kind of object apart, in the same insertion order, so a list of one kind reads
  only that kind.

What it answers is unchanged by these two, except that its list of payment intents takes the `customer` filter
that Stripe's has (the bot looks up a charge whose answer was lost among the customer's payment intents), and
that `GET /v1/disputes` answers an empty list (it has no disputes; the import lists them).

localstripe itself binds every interface (`::`); this serves it on `--host` (127.0.0.1 unless told otherwise), so a
demo's emulator is not open to the network. `--idempotency` adds Stripe's idempotency keys (off by default: tests
that inject faults put `tests/stripe_standin.py`, which keeps its own, in front).
"""

from __future__ import annotations

import argparse
import logging
from collections import defaultdict
from typing import Any

import localstripe.resources as resources

from devkit import localstripe_calls


def _kind(key: str) -> str:
    return key.split(":", 1)[0]


def _set_item(store: resources.Store, key: str, value: Any) -> None:
    dict.__setitem__(store, key, value)
    store.kinds[_kind(key)][key] = value


def _del_item(store: resources.Store, key: str) -> None:
    dict.__delitem__(store, key)
    store.kinds[_kind(key)].pop(key, None)


def _clear(store: resources.Store) -> None:
    dict.clear(store)
    store.kinds = defaultdict(dict)


def _list_all(cls, url, limit=None, starting_after=None, **kwargs):
    if kwargs:
        raise resources.UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
    listed = resources.List(url, limit=limit, starting_after=starting_after)
    listed._list = list(resources.store.kinds.get(cls.object, {}).values())
    return listed


def _list_payment_intents(cls, url, customer=None, limit=None, starting_after=None, **kwargs):
    listed = _list_all(cls, url, limit=limit, starting_after=starting_after, **kwargs)
    if customer is not None:
        listed._list = [intent for intent in listed._list if intent.customer == customer]
    return listed


async def _no_disputes(request):
    """localstripe has no disputes (nothing can dispute its charges): listing them answers Stripe's empty list, so
    the import's disputes step runs against it as against an account that never had one."""
    from aiohttp import web

    return web.json_response({"object": "list", "url": "/v1/disputes", "data": [], "has_more": False})


def patch() -> None:
    localstripe_calls.patch()
    resources.Store.dump_to_disk = lambda self: None
    resources.Store.__setitem__ = _set_item
    resources.Store.__delitem__ = _del_item
    resources.Store.clear = _clear
    resources.StripeObject._api_list_all = classmethod(_list_all)
    resources.PaymentIntent._api_list_all = classmethod(_list_payment_intents)
    resources.store.kinds = defaultdict(dict)
    for key, value in list(resources.store.items()):
        _set_item(resources.store, key, value)
    from devkit.localstripe_check import install  # the account, webhook endpoints and restricted keys

    install()
    from localstripe import server

    server.app.router.add_get("/v1/disputes", _no_disputes)


def serve(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devkit.localstripe_server")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--from-scratch", action="store_true")
    parser.add_argument("--idempotency", action="store_true", help="keep Stripe's idempotency keys")
    args = parser.parse_args(argv)
    if not args.from_scratch:
        resources.store.try_load_from_disk()
    patch()
    from aiohttp import web
    from localstripe.server import app

    localstripe_calls.add_middlewares(app, idempotency=args.idempotency)
    access = logging.getLogger("aiohttp.access")
    access.setLevel(logging.DEBUG)
    access.addHandler(logging.StreamHandler())
    web.run_app(app, host=args.host, port=args.port, access_log=access, print=None)


if __name__ == "__main__":
    serve()
