"""The CRM connectors against local HTTP servers that answer as ActiveCampaign's API v3 and Keap's REST API v1
document: the requests sent (method, path, query, headers, body), the answers read, retries and failures.

`FakeActiveCampaign` and `FakeKeap` are also used by tests/test_email_sync.py.
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from bot.crm import Contact, CrmError, crms_from_settings
from bot.crm.activecampaign import ActiveCampaign
from bot.crm.keap import Keap
from bot.settings import Settings

AC_TOKEN = "ac-test-token"
KEAP_KEY = "KeapAK-test-key"

# --- fake CRM servers --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One request as the CRM received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


class FakeApi:
    """An HTTP server on 127.0.0.1 (a free port) that records each request and answers it with `answer`, or with
    a failure queued by `fail_next`."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self._failures: deque[tuple[int, Any, dict[str, str]]] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(
        self, status: int, body: Any = None, headers: dict[str, str] | None = None, *, times: int = 1
    ) -> None:
        self._failures.extend([(status, body, dict(headers or {}))] * times)

    def writes(self) -> list[Seen]:
        return [r for r in self.requests if r.method != "GET"]

    def answer(self, seen: Seen) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError

    def _respond(self, seen: Seen) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.requests.append(seen)
            if self._failures:
                return self._failures.popleft()
            return self.answer(seen)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                parts = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                seen = Seen(
                    self.command,
                    parts.path,
                    dict(parse_qsl(parts.query, keep_blank_values=True)),
                    dict(self.headers.items()),
                    json.loads(raw) if raw else None,
                )
                status, body, headers = fake._respond(seen)
                payload = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_PUT = do_PATCH = do_POST = _any  # noqa: N815 (http.server's names)

            def log_message(self, *_args: object) -> None:
                pass

        return Handler


class FakeActiveCampaign(FakeApi):
    """ActiveCampaign API v3 as documented: contacts listed by exact email under `contacts` (ids are strings,
    `meta.total` a string), updated with PUT {"contact": {...}}; a taken address is a 422 with `errors`."""

    def __init__(self, token: str = AC_TOKEN) -> None:
        super().__init__()
        self.token = token
        self.contacts: dict[str, str] = {}  # id -> email
        self._ids = itertools.count(1)

    def add(self, email: str) -> str:
        contact_id = str(next(self._ids))
        self.contacts[contact_id] = email
        return contact_id

    def holds(self, email: str) -> bool:
        return any(e.lower() == email.lower() for e in self.contacts.values())

    def _contact(self, contact_id: str) -> dict[str, Any]:
        links = {
            name: f"https://youraccount.api-us1.com/api/3/contacts/{contact_id}/{name}"
            for name in ("bounceLogs", "contactAutomations", "contactData", "contactGoals", "contactLists")
        }
        return {
            "cdate": "2018-09-12T16:53:47-05:00",
            "email": self.contacts[contact_id],
            "phone": "",
            "firstName": "Jane",
            "lastName": "Doe",
            "orgid": "0",
            "segmentio_id": "",
            "bounced_hard": "0",
            "bounced_soft": "0",
            "udate": "2018-09-12T17:00:00-05:00",
            "deleted": "0",
            "links": links,
            "id": contact_id,
            "organization": None,
        }

    def answer(self, seen: Seen) -> tuple[int, Any, dict[str, str]]:
        if seen.header("Api-Token") != self.token:
            return 403, {"message": "No Result found for Subscriber with id 0"}, {}
        if seen.method == "GET" and seen.path == "/api/3/contacts":
            wanted = seen.query.get("email", "").lower()
            found = [cid for cid, email in self.contacts.items() if email.lower() == wanted]
            return (
                200,
                {
                    "scoreValues": [],
                    "contacts": [self._contact(cid) for cid in found],
                    "meta": {"page_input": {"segmentid": None, "email": wanted}, "total": str(len(found))},
                },
                {},
            )
        if seen.method == "PUT" and seen.path.startswith("/api/3/contacts/"):
            contact_id = seen.path.rsplit("/", 1)[1]
            if contact_id not in self.contacts:
                return 404, {"message": f"No Result found for Subscriber with id {contact_id}"}, {}
            email = seen.body["contact"]["email"]
            if any(e.lower() == email.lower() and i != contact_id for i, e in self.contacts.items()):
                error = {
                    "title": "Email address already exists in the system.",
                    "detail": "",
                    "code": "duplicate",
                    "source": {"pointer": "/data/attributes/email"},
                }
                return 422, {"errors": [error]}, {}
            self.contacts[contact_id] = email
            return 200, {"fieldValues": [], "contact": self._contact(contact_id)}, {}
        return 404, {"message": "Not Found"}, {}


