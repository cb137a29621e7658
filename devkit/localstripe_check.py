"""What `customer-bot check` asks Stripe that localstripe lacks: the account, webhook endpoints, restricted keys.

Installed into the localstripe process by `devkit.localstripe_server.patch()`:
- `GET /v1/account`: a test-mode account named `ACCOUNT_NAME`.
- `/v1/webhook_endpoints` (create, list, retrieve, delete): Stripe's endpoints, kept in localstripe's own webhook
  registry, so an endpoint created here is delivered to, and one set with `POST /_config/webhooks/<id>` is listed.
  An endpoint takes `enabled_events` (`["*"]` for every event) and answers its signing secret when created.
- Restricted keys (`rk_test_…`): `POST /_config/restricted_keys/<key>` with a JSON body
  `{"permissions": ["rak_refund_write", …]}` makes a key with those permissions. A call the key may not make is
  refused as Stripe refuses it (403, `invalid_request_error`, naming the permission that would allow it); a
  restricted key never configured is refused as an unknown key (401). Write implies read, as at Stripe.
"""

from __future__ import annotations

import base64
import secrets
import time
from typing import Any

import localstripe.server as server
from aiohttp import web
from localstripe.errors import UserError
from localstripe.webhooks import _webhooks, register_webhook

ACCOUNT_ID = "acct_local"
ACCOUNT_NAME = "Local Shop"

_restricted: dict[str, frozenset[str]] = {}  # key -> its permissions
_created: dict[str, int] = {}  # webhook endpoint id -> when it was created
# The resource a path names, as Stripe's permission names spell it (rak_<resource>_read / _write).
_RESOURCES = {"webhook_endpoints": "webhook", "account": "accounts_kyc_id_numbers"}


def install() -> None:
    """Add the routes and the restricted-key check to localstripe's app (before it starts serving)."""
    original = server.get_api_key

    def api_key(request):
        key = _presented_key(request)
        if key is None or not key.startswith("rk_"):
            return original(request)
        if key not in _restricted:
            return None  # an unknown key: 401
        _require_permission(key, request.method, request.path)
        return key

    server.get_api_key = api_key
    router = server.app.router
    router.add_get("/v1/account", _account)
    router.add_get("/v1/webhook_endpoints", _list_endpoints)
    router.add_post("/v1/webhook_endpoints", _create_endpoint)
    router.add_get("/v1/webhook_endpoints/{id}", _retrieve_endpoint)
    router.add_delete("/v1/webhook_endpoints/{id}", _delete_endpoint)
    router.add_post("/_config/restricted_keys/{key}", _configure_restricted_key)


def _presented_key(request) -> str | None:
    kind, _, value = request.headers.get("Authorization", "").partition(" ")
    if kind == "Bearer":
        return value
    if kind == "Basic":
        return base64.b64decode(value.encode()).decode().split(":")[0]
    return None


def _require_permission(key: str, method: str, path: str) -> None:
    parts = path.strip("/").split("/")
    if len(parts) < 2 or parts[0] != "v1":
        return
    resource = _RESOURCES.get(parts[1], parts[1].removesuffix("s"))
    level = "read" if method in ("GET", "HEAD") else "write"
    granted = _restricted[key]
    if f"rak_{resource}_{level}" in granted or f"rak_{resource}_write" in granted:
        return
    masked = key[:8] + "*" * 20 + key[-4:]
    raise UserError(
        403,
        f"The provided key '{masked}' does not have the required permissions for this endpoint on account "
        f"'{ACCOUNT_ID}'. Having the 'rak_{resource}_{level}' permission would allow this request to continue.",
    )


def _json(body: Any, status: int = 200):
    return server.json_response(body, status=status)


def _account(request):
    return _json(
        {
            "id": ACCOUNT_ID,
            "object": "account",
            "business_profile": {"name": ACCOUNT_NAME},
            "settings": {"dashboard": {"display_name": ACCOUNT_NAME}},
            "charges_enabled": True,
            "country": "US",
            "default_currency": "usd",
        }
    )


def _endpoint(endpoint_id: str, hook: Any, *, with_secret: bool = False) -> dict[str, Any]:
    answer = {
        "id": endpoint_id,
        "object": "webhook_endpoint",
        "url": hook.url,
        "enabled_events": list(hook.events) if hook.events is not None else ["*"],
        "status": "enabled",
        "livemode": False,
        "created": _created.get(endpoint_id, 0),
    }
    if with_secret:
        answer["secret"] = hook.secret
    return answer


def _list_endpoints(request):
    endpoints = [_endpoint(i, hook) for i, hook in reversed(list(_webhooks.items()))]  # newest first
    limit = int(request.query.get("limit") or 10)
    return _json(
        {
            "object": "list",
            "url": "/v1/webhook_endpoints",
            "data": endpoints[:limit],
            "has_more": len(endpoints) > limit,
        }
    )


async def _create_endpoint(request):
    data = await server.get_post_data(request) or {}
    url, events = data.get("url"), data.get("enabled_events")
    if not isinstance(url, str) or not url.startswith("http"):
        raise UserError(400, "Missing required param: url.")
    if isinstance(events, str):
        events = [events]
    if not isinstance(events, list) or not events:
        raise UserError(400, "Missing required param: enabled_events.")
    endpoint_id = "we_" + secrets.token_hex(12)
    register_webhook(endpoint_id, url, "whsec_" + secrets.token_hex(16), None if "*" in events else events)
    _created[endpoint_id] = int(time.time())
    return _json(_endpoint(endpoint_id, _hook(endpoint_id), with_secret=True))


def _retrieve_endpoint(request):
    endpoint_id = request.match_info["id"]
    return _json(_endpoint(endpoint_id, _hook(endpoint_id)))


def _delete_endpoint(request):
    endpoint_id = request.match_info["id"]
    _hook(endpoint_id)
    del _webhooks[endpoint_id]
    return _json({"id": endpoint_id, "object": "webhook_endpoint", "deleted": True})


def _hook(endpoint_id: str) -> Any:
    if endpoint_id not in _webhooks:
        raise UserError(404, f"No such webhook endpoint: '{endpoint_id}'", {"code": "resource_missing"})
    return _webhooks[endpoint_id]


async def _configure_restricted_key(request):
    key = request.match_info["key"]
    data = await request.json()
    permissions = data.get("permissions") if isinstance(data, dict) else None
    if not key.startswith("rk_") or not isinstance(permissions, list):
        raise UserError(400, "Bad request")
    _restricted[key] = frozenset(permissions)
    return web.Response()
