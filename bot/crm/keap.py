"""Keap (formerly Infusionsoft), through its REST API v1 (https://developer.infusionsoft.com/docs/rest/).

- Base URL: https://api.infusionsoft.com/crm/rest (KEAP_API_URL, the default); paths start with /v1.
- Auth: a Personal Access Token or a Service Account Key (KEAP_API_KEY), sent in the `X-Keap-API-Key` header, as
  Keap documents for both ("Postman Quick Start": header X-Keap-API-Key, value your PAT/SAK). They are meant for
  a merchant connecting their own Keap account, which is this bot's case; a Service Account Key sees every
  contact, a Personal Access Token what its user sees. OAuth 2 (an `Authorization: Bearer` access token that
  expires and must be refreshed) is for third-party apps installed in many accounts and is not supported.
- Find: `GET /v1/contacts?email=<address>` ("Optional email address to query on") answers
  `{"contacts": [{"id": 123, "email_addresses": [{"email": "...", "field": "EMAIL1"}], ...}], "count": 1,
  "next": "...", "previous": "..."}`. A contact keeps up to three addresses (EMAIL1..EMAIL3); we take the
  contact that holds the address in any of them.
- Change: `PATCH /v1/contacts/{id}` ("updates a contact with only the values provided in the request") with
  `{"email_addresses": [{"email": "...", "field": "EMAIL1"}]}`. The contact's other addresses are sent back as
  they were, so the change touches only the address that matched, whichever way Keap merges the list.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from urllib.parse import quote, urlencode

from bot.crm import RETRY_DELAYS, TIMEOUT, Contact, JsonApi, same_email

DEFAULT_URL = "https://api.infusionsoft.com/crm/rest"


class Keap:
    name = "Keap"

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = TIMEOUT,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        base = (url.strip() or DEFAULT_URL).rstrip("/").removesuffix("/v1")
        self._api = JsonApi(
            self.name,
            base + "/v1",
            {"X-Keap-API-Key": api_key},
            key_setting="KEAP_API_KEY",
            url_setting="KEAP_API_URL",
            timeout=timeout,
            retry_delays=retry_delays,
            sleep=sleep,
        )

    def find_contact(self, email: str) -> Contact | None:
        answer = self._api.request("GET", "/contacts?" + urlencode({"email": email.strip()})) or {}
        for contact in answer.get("contacts") or []:
            addresses = tuple(
                (str(entry.get("field") or ""), str(entry["email"]))
                for entry in contact.get("email_addresses") or []
                if entry.get("email")
            )
            for _field, address in addresses:
                if same_email(address, email):
                    return Contact(str(contact["id"]), address, addresses)
        return None

    def change_email(self, contact: Contact, new_email: str) -> None:
        addresses = [
            {"email": new_email if same_email(address, contact.email) else address, "field": field}
            for field, address in contact.addresses
        ] or [{"email": new_email, "field": "EMAIL1"}]
        self._api.request("PATCH", f"/contacts/{quote(contact.id, safe='')}", {"email_addresses": addresses})