class FakeKeap(FakeApi):
    """Keap REST API v1 as documented, under /crm/rest/v1: contacts listed by email with their
    `email_addresses` (EMAIL1..EMAIL3) and numeric ids, updated with PATCH (only the fields sent change)."""

    def __init__(self, api_key: str = KEAP_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self.contacts: dict[int, dict[str, str]] = {}  # id -> {field: email}
        self._ids = itertools.count(101)

    @property
    def url(self) -> str:
        return super().url + "/crm/rest"

    def add(self, *emails: str) -> int:
        contact_id = next(self._ids)
        self.contacts[contact_id] = {f"EMAIL{i}": email for i, email in enumerate(emails, 1)}
        return contact_id

    def holds(self, email: str) -> bool:
        return any(e.lower() == email.lower() for c in self.contacts.values() for e in c.values())

    def _contact(self, contact_id: int) -> dict[str, Any]:
        return {
            "id": contact_id,
            "given_name": "Jane",
            "family_name": "Doe",
            "email_addresses": [{"email": e, "field": f} for f, e in self.contacts[contact_id].items()],
            "email_opted_in": True,
            "email_status": "SingleOptIn",
            "date_created": "2024-01-15T10:30:00.000+0000",
            "last_updated": "2024-01-20T14:45:00.000+0000",
            "addresses": [],
            "phone_numbers": [],
            "tag_ids": [],
            "company": None,
            "owner_id": None,
        }

    def answer(self, seen: Seen) -> tuple[int, Any, dict[str, str]]:
        if seen.header("X-Keap-API-Key") != self.api_key:
            return 401, {"message": "Invalid Access Token"}, {}
        if seen.method == "GET" and seen.path == "/crm/rest/v1/contacts":
            wanted = seen.query.get("email", "").lower()
            found = [
                cid
                for cid, fields in self.contacts.items()
                if any(e.lower() == wanted for e in fields.values())
            ]
            base = "https://api.infusionsoft.com/crm/rest/v1/contacts/"
            return (
                200,
                {
                    "contacts": [self._contact(cid) for cid in found],
                    "count": len(found),
                    "next": f"{base}?limit=1000&offset=1000&email={wanted}",
                    "previous": f"{base}?limit=1000&offset=0&email={wanted}",
                },
                {},
            )
        if seen.method == "PATCH" and seen.path.startswith("/crm/rest/v1/contacts/"):
            contact_id = int(seen.path.rsplit("/", 1)[1])
            if contact_id not in self.contacts:
                return 404, {"message": f"Contact {contact_id} not found"}, {}
            for entry in seen.body.get("email_addresses", []):
                self.contacts[contact_id][entry["field"]] = entry["email"]
            return 200, self._contact(contact_id), {}
        return 404, {"message": "Not Found"}, {}


@pytest.fixture
def activecampaign():
    with FakeActiveCampaign() as server:
        yield server


@pytest.fixture
def keap():
    with FakeKeap() as server:
        yield server


def no_wait(pauses: list[float] | None = None) -> dict[str, Any]:
    """Connector options for tests: retries without waiting (the pauses asked for are recorded)."""
    pauses = [] if pauses is None else pauses
    return {"retry_delays": (0.5, 1.0), "sleep": pauses.append, "timeout": 5.0}


# --- ActiveCampaign ----------------------------------------------------------------------------------------------


def test_activecampaign_finds_a_contact_by_exact_email(activecampaign):
    contact_id = activecampaign.add("Jane.Doe@example.com")
    activecampaign.add("jane.doe@example.com.au")
    crm = ActiveCampaign(activecampaign.url, AC_TOKEN, **no_wait())

    found = crm.find_contact("jane.doe@example.com")

    assert found == Contact(contact_id, "Jane.Doe@example.com")
    [request] = activecampaign.requests
    assert (request.method, request.path, request.query) == (
        "GET",
        "/api/3/contacts",
        {"email": "jane.doe@example.com"},
    )
    assert request.header("Api-Token") == AC_TOKEN
    assert request.header("Accept") == "application/json"
    assert request.body is None
    assert crm.find_contact("nobody@example.com") is None


def test_activecampaign_changes_a_contacts_email_with_put(activecampaign):
    contact_id = activecampaign.add("jane.old@example.com")
    crm = ActiveCampaign(activecampaign.url + "/", AC_TOKEN, **no_wait())

    crm.change_email(Contact(contact_id, "jane.old@example.com"), "jane.new@example.com")

    [request] = activecampaign.requests
    assert (request.method, request.path) == ("PUT", f"/api/3/contacts/{contact_id}")
    assert request.body == {"contact": {"email": "jane.new@example.com"}}
    assert request.header("Content-Type") == "application/json"
    assert request.header("Api-Token") == AC_TOKEN
    assert activecampaign.contacts[contact_id] == "jane.new@example.com"


def test_activecampaign_url_may_end_in_api_3(activecampaign):
    activecampaign.add("jane@example.com")
    crm = ActiveCampaign(activecampaign.url + "/api/3/", AC_TOKEN, **no_wait())
    assert crm.find_contact("jane@example.com") is not None
    assert activecampaign.requests[0].path == "/api/3/contacts"


def test_activecampaign_refusal_says_why_in_plain_words(activecampaign):
    first = activecampaign.add("jane.old@example.com")
    activecampaign.add("jane.new@example.com")
    crm = ActiveCampaign(activecampaign.url, AC_TOKEN, **no_wait())

    with pytest.raises(CrmError) as refused:
        crm.change_email(Contact(first, "jane.old@example.com"), "jane.new@example.com")

    assert refused.value.status == 422
    assert refused.value.user_message == (
        "ActiveCampaign refused the request (HTTP 422): Email address already exists in the system."
    )
    assert len(activecampaign.requests) == 1, "a refusal is not retried"


def test_a_wrong_activecampaign_key_names_the_setting(activecampaign):
    crm = ActiveCampaign(activecampaign.url, "wrong", **no_wait())
    with pytest.raises(
        CrmError, match=re.escape("refused the bot's API key (HTTP 403). Check ACTIVECAMPAIGN_API_KEY")
    ):
        crm.find_contact("jane@example.com")
    assert len(activecampaign.requests) == 1


# --- Keap --------------------------------------------------------------------------------------------------------


def test_keap_finds_a_contact_by_any_of_its_addresses(keap):
    contact_id = keap.add("jane@home.example.com", "Jane@Work.example.com")
    crm = Keap(keap.url, KEAP_KEY, **no_wait())

    found = crm.find_contact("jane@work.example.com")

    assert found == Contact(
        str(contact_id),
        "Jane@Work.example.com",
        (("EMAIL1", "jane@home.example.com"), ("EMAIL2", "Jane@Work.example.com")),
    )
    [request] = keap.requests
    assert (request.method, request.path, request.query) == (
        "GET",
        "/crm/rest/v1/contacts",
        {"email": "jane@work.example.com"},
    )
    assert request.header("X-Keap-API-Key") == KEAP_KEY
    assert request.header("Authorization") is None, "a PAT or service account key is not a bearer token"
    assert crm.find_contact("nobody@example.com") is None


def test_keap_changes_email1_with_patch(keap):
    contact_id = keap.add("jane.old@example.com")
    crm = Keap(keap.url, KEAP_KEY, **no_wait())

    crm.change_email(crm.find_contact("jane.old@example.com"), "jane.new@example.com")

    patch = keap.writes()[0]
    assert (patch.method, patch.path) == ("PATCH", f"/crm/rest/v1/contacts/{contact_id}")
    assert patch.body == {"email_addresses": [{"email": "jane.new@example.com", "field": "EMAIL1"}]}
    assert patch.header("Content-Type") == "application/json"
    assert patch.header("X-Keap-API-Key") == KEAP_KEY
    assert keap.contacts[contact_id] == {"EMAIL1": "jane.new@example.com"}


def test_keap_changes_only_the_address_that_matched(keap):
    contact_id = keap.add("jane@home.example.com", "jane.old@work.example.com")
    crm = Keap(keap.url, KEAP_KEY, **no_wait())

    crm.change_email(crm.find_contact("jane.old@work.example.com"), "jane.new@work.example.com")

    assert keap.writes()[0].body == {
        "email_addresses": [
            {"email": "jane@home.example.com", "field": "EMAIL1"},
            {"email": "jane.new@work.example.com", "field": "EMAIL2"},
        ]
    }
    assert keap.contacts[contact_id] == {
        "EMAIL1": "jane@home.example.com",
        "EMAIL2": "jane.new@work.example.com",
    }


def test_a_wrong_keap_key_names_the_setting_and_is_not_retried(keap):
    crm = Keap(keap.url, "KeapAK-wrong", **no_wait())
    with pytest.raises(
        CrmError, match=re.escape("Keap refused the bot's API key (HTTP 401). Check KEAP_API_KEY")
    ):
        crm.find_contact("jane@example.com")
    assert len(keap.requests) == 1


def test_a_wrong_keap_url_names_the_setting(keap):
    crm = Keap(keap.url + "/nowhere", KEAP_KEY, **no_wait())
    with pytest.raises(CrmError, match="Check KEAP_API_URL"):
        crm.find_contact("jane@example.com")


# --- retries and failures ----------------------------------------------------------------------------------------


def test_429_then_200_is_retried_after_a_pause(keap):
    keap.add("jane@example.com")
    keap.fail_next(429, {"message": "Quota exceeded"}, {"Retry-After": "0"})
    pauses: list[float] = []
    crm = Keap(keap.url, KEAP_KEY, **no_wait(pauses))

    found = crm.find_contact("jane@example.com")

    assert found is not None and found.email == "jane@example.com"
    assert len(keap.requests) == 2
    assert keap.requests[0] == keap.requests[1], "the same request, sent again"
    assert len(pauses) == 1 and 0.5 <= pauses[0] <= 0.5 * 1.25, (
        "our backoff, since Retry-After asked for less"
    )


def test_a_long_retry_after_is_a_failure_not_a_long_wait(activecampaign):
    activecampaign.fail_next(429, {"message": "Too Many Requests"}, {"Retry-After": "3600"})
    pauses: list[float] = []
    crm = ActiveCampaign(activecampaign.url, AC_TOKEN, **no_wait(pauses))
    with pytest.raises(CrmError, match="ActiveCampaign is limiting how often the bot may call it"):
        crm.find_contact("jane@example.com")
    assert pauses == [] and len(activecampaign.requests) == 1


def test_500_is_retried_then_a_plain_crm_error(activecampaign):
    contact_id = activecampaign.add("jane.old@example.com")
    activecampaign.fail_next(500, {"message": "Internal Server Error"}, times=3)
    pauses: list[float] = []
    crm = ActiveCampaign(activecampaign.url, AC_TOKEN, **no_wait(pauses))

    with pytest.raises(CrmError) as failed:
        crm.change_email(Contact(contact_id, "jane.old@example.com"), "jane.new@example.com")

    assert failed.value.status == 500
    assert failed.value.user_message == (
        "ActiveCampaign had a problem on its side (HTTP 500), so nothing more was done there. "
        "Try again in a few minutes."
    )
    assert [r.method for r in activecampaign.requests] == ["PUT", "PUT", "PUT"], "two retries"
    assert len(pauses) == 2 and pauses[1] > pauses[0], "backing off"


def test_a_crm_that_cannot_be_reached_is_a_plain_crm_error():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pauses: list[float] = []
    crm = Keap(f"http://127.0.0.1:{port}/crm/rest", KEAP_KEY, **no_wait(pauses))
    with pytest.raises(CrmError, match=r"^Keap could not be reached .*nothing was changed there"):
        crm.find_contact("jane@example.com")
    assert len(pauses) == 2


# --- configuration -----------------------------------------------------------------------------------------------


def test_crms_from_settings_are_the_ones_configured():
    assert crms_from_settings(Settings()) == []
    both = crms_from_settings(
        Settings(
            activecampaign_url="https://acme.api-us1.com",
            activecampaign_api_key="ac-key",
            keap_api_key=KEAP_KEY,
        )
    )
    assert [crm.name for crm in both] == ["ActiveCampaign", "Keap"]
    assert [type(c) for c in both] == [ActiveCampaign, Keap]
    url_only = crms_from_settings(Settings(activecampaign_url="https://acme.api-us1.com"))
    assert url_only == [], "a URL without its key is not configured"
    from_env = Settings.from_env(
        {"KEAP_API_KEY": KEAP_KEY, "ACTIVECAMPAIGN_API_KEY": "ac-key"}  # ActiveCampaign has no URL
    )
    assert [crm.name for crm in crms_from_settings(from_env)] == ["Keap"]
