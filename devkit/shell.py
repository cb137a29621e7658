"""`customer-bot shell`: the whole bot in a terminal, driven with the payloads Slack would send.

You type `/customer jane`; the shell signs it like Slack, hands it to the real app over its WSGI routes, and
draws whatever comes back (the command's answer, messages posted to response URLs) as text. Type a button's
number to click it: the click goes to the app as Slack's `block_actions` payload.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import sys
import time
from dataclasses import dataclass, replace
from typing import TextIO

from sqlalchemy import func, select

from bot.db import Database
from bot.models import Customer
from bot.settings import Settings
from devkit.local_slack import LocalSlack, SlackMessage, SlackPerson, TrackedExecutor, wsgi_transport
from devkit.terminal import Clickable, render_message, render_view
from runtime.app import create_app
from runtime.web import WebApp

DEMO_CUSTOMERS = 300

HELP = """\
  /customer <text>   find a customer by name, email, Stripe id (cus_…) or order number
  <number>           click the button with that number on the last message
  help               this help
  quit               leave (Ctrl-D works too)"""


@dataclass
class _Seen:
    text: str
    blocks: list
    deleted: bool


class Shell:
    def __init__(
        self,
        person: SlackPerson,
        executor: TrackedExecutor,
        stdin: TextIO,
        out: TextIO,
        *,
        color: bool,
        width: int,
    ) -> None:
        self.person = person
        self.executor = executor
        self.stdin = stdin
        self.out = out
        self.color = color
        self.width = width
        self.clickables: list[Clickable] = []
        self.focus: SlackMessage | None = None
        self._seen: dict[str, _Seen] = {}

    def handle(self, line: str) -> bool:
        """Act on one line of input; False when the person wants to leave."""
        line = line.strip()
        if line in ("quit", "exit", "q"):
            return False
        if not line:
            return True
        if line in ("help", "?"):
            self._say(HELP)
        elif line.startswith("/"):
            name, _, text = line.partition(" ")
            if name != "/customer":
                self._say(f"The bot knows one command, /customer. Try: /customer jane\n{HELP}")
                return True
            self.person.command(text)
            self._settle()
        elif line.isdigit():
            self._click(int(line))
        else:
            self._say(f"Type /customer {line} to search, or a button's number to click it.")
        return True

    def _click(self, number: int) -> None:
        chosen = next((c for c in self.clickables if c.number == number), None)
        if chosen is None or self.focus is None:
            self._say(f"There is no button {number} on the last message.")
            return
        if chosen.confirm and not self._confirmed(chosen.confirm):
            return
        opened = len(self.person.slack.opened)
        status = self.person.act(self.focus, {**chosen.action, "action_ts": f"{time.time():.6f}"})
        if status != 200:
            self._say(f"(the app answered HTTP {status})")
        self.executor.wait_until_idle()
        for view_id in self.person.slack.opened[opened:]:
            self._run_modal(view_id)
        self._settle()

    def _settle(self) -> None:
        """Wait for work the app does after answering (lazy listeners), then draw what changed."""
        self.executor.wait_until_idle()
        self._show_changes()

    def _run_modal(self, view_id: str) -> None:
        """Show a modal, ask for each of its inputs, submit it, and follow it to its result."""
        while True:
            view = self.person.slack.views[view_id]
            self._say("── modal " + "─" * (self.width - 9))
            self._say(render_view(view, width=self.width, color=self.color).text)
            if not view.get("submit"):
                return
            answers = self._ask_inputs(view)
            if answers is None:
                self._say("(closed: nothing was done)")
                return
            answer = self.person.submit(view, answers)
            self.executor.wait_until_idle()
            if answer.get("response_action") == "errors":
                for field, message in answer["errors"].items():
                    self._say(f"  ✗ {field}: {message}")
                continue
            if answer.get("response_action") != "update":
                return

    def _ask_inputs(self, view: dict) -> dict[str, str] | None:
        """Each input's answer (Enter keeps what is shown); None when the person closes the modal."""
        answers: dict[str, str] = {}
        for block in view.get("blocks", []):
            if block.get("type") != "input":
                continue
            element, label = block["element"], block["label"]["text"]
            options = element.get("options")
            if options:
                for number, option in enumerate(options, 1):
                    self._say(f"    {number}. {option['text']['text']}")
                prompt = f"{label} (number, Enter for the one marked): "
            elif element["type"] == "datepicker":
                prompt = f"{label} (YYYY-MM-DD, Enter for {element.get('initial_date', 'none')}): "
            else:
                shown = element.get("initial_value")
                prompt = f"{label}" + (f" (Enter for {shown}): " if shown else ": ")
            typed = self._ask(prompt)
            if typed is None or typed.lower() in ("cancel", "close"):
                return None
            if not typed:
                continue
            if options and typed.isdigit() and 1 <= int(typed) <= len(options):
                typed = options[int(typed) - 1]["value"]
            answers[block["block_id"]] = typed
        submit = view["submit"]["text"]
        confirm = self._ask(f"[{submit}] or cancel? (Enter to go ahead, c to cancel): ")
        return None if confirm is None or confirm.lower().startswith("c") else answers

    def _ask(self, prompt: str) -> str | None:
        self.out.write(prompt)
        self.out.flush()
        line = self.stdin.readline()
        if not line:
            return None
        if not self.stdin.isatty():
            self.out.write(line)  # echo scripted answers so a transcript reads like a conversation
        return line.strip()

    def _confirmed(self, confirm: dict) -> bool:
        title = confirm.get("title", {}).get("text", "Are you sure?")
        question = confirm.get("text", {}).get("text", "")
        self._say(f"{title}\n{question}\nType y to continue:")
        answer = (self._ask("") or "").lower()
        return answer in ("y", "yes")

    def _show_changes(self) -> None:
        """Draw every message that appeared or changed since the last look, and focus the newest of them."""
        changed = []
        for message in self.person.slack.messages:
            before = self._seen.get(message.ts)
            now = _Seen(message.text, message.blocks, message.deleted)
            if message.visible_to not in (None, self.person.user_id):
                continue
            if before != now:
                changed.append(message)
            self._seen[message.ts] = now
        if not changed:
            self._say("(no answer)")
        for message in changed:
            if message.deleted:
                self._say("(message closed)")
                if self.focus is not None and self.focus.ts == message.ts:
                    self.focus, self.clickables = None, []
                continue
            self._draw(message)

    def _draw(self, message: SlackMessage) -> None:
        screen = render_message(
            message.blocks, fallback_text=message.text, width=self.width, color=self.color
        )
        where = "only you can see this" if message.ephemeral else f"posted in #{self.person.channel_name}"
        self._say(f"── {where} " + "─" * max(0, self.width - len(where) - 4))
        self._say(screen.text)
        if screen.clickables:
            self.focus, self.clickables = message, screen.clickables

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)


