"""localstripe, started in its own process with two of its costs that grow with its state fixed:
`python -m devkit.localstripe_server --port N --from-scratch` (the arguments are localstripe's own).

- It rewrites its whole state to /tmp/localstripe.pickle after every write (quadratic, and shared by every
  instance on the machine). Started `--from-scratch` it never reads that file back, so the write is turned off.
- Every list call (and every charge's `refunds`, every customer's `subscriptions`) scanned every object it holds.
  The store now also keeps each kind of object apart, in the same insertion order, so a list of one kind reads
  only that kind.

What it answers is unchanged, except that its list of payment intents takes the `customer` filter that Stripe's
has (the bot looks up a charge whose answer was lost among the customer's payment intents).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import localstripe.resources as resources


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


def patch() -> None:
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


if __name__ == "__main__":
    patch()
    from localstripe.server import start

    start()
