"""ActiveCampaign, through its REST API v3 (https://developers.activecampaign.com/reference).

- Base URL: the account's own, from Settings > Developer (e.g. https://youraccount.api-us1.com); paths start
  with /api/3. Set ACTIVECAMPAIGN_URL to the base (a trailing /api/3 is tolerated).
- Auth: the account user's API key in the `Api-Token` header (ACTIVECAMPAIGN_API_KEY).
- Find: `GET /api/3/contacts?email=<address>` ("Email address of the contact you want to get") answers
  `{"contacts": [{"id": "1", "email": "...", ...}], "meta": {"total": "1"}}`; ids are strings. We still keep
  only contacts whose email equals the address (any case), in case the filter is ever looser than that.
- Change: `PUT /api/3/contacts/{id}` with `{"contact": {"email": "..."}}`; v3's PUT takes partial updates, so
  nothing else on the contact changes. It answers `{"contact": {...}}`; a taken address is refused with 422
  and `{"errors": [{"title": "..."}]}`.
- Rate limit: 5 requests a second per account, answered with 429 beyond that (retried by `JsonApi`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from urllib.parse import quote, urlencode

from bot.crm import RETRY_DELAYS, TIMEOUT, Contact, JsonApi, same_email


class ActiveCampaign:
    name = "ActiveCampaign"

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = TIMEOUT,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        base = url.strip().rstrip("/").removesuffix("/api/3")
        self._api = JsonApi(
            self.name,
            base + "/api/3",
            {"Api-Token": api_key},
            key_setting="ACTIVECAMPAIGN_API_KEY",
            url_setting="ACTIVECAMPAIGN_URL",
            timeout=timeout,
            retry_delays=retry_delays,
            sleep=sleep,
        )

    def find_contact(self, email: str) -> Contact | None:
        answer = self._api.request("GET", "/contacts?" + urlencode({"email": email.strip()})) or {}
        for contact in answer.get("contacts") or []:
            if same_email(contact.get("email"), email):
                return Contact(str(contact["id"]), contact["email"])
        return None

    def change_email(self, contact: Contact, new_email: str) -> None:
        self._api.request("PUT", f"/contacts/{quote(contact.id, safe='')}", {"contact": {"email": new_email}})
