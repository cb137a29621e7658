"""A local stand-in for Slack: the Web API and response URLs on a loopback port, and a person typing and clicking.

`LocalSlack` answers the Web API calls the bot makes and the messages it posts to response URLs, keeps the
conversation as a person would see it (ephemeral messages replaced in place, shared ones posted), and refuses
any message Slack would refuse, with Slack's own error codes. It keeps each message's metadata and answers
`conversations.history` with it, and a test can make it misbehave the ways Slack does: refuse a method, take a
call and lose the answer, or take it and answer only when told. Like Slack, it says in every Web API answer which
scopes the token has (the `x-oauth-scopes` header) and holds the app to them where the bot's setup is checked
(`users.info`, `conversations.history`, `chat.postMessage`); a test can take scopes away, refuse a token, leave
the bot out of a channel, and add the people `users.info` knows. `SlackPerson` sends the bot exactly what Slack
sends: signed, form-encoded slash commands and `payload=` JSON for button clicks.

The terminal shell and the test suite both drive the real app through these two.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from blocks.limits import message_problems

TEAM_ID = "T0LOCAL01"
TEAM_DOMAIN = "local"
TEAM_NAME = "Local"
APP_ID = "A0LOCAL01"
BOT_USER_ID = "U0LOCALBOT"
BOT_NAME = "customer-bot"
PERSON_ID = "U0LOCAL01"  # the person SlackPerson is unless told otherwise
# The scopes an installation of manifest.yml grants, and users:read, which lets `customer-bot check` read people.
GRANTED_SCOPES = ("commands", "chat:write", "channels:history", "groups:history", "users:read")
# Methods held to their scopes here: any one of those listed lets a call through, as at Slack.
_SCOPES_NEEDED = {
    "users.info": ("users:read",),
    "conversations.history": ("channels:history", "groups:history"),
    "chat.postMessage": ("chat:write",),
}


@dataclass
class SlackMessage:
    """A message as the people in a channel see it."""

    ts: str
    channel: str
    text: str
    blocks: list[dict[str, Any]]
    visible_to: str | None = None  # a user id for an ephemeral message; None when everyone sees it
    deleted: bool = False
    metadata: dict[str, Any] | None = (
        None  # what the app attached (event_type, event_payload); people never see it
    )

    @property
    def ephemeral(self) -> bool:
        return self.visible_to is not None


@dataclass
class ApiCall:
    method: str
    args: dict[str, Any]


@dataclass
class HeldAnswer:
    """A Web API call Slack has carried out and not answered yet: `reached` is set once it has been carried out,
    and the answer goes out on `release()` (into the void, if the caller is gone by then)."""

    method: str
    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()


_LOST = "lost"  # carry the call out, then close the connection without answering

HISTORY_LIMIT = 999  # conversations.history's largest page


@dataclass
class _ResponseUrl:
    channel: str
    user: str
    message_ts: str | None  # the message this interaction came from; None for a slash command
    uses: int = 0


class LocalSlack:
    """A Slack Web API and response-URL server on 127.0.0.1, recording the conversation."""

    def __init__(self) -> None:
        self.messages: list[SlackMessage] = []
        self.calls: list[ApiCall] = []
        self.problems: list[str] = []  # every message that Slack would have refused, and why
        self.views: dict[str, dict[str, Any]] = {}  # every modal opened, by view id, as it is now
        self.opened: list[str] = []  # view ids in the order they were opened
        self._changed = threading.Condition()
        self.socket_mode_url: str | None = None  # what apps.connections.open hands a Socket Mode client
        self._response_urls: dict[str, _ResponseUrl] = {}
        self._ts = itertools.count(1)
        self._last_ts = 0  # in microseconds: each message's ts is its posting time, unique like Slack's
        self._refusals: dict[str, str] = {}  # method -> the error every call of it is answered with
        self._after: dict[str, HeldAnswer | str] = {}  # method -> what happens to the answer of its next call
        self.scopes: set[str] = set(GRANTED_SCOPES)  # what the app's token was granted
        self.refused_tokens: set[str] = set()  # answered invalid_auth, as a revoked or mistyped token is
        self.channels_without_bot: set[str] = set()  # channels nobody invited the bot to
        self.users: dict[str, dict[str, Any]] = {}  # users.info answers, by user id
        self.add_user(PERSON_ID, "jane.support")
        self.add_user(BOT_USER_ID, BOT_NAME, is_bot=True)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    @property
    def api_url(self) -> str:
        return self.url + "api/"

    def start(self) -> LocalSlack:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="local-slack", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LocalSlack:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # What a person sees -------------------------------------------------------------------------------

    def visible(self, channel: str, user: str) -> list[SlackMessage]:
        """The messages `user` sees in `channel`, oldest first."""
        with self._lock:
            return [
                m
                for m in self.messages
                if m.channel == channel and not m.deleted and m.visible_to in (None, user)
            ]

    def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Block until `condition` holds (checked after every request this Slack receives), or fail."""
        with self._changed:
            if not self._changed.wait_for(condition, timeout):
                raise AssertionError(f"Slack did not see what was expected within {timeout} s")

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def latest_view(self) -> dict[str, Any]:
        return self.views[self.opened[-1]]

    def replace_view(self, view_id: str, view: dict[str, Any]) -> None:
        """What Slack does with a view_submission answered with response_action=update."""
        with self._lock:
            self.views[view_id] = {**view, "id": view_id}
        self._notify()

    def message(self, ts: str) -> SlackMessage:
        with self._lock:
            return next(m for m in self.messages if m.ts == ts)

    # Misbehaving as Slack does ---------------------------------------------------------------------------

    def refuse(self, method: str, error: str = "internal_error") -> None:
        """Answer every call of `method` with this error, doing nothing, until `accept(method)`."""
        with self._lock:
            self._refusals[method] = error

    def accept(self, method: str) -> None:
        with self._lock:
            self._refusals.pop(method, None)

    def hold_answer(self, method: str) -> HeldAnswer:
        """Carry out the next call of `method`, then keep its answer until the returned hold is released."""
        held = HeldAnswer(method)
        with self._lock:
            self._after[method] = held
        return held

    def lose_answer(self, method: str) -> None:
        """Carry out the next call of `method`, then drop the connection without answering, as when the network
        fails between Slack and the app."""
        with self._lock:
            self._after[method] = _LOST

    def add_user(self, user_id: str, name: str, *, is_bot: bool = False, deleted: bool = False) -> None:
        """Someone `users.info` knows, as Slack describes them (a deactivated account is `deleted`)."""
        self.users[user_id] = {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": name,
            "real_name": name,
            "deleted": deleted,
            "is_bot": is_bot,
            "is_app_user": False,
            "profile": {"display_name": name, "real_name": name},
        }

    def _answer_fate(self, method: str) -> HeldAnswer | str | None:
        with self._lock:
            return self._after.pop(method, None)

    # Used by SlackPerson ---------------------------------------------------------------------------------

    def new_response_url(self, channel: str, user: str, message_ts: str | None) -> str:
        token = hashlib.sha256(f"{channel}{user}{message_ts}{next(self._ts)}".encode()).hexdigest()[:24]
        with self._lock:
            self._response_urls[token] = _ResponseUrl(channel, user, message_ts)
        return f"{self.url}response/{token}"

    def record_command_response(self, channel: str, user: str, body: dict[str, Any]) -> SlackMessage | None:
        """A slash command's immediate answer: ephemeral unless it says in_channel."""
        if not body.get("text") and not body.get("blocks"):
            return None
        problems = message_problems(body.get("blocks", []), body.get("text"))
        if problems:
            self._refuse("slash command response", problems)
            return None
        visible_to = None if body.get("response_type") == "in_channel" else user
        return self._post(channel, body, visible_to)

    # Internals -------------------------------------------------------------------------------------------

    def _post(
        self,
        channel: str,
        body: dict[str, Any],
        visible_to: str | None,
        metadata: dict[str, Any] | None = None,
    ) -> SlackMessage:
        with self._lock:
            self._last_ts = max(time.time_ns() // 1000, self._last_ts + 1)
            message = SlackMessage(
                ts=f"{self._last_ts // 1_000_000}.{self._last_ts % 1_000_000:06d}",
                channel=channel,
                text=body.get("text", ""),
                blocks=_with_block_ids(body.get("blocks", [])),
                visible_to=visible_to,
                metadata=metadata,
            )
            self.messages.append(message)
        return message

    def _history(self, args: dict[str, Any]) -> dict[str, Any]:
        """conversations.history: a channel's messages newest first, between `oldest` and `latest` (exclusive
        unless `inclusive`), `limit` at a time with a cursor; metadata only when `include_all_metadata`."""
        try:
            oldest, latest = float(args.get("oldest") or 0), float(args.get("latest") or "inf")
            limit = min(int(args.get("limit") or 100), HISTORY_LIMIT)
            start = (
                int(base64.b64decode(args["cursor"]).decode().removeprefix("next_ts:"))
                if args.get("cursor")
                else 0
            )
        except (ValueError, TypeError):
            return {"ok": False, "error": "invalid_arguments"}
        if limit < 1:
            return {"ok": False, "error": "invalid_limit"}
        inclusive, metadata = _truthy(args.get("inclusive")), _truthy(args.get("include_all_metadata"))
        with self._lock:
            in_range = [
                m
                for m in reversed(self.messages)
                if m.channel == args.get("channel")
                and not m.ephemeral
                and not m.deleted
                and (oldest <= float(m.ts) if inclusive else oldest < float(m.ts))
                and (float(m.ts) <= latest if inclusive else float(m.ts) < latest)
            ]
        page = in_range[start : start + limit]
        has_more = start + limit < len(in_range)
        answer: dict[str, Any] = {
            "ok": True,
            "messages": [_as_history(m, metadata) for m in page],
            "has_more": has_more,
            "pin_count": 0,
        }
        if has_more:
            cursor = base64.b64encode(f"next_ts:{start + limit}".encode()).decode()
            answer["response_metadata"] = {"next_cursor": cursor}
        return answer

    def _refuse(self, where: str, problems: list[str]) -> None:
        with self._lock:
            self.problems.extend(f"{where}: {p}" for p in problems)

    def _respond(self, token: str, body: dict[str, Any]) -> tuple[int, str]:
        """What Slack does with a POST to a response URL."""
        with self._lock:
            target = self._response_urls.get(token)
            if target is None:
                return 404, "no_response_url"
            target.uses += 1
            if target.uses > 5:  # Slack allows five responses per response URL
                return 404, "used_up"
        if body.get("delete_original"):
            if target.message_ts:
                self.message(target.message_ts).deleted = True
            return 200, "ok"
        problems = message_problems(body.get("blocks", []), body.get("text"))
        if problems:
            self._refuse("response_url", problems)
            return 400, "invalid_blocks"
        replace = body.get("replace_original", True) and target.message_ts is not None
        if body.get("response_type") == "in_channel":
            replace = bool(body.get("replace_original")) and target.message_ts is not None
        if replace:
            message = self.message(target.message_ts)  # type: ignore[arg-type]
            with self._lock:
                message.text, message.blocks = body.get("text", ""), _with_block_ids(body.get("blocks", []))
            return 200, "ok"
        visible_to = None if body.get("response_type") == "in_channel" else target.user
        self._post(target.channel, body, visible_to)
        return 200, "ok"

    def _api(self, method: str, args: dict[str, Any], token: str | None = None) -> dict[str, Any]:
        with self._lock:
            self.calls.append(ApiCall(method, args))
            refusal = self._refusals.get(method)
            granted = set(self.scopes)
        if token in self.refused_tokens:
            return {"ok": False, "error": "invalid_auth"}
        if refusal:
            return {"ok": False, "error": refusal}
        needed = _SCOPES_NEEDED.get(method, ())
        if needed and not granted.intersection(needed):
            return {
                "ok": False,
                "error": "missing_scope",
                "needed": ",".join(needed),
                "provided": ",".join(sorted(granted)),
            }
        if args.get("channel") in self.channels_without_bot and method in (
            "conversations.history",
            "chat.postMessage",
        ):
            return {"ok": False, "error": "not_in_channel"}
        if method == "conversations.history":
            return self._history(args)
        if method == "users.info":
            user = self.users.get(args.get("user", ""))
            return {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"}
        if method == "auth.test":
            return {
                "ok": True,
                "url": f"https://{TEAM_DOMAIN}.slack.com/",
                "team": TEAM_NAME,
                "user": BOT_NAME,
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "bot_id": "B0LOCAL01",
                "is_enterprise_install": False,
            }
        if method == "apps.connections.open":
            if self.socket_mode_url is None:
                return {"ok": False, "error": "not_allowed_token_type"}
            return {"ok": True, "url": self.socket_mode_url}
        if method in ("chat.postMessage", "chat.postEphemeral", "chat.update"):
            blocks = _json_field(args.get("blocks")) or []
            problems = message_problems(blocks, args.get("text"))
            if problems:
                self._refuse(method, problems)
                return {"ok": False, "error": "invalid_blocks", "response_metadata": {"messages": problems}}
            metadata = _json_field(args.get("metadata"))
            if method == "chat.update":
                message = self.message(args["ts"])
                message.text, message.blocks = args.get("text", ""), _with_block_ids(blocks)
                if metadata:
                    message.metadata = metadata
                return {"ok": True, "channel": args["channel"], "ts": args["ts"]}
            visible_to = args.get("user") if method == "chat.postEphemeral" else None
            message = self._post(
                args["channel"],
                {"text": args.get("text", ""), "blocks": blocks},
                visible_to,
                metadata if method == "chat.postMessage" else None,
            )
            key = "message_ts" if visible_to else "ts"
            return {"ok": True, "channel": args["channel"], key: message.ts}
        if method in ("views.open", "views.push", "views.update"):
            view = _json_field(args.get("view")) or {}
            problems = view_problems(view)
            if problems:
                self._refuse(method, problems)
                return {
                    "ok": False,
                    "error": "invalid_arguments",
                    "response_metadata": {"messages": problems},
                }
            with self._lock:
                if method == "views.update":
                    view_id = args["view_id"]
                    if view_id not in self.views:
                        return {"ok": False, "error": "not_found"}
                else:
                    view_id = f"V{len(self.views) + 1:08d}"
                    self.opened.append(view_id)
                self.views[view_id] = {**view, "id": view_id}
            return {"ok": True, "view": self.views[view_id]}
        return {"ok": True}

    def _granted(self) -> str:
        with self._lock:
            return ",".join(sorted(self.scopes))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        slack = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                if self.path.startswith("/response/"):
                    status, text = slack._respond(
                        self.path.removeprefix("/response/"), json.loads(raw or "{}")
                    )
                    self._send(status, "text/plain", text.encode())
                elif self.path.startswith("/api/"):
                    self._answer_api(self.path.removeprefix("/api/"), _parse_body(raw, self.headers))
                else:
                    self._send(404, "text/plain", b"not found")
                slack._notify()

            def do_GET(self) -> None:  # slack_sdk reads (conversations.history) with GET and query parameters
                url = urlsplit(self.path)
                if url.path.startswith("/api/"):
                    self._answer_api(url.path.removeprefix("/api/"), dict(parse_qsl(url.query)))
                else:
                    self._send(404, "text/plain", b"not found")
                slack._notify()

            def _answer_api(self, method: str, args: dict[str, Any]) -> None:
                kind, _, bearer = (self.headers.get("Authorization") or "").partition(" ")
                token = bearer if kind == "Bearer" else args.get("token")
                answer = slack._api(method, args, token)
                fate = slack._answer_fate(method)
                if fate == _LOST:
                    self.close_connection = True
                    return
                if isinstance(fate, HeldAnswer):
                    slack._notify()
                    fate.reached.set()
                    fate.released.wait(timeout=60)
                scopes = {} if answer.get("error") == "invalid_auth" else {"x-oauth-scopes": slack._granted()}
                self._send(200, "application/json", json.dumps(answer).encode(), scopes)

            def _send(
                self, status: int, content_type: str, body: bytes, headers: dict[str, str] | None = None
            ) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (
                    OSError
                ):  # the caller is gone (killed, or it gave up waiting): as with Slack, nobody hears
                    self.close_connection = True

            def log_message(self, *_args: object) -> None:
                pass

        return Handler


def _parse_body(raw: str, headers) -> dict[str, Any]:
    if "json" in (headers.get("Content-Type") or ""):
        return json.loads(raw or "{}")
    return dict(parse_qsl(raw))


def view_problems(view: dict[str, Any]) -> list[str]:
    """What would make Slack refuse a modal: its blocks, title, buttons and metadata."""
    problems = message_problems(view.get("blocks", []), view=True)
    for key, limit in (("title", 24), ("submit", 24), ("close", 24)):
        text = (view.get(key) or {}).get("text", "")
        if len(text) > limit:
            problems.append(f"{key} of {len(text)} characters, more than {limit}")
    if not (view.get("title") or {}).get("text"):
        problems.append("a modal needs a title")
    if len(view.get("private_metadata", "")) > 3000:
        problems.append("private_metadata over 3,000 characters")
    if any(b.get("type") == "input" for b in view.get("blocks", [])) and not view.get("submit"):
        problems.append("a modal with inputs needs a submit button")
    return problems


def form_values(view: dict[str, Any], answers: dict[str, str] | None = None) -> dict[str, Any]:
    """The `state.values` Slack sends when a modal is submitted: each input's initial value, or the answer given
    for its block_id (the text typed, an option's value or label, a date as YYYY-MM-DD)."""
    answers = answers or {}
    values: dict[str, Any] = {}
    for block in view.get("blocks", []):
        if block.get("type") != "input":
            continue
        element, block_id = block["element"], block["block_id"]
        kind, answer = element["type"], answers.get(block_id)
        if kind == "plain_text_input":
            state = {"type": kind, "value": answer if answer is not None else element.get("initial_value")}
        elif kind in ("static_select", "radio_buttons"):
            chosen = element.get("initial_option")
            if answer is not None:
                chosen = next(
                    (o for o in element["options"] if answer in (o["value"], o["text"]["text"])), None
                )
                if chosen is None:
                    raise LookupError(f"no option {answer!r} in {block_id}")
            state = {"type": kind, "selected_option": chosen}
        elif kind == "datepicker":
            state = {
                "type": kind,
                "selected_date": answer if answer is not None else element.get("initial_date"),
            }
        else:
            raise LookupError(f"form_values does not know {kind} inputs")
        values[block_id] = {element["action_id"]: state}
    return values


def _with_block_ids(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Slack gives every block without a block_id one of its own, and sends it back in interactions."""
    return [
        block if "block_id" in block else {**block, "block_id": f"blk{i}"} for i, block in enumerate(blocks)
    ]


def _json_field(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("1", "true")


def _as_history(message: SlackMessage, with_metadata: bool) -> dict[str, Any]:
    """A message as conversations.history lists it (every message here is the app's own)."""
    listed: dict[str, Any] = {
        "type": "message",
        "ts": message.ts,
        "text": message.text,
        "blocks": message.blocks,
        "user": BOT_USER_ID,
        "bot_id": "B0LOCAL01",
        "app_id": APP_ID,
    }
    if with_metadata and message.metadata:
        listed["metadata"] = message.metadata
    return listed


class TrackedExecutor(ThreadPoolExecutor):
    """A thread pool that can tell when all the work handed to it is done, so a local driver can wait for the
    app's lazy listeners (which answer after the HTTP response) instead of sleeping."""

    def __init__(self) -> None:
        super().__init__(max_workers=4, thread_name_prefix="lazy-listener")
        self._running = 0
        self._idle = threading.Condition()

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        with self._idle:
            self._running += 1

        def run():
            try:
                return fn(*args, **kwargs)
            finally:
                with self._idle:
                    self._running -= 1
                    self._idle.notify_all()

        return super().submit(run)

    def wait_until_idle(self, timeout: float = 60.0) -> None:
        with self._idle:
            if not self._idle.wait_for(lambda: self._running == 0, timeout):
                raise TimeoutError(f"the app was still working after {timeout} s")


# A transport hands a request to the app and returns (status, body): over WSGI in-process or real HTTP.
Transport = Callable[[str, bytes, dict[str, str]], tuple[int, bytes]]


def sign(signing_secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack adds to every request it sends an app."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    base = f"v0:{timestamp}:".encode() + body
    signature = "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": signature}


@dataclass
class SlackPerson:
    """Someone in a Slack workspace using the bot: what Slack would send on their behalf, signed."""

    slack: LocalSlack
    transport: Transport
    signing_secret: str
    user_id: str = PERSON_ID
    user_name: str = "jane.support"
    channel_id: str = "C0LOCAL01"
    channel_name: str = "support"
    last_status: int = field(default=0, init=False)
    last_body: bytes = field(default=b"", init=False)

    def command(self, text: str, command: str = "/customer") -> SlackMessage | None:
        """Type a slash command; returns the message it produced (None when it produced none)."""
        body = urlencode(
            {
                "token": "legacy-verification-token-unused",
                "team_id": TEAM_ID,
                "team_domain": TEAM_DOMAIN,
                "channel_id": self.channel_id,
                "channel_name": self.channel_name,
                "user_id": self.user_id,
                "user_name": self.user_name,
                "command": command,
                "text": text,
                "api_app_id": APP_ID,
                "is_enterprise_install": "false",
                "response_url": self.slack.new_response_url(self.channel_id, self.user_id, None),
                "trigger_id": self._trigger_id(),
            }
        ).encode()
        status, raw = self._send(body, "application/x-www-form-urlencoded")
        if status != 200 or not raw:
            return self._latest_visible()
        answer = json.loads(raw) if raw.strip().startswith(b"{") else {"text": raw.decode()}
        return (
            self.slack.record_command_response(self.channel_id, self.user_id, answer)
            or self._latest_visible()
        )

    def click(self, message: SlackMessage, action_id: str | None = None, *, label: str | None = None) -> int:
        """Click the button with this action_id (or visible label) on a message; returns the HTTP status."""
        block, element = find_button(message.blocks, action_id=action_id, label=label)
        action = {
            "type": element["type"],
            "action_id": element["action_id"],
            "block_id": block["block_id"],
            "text": element["text"],
            "action_ts": f"{time.time():.6f}",
        }
        for key in ("value", "style"):
            if key in element:
                action[key] = element[key]
        return self.act(message, action)

    def act(self, message: SlackMessage, action: dict[str, Any]) -> int:
        """Send a block_actions payload for one action on a message, as Slack does."""
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": self._user(),
            "api_app_id": APP_ID,
            "token": "legacy-verification-token-unused",
            "container": {
                "type": "message",
                "message_ts": message.ts,
                "channel_id": message.channel,
                "is_ephemeral": message.ephemeral,
            },
            "trigger_id": self._trigger_id(),
            "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": message.channel, "name": self.channel_name},
            "state": {"values": {}},
            "response_url": self.slack.new_response_url(message.channel, self.user_id, message.ts),
            "actions": [action],
        }
        if not message.ephemeral:  # Slack includes the message itself only when it is not ephemeral
            payload["message"] = {
                "type": "message",
                "ts": message.ts,
                "text": message.text,
                "blocks": message.blocks,
                "user": BOT_USER_ID,
            }
        status, _ = self._send(
            urlencode({"payload": json.dumps(payload)}).encode(), "application/x-www-form-urlencoded"
        )
        return status

    def submit(self, view: dict[str, Any], answers: dict[str, str] | None = None) -> dict[str, Any]:
        """Submit a modal with these answers; returns what the app answered (errors, an update, or nothing).
        An answer with response_action=update replaces the modal, as in Slack."""
        submitted = {**view, "state": {"values": form_values(view, answers)}, "hash": "h" + view["id"]}
        payload = {
            "type": "view_submission",
            "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
            "user": self._user(),
            "api_app_id": APP_ID,
            "token": "legacy-verification-token-unused",
            "trigger_id": self._trigger_id(),
            "view": {
                **submitted,
                "team_id": TEAM_ID,
                "app_id": APP_ID,
                "bot_id": "B0LOCAL01",
                "root_view_id": view["id"],
            },
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }
        body = urlencode({"payload": json.dumps(payload)}).encode()
        status, raw = self._send(body, "application/x-www-form-urlencoded")
        if status != 200:
            raise AssertionError(f"the app answered a view submission with HTTP {status}: {raw[:200]!r}")
        answer = json.loads(raw) if raw.strip() else {}
        if answer.get("response_action") == "update":
            problems = view_problems(answer["view"])
            if problems:
                self.slack._refuse("view update", problems)
            self.slack.replace_view(view["id"], answer["view"])
        elif answer.get("response_action") == "errors":
            inputs = {b.get("block_id") for b in view["blocks"]}
            unknown = [f"error for unknown block_id {k!r}" for k in answer["errors"] if k not in inputs]
            if unknown:
                self.slack._refuse("view errors", unknown)
        return answer

    def visible(self) -> list[SlackMessage]:
        return self.slack.visible(self.channel_id, self.user_id)

    def _user(self) -> dict[str, str]:
        return {"id": self.user_id, "username": self.user_name, "name": self.user_name, "team_id": TEAM_ID}

    def _latest_visible(self) -> SlackMessage | None:
        seen = self.visible()
        return seen[-1] if seen else None

    def _send(self, body: bytes, content_type: str) -> tuple[int, bytes]:
        headers = {"Content-Type": content_type, **sign(self.signing_secret, body)}
        self.last_status, self.last_body = self.transport("/slack/events", body, headers)
        return self.last_status, self.last_body

    def _trigger_id(self) -> str:
        return f"{int(time.time())}.{abs(hash(self.user_id)) % 10**12}.{next(_trigger_counter):08x}"


_trigger_counter = itertools.count(1)


def find_button(
    blocks: list[dict[str, Any]], *, action_id: str | None = None, label: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (block, element) of the first button matching an action_id or a visible label."""
    for block in blocks:
        elements = block.get("elements", []) if block.get("type") == "actions" else []
        if block.get("type") == "section" and block.get("accessory"):
            elements = [block["accessory"]]
        for element in elements:
            if element.get("type") != "button":
                continue
            if (action_id and element.get("action_id") == action_id) or (
                label and element.get("text", {}).get("text") == label
            ):
                return block, element
    wanted = action_id or label
    raise LookupError(f"no button {wanted!r} in the message")


def wsgi_transport(wsgi_app: Callable[..., Any]) -> Transport:
    """Hand requests to a WSGI application in this process, exactly as a WSGI server would."""
    import io

    def send(path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": headers.get("Content-Type", ""),
            "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "http",
            "wsgi.errors": io.StringIO(),
        }
        for name, value in headers.items():
            if name.lower() != "content-type":
                environ["HTTP_" + name.upper().replace("-", "_")] = value
        status: list[int] = []

        def start_response(line: str, _headers: list, _exc_info: object = None) -> None:
            status.append(int(line.split()[0]))

        chunks = wsgi_app(environ, start_response)
        return status[0], b"".join(chunks)

    return send


def http_transport(base_url: str, timeout: float = 10.0) -> Transport:
    """Send requests over real HTTP to a running server (the web command, a benchmark target)."""
    import urllib.error
    import urllib.request

    def send(path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        request = urllib.request.Request(
            base_url.rstrip("/") + path, data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    return send