def run_shell(settings: Settings, stdin: TextIO | None = None, out: TextIO | None = None) -> int:
    stdin = stdin or sys.stdin
    out = out or sys.stdout
    db = Database(settings.database_url)
    db.upgrade()
    _seed_on_first_run(db, out)
    with LocalSlack() as slack, contextlib.ExitStack() as stack:
        secret = secrets.token_hex(16)
        person_id = "U0LOCAL01"
        local = replace(
            settings,
            slack_bot_token="xoxb-local-shell",
            slack_signing_secret=secret,
            slack_api_url=slack.api_url,
            payment_admins=settings.payment_admins or frozenset({person_id}),
        )
        if not settings.stripe_api_key:
            local = _with_local_stripe(local, db, stack, out)
        executor = stack.enter_context(TrackedExecutor())
        web = WebApp(create_app(local, db, listener_executor=executor), db)
        person = SlackPerson(slack, wsgi_transport(web), secret, user_id=person_id)
        interactive = stdin.isatty()
        shell = Shell(
            person,
            executor,
            stdin,
            out,
            color=out.isatty(),
            width=min(110, shutil.get_terminal_size((100, 24)).columns),
        )
        shell._say(f"customer-records-bot shell on {_where(db)}. Try: /customer jane  (help for more)")
        while True:
            if interactive:
                out.write("you> ")
                out.flush()
            line = stdin.readline()
            if not line or not shell.handle(line):
                break
    db.dispose()
    return 0


def _with_local_stripe(
    settings: Settings, db: Database, stack: contextlib.ExitStack, out: TextIO
) -> Settings:
    """No Stripe account configured: run localstripe and give the demo's Jane Doe a life in it."""
    from devkit.local_stripe import LocalStripe, LocalStripeUnavailable, link_demo_customer

    try:
        server = stack.enter_context(LocalStripe())
    except LocalStripeUnavailable as missing:
        print(
            f"No STRIPE_API_KEY and no local Stripe ({missing}): actions will say Stripe is not connected.",
            file=out,
        )
        return settings
    link_demo_customer(db, server)
    print("Stripe: a local emulator (localstripe); Jane Doe is linked to it, so act on her record.", file=out)
    return replace(settings, stripe_api_key=server.api_key, stripe_api_base=server.url)


def _seed_on_first_run(db: Database, out: TextIO) -> None:
    with db.session() as session:
        empty = not session.scalar(select(func.count()).select_from(Customer))
    if empty:
        from devkit.seed import seed

        print(f"First run: writing {DEMO_CUSTOMERS} demo customers…", file=out, flush=True)
        seed(db, DEMO_CUSTOMERS)


def _where(db: Database) -> str:
    url = db.engine.url
    return (
        f"SQLite file {url.database}" if url.get_backend_name() == "sqlite" else f"{url.get_backend_name()}"
    )
