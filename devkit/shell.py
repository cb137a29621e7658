"""`customer-bot shell`: the whole bot in a terminal, driven with the payloads Slack would send.

You type `/customer jane`; the shell signs it like Slack, hands it to the real app over its WSGI routes, and
draws whatever comes back (the command's answer, messages posted to response URLs) as text. Type a button's
number to click it: the click goes to the app as Slack's `block_actions` payload. At a terminal the line is edited
with readline and the commands typed are kept in a history file; log lines go to a file, never between messages.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Protocol, TextIO

from sqlalchemy import func, select

from bot.db import Database
from bot.models import Customer
from bot.settings import Settings
from devkit.local_slack import LocalSlack, SlackMessage, SlackPerson, TrackedExecutor, wsgi_transport
from devkit.terminal import RED, RESET, Clickable, render_message, render_view
from runtime.app import create_app
from runtime.web import WebApp

DEMO_CUSTOMERS = 300
HISTORY_LENGTH = 1000
PROMPT = "you> "
QUIT_WORDS = frozenset({"quit", "exit", "q"})
# Typed as a modal's answer, these close the modal: nobody means them as an amount, a reason or a date.
CLOSE_WORDS = frozenset({"cancel", "close", "back", *QUIT_WORDS})
COMPLETIONS = ("/customer", "help", "quit")
WAKE_EVERY = 0.1  # seconds; see TerminalKeyboard

HELP = """\
  /customer <text>   find a customer by name, email or Stripe id (cus_…); an order number
                     (/customer 100234 or /customer #100234) opens that order
  <number>           click the button with that number on the last message
  help               this help
  quit               leave; Ctrl-D or Ctrl-C at the prompt leaves too

Keys: the arrows and the usual editing keys work in the line, Ctrl-U clears it, Tab completes /customer,
Up and Down bring back the commands typed before (in this run or earlier ones).

In a modal the shell asks for each field in turn; Enter keeps the value shown. cancel, back or quit
(or Ctrl-C, Ctrl-D) closes the modal and nothing is done. When the app refuses a value, the fields are
asked again with what you typed as their values, and ✗ with the app's reason above the field to change.

History: {history}
Logs:    {log} (log lines go there, not into this conversation)"""


class Keyboard(Protocol):
    """Where the person's lines come from. Both methods raise EOFError (Ctrl-D, end of input) and
    KeyboardInterrupt (Ctrl-C)."""

    def command(self) -> str:
        """The next line typed at the prompt."""

    def answer(self, prompt: str) -> str:
        """The answer to a question about a modal."""

    def close(self) -> None: ...


class TerminalKeyboard:
    """A person at a terminal: readline's line editing, Tab completion of the commands, and the commands typed
    kept in a history file (a modal's answers are not kept: Up at the prompt brings back commands only).

    Ctrl-C interrupts only a question: SIGINT is blocked in this thread but while it waits for a line, and so in
    every thread started meanwhile (they inherit the mask), so the signal always lands here and wakes input().
    Pressed while the app is at work, it is held until the next question, so nothing is left half-done.

    A Ctrl-C that lands after readline drew the prompt but before it waits for a key would wait for the next key
    (CPython only looks at signals when that wait is interrupted), so while reading a timer interrupts the wait
    every WAKE_EVERY seconds: a Ctrl-C is never lost."""

    def __init__(self, history: Path) -> None:
        self.history = history
        self._mask = signal.pthread_sigmask(signal.SIG_BLOCK, _READING_SIGNALS)
        self._alarm = signal.signal(signal.SIGALRM, _wake_up)
        try:
            import readline
        except ImportError:  # a Python without readline (Windows): input() still reads lines
            self.readline = None
            return
        self.readline = readline
        readline.set_auto_history(False)
        readline.set_history_length(HISTORY_LENGTH)
        with contextlib.suppress(OSError):  # no history yet, or one we cannot read: start afresh
            readline.read_history_file(history)
        readline.set_completer(self._complete)
        readline.set_completer_delims(" \t\n")  # Python's own break words at /, as in /customer
        libedit = "libedit" in (readline.__doc__ or "")  # macOS's Python
        readline.parse_and_bind("bind ^I rl_complete" if libedit else "tab: complete")

    def command(self) -> str:
        line = self._input(PROMPT)
        history = self.readline
        if history and line.strip():
            newest = history.get_history_item(history.get_current_history_length())
            if line != newest:  # the same command twice in a row is one step back in history
                history.add_history(line)
        return line

    def answer(self, prompt: str) -> str:
        return self._input(prompt)

    def close(self) -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)
        signal.signal(signal.SIGALRM, self._alarm)
        if self.readline:
            with contextlib.suppress(OSError):
                self.readline.write_history_file(self.history)

    def _complete(self, text: str, state: int) -> str | None:
        assert self.readline is not None
        if self.readline.get_begidx() != 0:
            return None
        matches = [word for word in COMPLETIONS if word.startswith(text)]
        return matches[state] if state < len(matches) else None

    @staticmethod
    def _input(prompt: str) -> str:
        try:
            # A Ctrl-C held while the app was at work is raised here, before the question is asked.
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _READING_SIGNALS)
            signal.setitimer(signal.ITIMER_REAL, WAKE_EVERY, WAKE_EVERY)
            return input(prompt)
        except (EOFError, KeyboardInterrupt):
            print()  # the cursor is on the prompt's line
            raise
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.pthread_sigmask(signal.SIG_BLOCK, _READING_SIGNALS)


_READING_SIGNALS = {signal.SIGINT, signal.SIGALRM}


def _wake_up(_signal: int, _frame: object) -> None:
    """SIGALRM's only work: interrupting readline's wait, so that CPython looks at a Ctrl-C received."""


class LinesKeyboard:
    """Lines from a pipe or a file (a script, a test). Each answer to a modal's question is echoed after it, so a
    transcript reads like the conversation it was."""

    def __init__(self, lines: TextIO, out: TextIO) -> None:
        self.lines = lines
        self.out = out

    def command(self) -> str:
        return self._line()

    def answer(self, prompt: str) -> str:
        self.out.write(prompt)
        try:
            line = self._line()
        except (EOFError, KeyboardInterrupt):
            self.out.write("\n")
            raise
        self.out.write(line + "\n")
        self.out.flush()
        return line

    def close(self) -> None:
        pass

    def _line(self) -> str:
        line = self.lines.readline()
        if not line:
            raise EOFError
        return line.rstrip("\r\n")


class _ModalClosed(Exception):
    """The person typed a word that closes the modal."""


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
        keyboard: Keyboard,
        out: TextIO,
        *,
        color: bool,
        width: int,
        help_text: str,
    ) -> None:
        self.person = person
        self.executor = executor
        self.keyboard = keyboard
        self.out = out
        self.color = color
        self.width = width
        self.help_text = help_text
        self.clickables: list[Clickable] = []
        self.focus: SlackMessage | None = None
        self._seen: dict[str, _Seen] = {}

    def handle(self, line: str) -> bool:
        """Act on one line of input; False when the person wants to leave."""
        line = line.strip()
        if line.lower() in QUIT_WORDS:
            return False
        if not line:
            return True
        if line in ("help", "?"):
            self._say(self.help_text)
        elif line.startswith("/"):
            name, _, text = line.partition(" ")
            if name != "/customer":
                self._say(f"The bot knows one command, /customer. Try: /customer jane\n{self.help_text}")
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
            self._say("(nothing was done)")
            return
        opened = len(self.person.slack.opened)
        status = self.person.act(self.focus, {**chosen.action, "action_ts": f"{time.time():.6f}"})
        if status != 200:
            self._say(f"(the app answered HTTP {status})")
        self.executor.wait_until_idle()
        modals = self.person.slack.opened[opened:]
        for view_id in modals:
            self._run_modal(view_id)
        # A modal closed, or one whose outcome it shows itself, may leave every message as it was.
        self._settle(say_when_unchanged=not modals)

    def _settle(self, *, say_when_unchanged: bool = True) -> None:
        """Wait for work the app does after answering (lazy listeners), then draw what changed."""
        self.executor.wait_until_idle()
        self._show_changes(say_when_unchanged)

    def _run_modal(self, view_id: str) -> None:
        """Show a modal, ask for each of its inputs, submit it, and follow it to its result."""
        typed: dict[str, str] = {}
        errors: dict[str, str] = {}
        while True:
            view = self.person.slack.views[view_id]
            if not errors:  # after errors the modal is unchanged: only the fields are asked again
                self._say("── modal " + "─" * (self.width - 9))
                self._say(render_view(view, width=self.width, color=self.color).text)
            if not view.get("submit"):
                return
            try:
                typed = self._ask_inputs(view, typed, errors)
            except (_ModalClosed, EOFError, KeyboardInterrupt):
                self._say("(modal closed: nothing was done)")
                return
            answer = self.person.submit(view, typed)
            self.executor.wait_until_idle()
            if answer.get("response_action") == "errors":
                errors = answer["errors"]
                self._say("Not done yet: change the fields marked ✗ (Enter keeps what you typed).")
                continue
            if answer.get("response_action") != "update":
                return
            typed, errors = {}, {}

    def _ask_inputs(self, view: dict, typed: dict[str, str], errors: dict[str, str]) -> dict[str, str]:
        """Each input's answer, what was typed before (or the modal's value) kept on Enter; then the go-ahead.
        Raises _ModalClosed, EOFError or KeyboardInterrupt when the person closes the modal."""
        answers: dict[str, str] = {}
        for block in view.get("blocks", []):
            if block.get("type") != "input":
                continue
            if block["block_id"] in errors:
                self._say(self._red(f"  ✗ {errors[block['block_id']]}"))
            answer = self._ask_field(block, typed.get(block["block_id"]))
            if answer is not None:
                answers[block["block_id"]] = answer
        submit = view["submit"]["text"]
        while self._answer(f"{submit}? (Enter to go ahead, cancel to close the modal): ").lower() not in (
            "",
            "y",
            "yes",
        ):
            self._say("Press Enter to go ahead, or type cancel.")
        return answers

    def _ask_field(self, block: dict, before: str | None) -> str | None:
        """One input's answer; None keeps the modal's own value."""
        element = block["element"]
        label = block["label"]["text"] + (" (optional)" if block.get("optional") else "")
        if element.get("options"):
            return self._ask_option(label, element["options"], before or _initial_option(element))
        if element["type"] == "datepicker":
            return self._ask_date(label, before or element.get("initial_date"))
        shown = before if before is not None else element.get("initial_value")
        return self._answer(f"{label}" + (f" (Enter for {shown})" if shown else "") + ": ") or before

    def _ask_option(self, label: str, options: list[dict], chosen: str | None) -> str | None:
        for number, option in enumerate(options, 1):
            mark = "   ← chosen" if option["value"] == chosen else ""
            self._say(f"    {number}. {option['text']['text']}{mark}")
        keep = ", Enter keeps the chosen one" if chosen else ""
        while True:
            typed = self._answer(f"{label} (1-{len(options)}{keep}): ")
            if not typed:
                return chosen
            picked = _pick(options, typed)
            if picked is not None:
                return picked["value"]
            self._say(f"  Type a number from 1 to {len(options)}.")

    def _ask_date(self, label: str, shown: str | None) -> str | None:
        keep = f", Enter for {shown}" if shown else ""
        while True:
            typed = self._answer(f"{label} (YYYY-MM-DD{keep}): ")
            if not typed:
                return shown
            try:
                datetime.strptime(typed, "%Y-%m-%d")
            except ValueError:
                self._say("  Type a date as YYYY-MM-DD, for example 2026-03-31.")
                continue
            return typed

    def _answer(self, prompt: str) -> str:
        typed = self.keyboard.answer(prompt).strip()
        if typed.lower() in CLOSE_WORDS:
            raise _ModalClosed
        return typed

    def _confirmed(self, confirm: dict) -> bool:
        title = confirm.get("title", {}).get("text", "Are you sure?")
        question = confirm.get("text", {}).get("text", "")
        self._say(f"{title}\n{question}")
        try:
            return self._answer("Type y to go ahead: ").lower() in ("y", "yes")
        except (_ModalClosed, EOFError, KeyboardInterrupt):
            return False

    def _show_changes(self, say_when_unchanged: bool) -> None:
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
        if not changed and say_when_unchanged:
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

    def _red(self, text: str) -> str:
        return f"{RED}{text}{RESET}" if self.color else text

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)


def _initial_option(element: dict) -> str | None:
    return (element.get("initial_option") or {}).get("value")


def _pick(options: list[dict], typed: str) -> dict | None:
    """The option a person means by its number, its label or its value."""
    if typed.isdigit():
        return options[int(typed) - 1] if 1 <= int(typed) <= len(options) else None
    folded = typed.casefold()
    return next((o for o in options if folded in (o["value"].casefold(), o["text"]["text"].casefold())), None)


def run_shell(settings: Settings, keyboard: Keyboard | None = None, out: TextIO | None = None) -> int:
    """Converse until the person leaves (quit, Ctrl-D, Ctrl-C at the prompt, end of input); 0 when they do."""
    out = out or sys.stdout
    db = Database(settings.database_url)
    history, log = shell_files(db)
    with _logging_to(log):
        print(f"Logs: {log}", file=out, flush=True)
        if keyboard is None:
            keyboard = TerminalKeyboard(history) if sys.stdin.isatty() else LinesKeyboard(sys.stdin, out)
        try:
            _converse(settings, db, keyboard, out, HELP.format(history=history, log=log))
        finally:
            keyboard.close()
            db.dispose()
    return 0


def _converse(settings: Settings, db: Database, keyboard: Keyboard, out: TextIO, help_text: str) -> None:
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
        shell = Shell(
            person,
            executor,
            keyboard,
            out,
            color=out.isatty(),
            width=min(110, shutil.get_terminal_size((100, 24)).columns),
            help_text=help_text,
        )
        shell._say(
            f"customer-records-bot shell on {_where(db)}. Try: /customer jane\n"
            "help explains the keys and words; quit, Ctrl-D or Ctrl-C leaves."
        )
        with contextlib.suppress(EOFError, KeyboardInterrupt):  # Ctrl-D or Ctrl-C at the prompt: leave
            while shell.handle(keyboard.command()):
                pass
        shell._say("Bye.")


def shell_files(db: Database) -> tuple[Path, Path]:
    """Where the shell keeps its history and its log: beside the SQLite file, or else in the home directory."""
    url = db.engine.url
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        database = Path(url.database).resolve()
        return database.with_suffix(".shell-history"), database.with_suffix(".shell.log")
    return Path.home() / ".customer-bot-shell-history", Path.home() / ".customer-bot-shell.log"


@contextlib.contextmanager
def _logging_to(path: Path) -> Iterator[None]:
    """Log lines (and Python's warnings) go to this file rather than between the conversation's messages."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.handlers, level = saved
        root.setLevel(level)
        handler.close()


@contextlib.contextmanager
def _deaf_to_ctrl_c() -> Iterator[None]:
    """Processes started inside never see the terminal's Ctrl-C, which the terminal sends to every process of the
    shell's group: Ctrl-C is the shell's (it closes a modal), and must not stop the local Stripe. A signal
    blocked here stays blocked in a child process."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _with_local_stripe(
    settings: Settings, db: Database, stack: contextlib.ExitStack, out: TextIO
) -> Settings:
    """No Stripe account configured: run localstripe and give the demo's Jane Doe a life in it."""
    from devkit.local_stripe import LocalStripe, LocalStripeUnavailable, link_demo_customer

    try:
        with _deaf_to_ctrl_c():
            server = stack.enter_context(
                LocalStripe(idempotency=True)
            )  # a request sent again is answered once
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
