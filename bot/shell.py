"""`customer-bot shell`: the whole bot in a terminal, driven with the payloads Slack would send.

You type `/customer jane`; the shell signs it like Slack, hands it to the real app over its WSGI routes, and
draws whatever comes back (the command's answer, messages posted to response URLs) as text. Type a button's
number to click it: the click goes to the app as Slack's `block_actions` payload.
"""

from __future__ import annotations

import secrets
import shutil
import sys
import time
from dataclasses import dataclass, replace
from typing import TextIO

from sqlalchemy import func, select

from bot.app import create_app
from bot.db import Database
from bot.local_slack import LocalSlack, SlackMessage, SlackPerson, wsgi_transport
from bot.models import Customer
from bot.settings import Settings
from bot.terminal import Clickable, render_message
from bot.web import WebApp

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
    def __init__(self, person: SlackPerson, stdin: TextIO, out: TextIO, *, color: bool, width: int) -> None:
        self.person = person
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
            self._show_changes()
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
        status = self.person.act(self.focus, {**chosen.action, "action_ts": f"{time.time():.6f}"})
        if status != 200:
            self._say(f"(the app answered HTTP {status})")
        self._show_changes()

    def _confirmed(self, confirm: dict) -> bool:
        title = confirm.get("title", {}).get("text", "Are you sure?")
        question = confirm.get("text", {}).get("text", "")
        self._say(f"{title}\n{question}\nType y to continue:")
        answer = self.stdin.readline().strip().lower()
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
    with LocalSlack() as slack:
        secret = secrets.token_hex(16)
        local = replace(
            settings,
            slack_bot_token="xoxb-local-shell",
            slack_signing_secret=secret,
            slack_api_url=slack.api_url,
        )
        web = WebApp(create_app(local, db), db)
        person = SlackPerson(slack, wsgi_transport(web), secret)
        interactive = stdin.isatty()
        shell = Shell(
            person,
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


def _seed_on_first_run(db: Database, out: TextIO) -> None:
    with db.session() as session:
        empty = not session.scalar(select(func.count()).select_from(Customer))
    if empty:
        from bot.seed import seed

        print(f"First run: writing {DEMO_CUSTOMERS} demo customers…", file=out, flush=True)
        seed(db, DEMO_CUSTOMERS)


def _where(db: Database) -> str:
    url = db.engine.url
    return (
        f"SQLite file {url.database}" if url.get_backend_name() == "sqlite" else f"{url.get_backend_name()}"
    )
