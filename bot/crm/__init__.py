"""Connected CRMs, behind one small interface: find a contact by exact email, change a contact's email.

Each CRM is one module (`activecampaign`, `keap`) with a class that satisfies `Crm`; `crms_from_settings` builds
the ones whose URL and key are configured. Adding a CRM is one file plus one line there.

Every request goes through `JsonApi`: a timeout on every call; a 429 or a 5xx (and a connection failure) retried a
couple of times with backoff (a 429's `Retry-After` is honoured, up to a cap); any other failure, or one that
outlasts the retries, raises `CrmError` carrying a plain sentence for the person in Slack. Only the standard
library is used (urllib), so the bot gains no dependency.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bot.settings import Settings

logger = logging.getLogger(__name__)

TIMEOUT = 10.0  # seconds for one request, connecting and reading
RETRY_DELAYS: tuple[float, ...] = (
    1.0,
    2.0,
)  # pauses before each retry of a 429, a 5xx or a connection failure
MAX_RETRY_AFTER = 10.0  # the longest `Retry-After` we wait for; longer than that is reported as a failure
USER_AGENT = "customer-records-bot"


@dataclass(frozen=True)
class Contact:
    """A contact in a CRM. `id` is the CRM's own; `email` is the address that matched the lookup.

    `addresses` lists every (field, address) the CRM keeps on the contact, for CRMs that keep several (Keap has
    EMAIL1..EMAIL3), so changing one address can leave the others as they are; empty for CRMs with one address."""

    id: str
    email: str
    addresses: tuple[tuple[str, str], ...] = ()


class CrmError(Exception):
    """A CRM did not answer, or refused. `user_message` says so plainly, naming the CRM and what to do."""

    def __init__(self, user_message: str, *, status: int | None = None) -> None:
        super().__init__(user_message)
        self.user_message = user_message
        self.status = status  # the HTTP status, when the CRM answered


class Crm(Protocol):
    name: str  # as people know it: "ActiveCampaign", "Keap"

    def find_contact(self, email: str) -> Contact | None:
        """The contact whose email is exactly `email` (any case), or None."""
        ...

    def change_email(self, contact: Contact, new_email: str) -> None:
        """Replace `contact.email` with `new_email` on that contact; raises CrmError when the CRM refuses."""
        ...


def crms_from_settings(settings: Settings) -> list[Crm]:
    """The CRMs configured: each needs both its URL and its key (Keap's URL has a default)."""
    from bot.crm.activecampaign import ActiveCampaign
    from bot.crm.keap import Keap

    crms: list[Crm] = []
    if settings.activecampaign_url and settings.activecampaign_api_key:
        crms.append(ActiveCampaign(settings.activecampaign_url, settings.activecampaign_api_key))
    if settings.keap_api_url and settings.keap_api_key:
        crms.append(Keap(settings.keap_api_url, settings.keap_api_key))
    return crms


def same_email(a: str | None, b: str | None) -> bool:
    """Emails compared as people and CRMs do: surrounding spaces and case ignored."""
    return (a or "").strip().lower() == (b or "").strip().lower()


def distinct_emails(emails: Iterable[str]) -> list[str]:
    """Each address once (as `same_email` compares them), in the order first seen."""
    seen: list[str] = []
    for email in emails:
        if not any(same_email(email, s) for s in seen):
            seen.append(email)
    return seen


class JsonApi:
    """JSON over HTTPS for one CRM: its base URL, auth headers, timeouts, retries and plain failures."""

    def __init__(
        self,
        crm: str,
        base_url: str,
        headers: dict[str, str],
        *,
        key_setting: str,
        url_setting: str,
        timeout: float = TIMEOUT,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.crm = crm
        self.base_url = base_url.rstrip("/")
        self.headers = {"Accept": "application/json", "User-Agent": USER_AGENT, **headers}
        self.key_setting = key_setting  # the environment variables to name when the key or URL is wrong
        self.url_setting = url_setting
        self.timeout = timeout
        self.retry_delays = tuple(retry_delays)
        self.sleep = sleep

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Send one request (retrying as described above) and return the decoded JSON answer (None when empty)."""
        url = self.base_url + path
        data = None if body is None else json.dumps(body).encode()
        headers = dict(self.headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        delays = list(self.retry_delays)
        while True:
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
                return _decode(raw)
            except urllib.error.HTTPError as error:
                status = error.code
                detail = _their_message(error.read())
                retry_after = _retry_after(error.headers.get("Retry-After"))
                error.close()
                if (status == 429 or status >= 500) and delays:
                    delay = delays.pop(0)
                    if retry_after is not None:
                        if retry_after > MAX_RETRY_AFTER:
                            raise self._failure(method, status, detail) from error
                        delay = max(delay, retry_after)
                    logger.info(
                        "%s %s %s answered %s; retrying in %.1f s", self.crm, method, path, status, delay
                    )
                    self._pause(delay)
                    continue
                logger.warning("%s %s %s failed: HTTP %s %s", self.crm, method, path, status, detail)
                raise self._failure(method, status, detail) from error
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                if delays:
                    delay = delays.pop(0)
                    logger.info(
                        "%s %s %s failed (%s); retrying in %.1f s", self.crm, method, path, error, delay
                    )
                    self._pause(delay)
                    continue
                logger.warning("%s %s %s failed: %s", self.crm, method, path, error)
                raise CrmError(
                    f"{self.crm} could not be reached ({_reason(error)}), so nothing was changed there. "
                    "Try again in a few minutes."
                ) from error
            except ValueError as error:  # an answer that is not JSON
                raise CrmError(
                    f"{self.crm} sent an answer the bot could not read, so nothing more was done there."
                ) from error

    def _pause(self, delay: float) -> None:
        self.sleep(delay * random.uniform(1.0, 1.25) if delay else 0.0)

    def _failure(self, method: str, status: int, detail: str | None) -> CrmError:
        crm = self.crm
        said = f": {detail.rstrip('.')}." if detail else "."
        if status in (401, 403):
            message = f"{crm} refused the bot's API key (HTTP {status}). Check {self.key_setting}."
        elif status == 404 and method == "GET":
            message = f"{crm} does not know the address the bot calls (HTTP 404). Check {self.url_setting}."
        elif status == 404:
            message = f"{crm} has no such contact any more (HTTP 404). Run the email check again."
        elif status == 429:
            message = f"{crm} is limiting how often the bot may call it, so nothing more was done there. Try again in a minute."
        elif status >= 500:
            message = f"{crm} had a problem on its side (HTTP {status}), so nothing more was done there. Try again in a few minutes."
        else:
            message = f"{crm} refused the request (HTTP {status}){said}"
        return CrmError(message, status=status)


def _decode(raw: bytes) -> Any:
    return json.loads(raw) if raw.strip() else None


def _their_message(raw: bytes) -> str | None:
    """The CRM's own words from an error answer: {"message": …} (Keap) or {"errors": [{"title": …}]} (AC)."""
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("message"), str):
        return body["message"][:300]
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        text = first.get("title") or first.get("detail") or first.get("message")
        return str(text)[:300] if text else None
    return None


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _reason(error: Exception) -> str:
    if isinstance(error, TimeoutError | socket.timeout):
        return "no answer in time"
    reason = getattr(error, "reason", None)
    if isinstance(reason, TimeoutError | socket.timeout):
        return "no answer in time"
    return str(reason or error)[:200]
