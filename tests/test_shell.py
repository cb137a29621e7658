"""`customer-bot shell`: a person types commands and button numbers; the real app answers through the local Slack.

Most tests feed lines in-process; the keys of a real terminal (arrows, Ctrl-C, Ctrl-D) are pressed in a
pseudo-terminal running the `customer-bot shell` command."""

from __future__ import annotations

import codecs
import io
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.db import Database
from bot.settings import Settings
from devkit.seed import seed
from devkit.shell import DEMO_CUSTOMERS, LinesKeyboard, run_shell

# A Stripe that is never reached: for conversations that only read, so no local Stripe has to start.
NO_STRIPE = {"stripe_api_key": "sk_test_unused", "stripe_api_base": "http://127.0.0.1:9"}


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory, sqlite_template) -> Path:
    path = tmp_path_factory.mktemp("shell") / "customer-records.db"
    shutil.copy(sqlite_template, path)
    db = Database(f"sqlite:///{path}")
    seed(db, DEMO_CUSTOMERS)
    db.dispose()
    return path


@pytest.fixture
def demo(tmp_path, demo_template) -> Path:
    """A directory holding the demo database, as the shell leaves it after its first run."""
    shutil.copy(demo_template, tmp_path / "customer-records.db")
    return tmp_path


def converse(directory: Path, *lines: str, **settings: str) -> str:
    out = io.StringIO()
    keyboard = LinesKeyboard(io.StringIO("".join(line + "\n" for line in lines)), out)
    local = Settings(database_url=f"sqlite:///{directory}/customer-records.db", **settings)
    assert run_shell(local, keyboard, out) == 0
    return out.getvalue()


def test_first_run_seeds_demo_data_and_shows_a_record(tmp_path):
    text = converse(tmp_path, "/customer jane doe", "quit")

    assert "First run: writing 300 demo customers" in text
    assert "Jane Doe" in text and "Lifetime value" in text and "Missed payments" in text
    assert "[1 Active*] [2 All]" in text, "buttons are numbered, the current toggle marked"
    assert text.rstrip().endswith("Bye.")


def test_numbers_click_buttons_through_the_app(demo):
    text = converse(demo, "/customer jane doe", "2", "quit", **NO_STRIPE)
    after_click = text.split("[1 Active*] [2 All]", 1)[1]

    assert "[1 Active] [2 All*]" in after_click, "the All toggle is now the current one"
    assert "Canceled" in after_click, "All shows the ended subscription"


def test_second_run_keeps_the_data_and_explains_odd_input(demo):
    text = converse(
        demo, "/customer nobody-by-this-name", "/refund", "hello", "42", "help", "quit", **NO_STRIPE
    )

    assert "First run" not in text
    assert "No customer matches “nobody-by-this-name”" in text
    assert "The bot knows one command, /customer" in text
    assert "Type /customer hello to search" in text
    assert "There is no button 42" in text
    assert "click the button with that number" in text
    assert "Up and Down bring back the commands" in text and "cancel, back or quit" in text, "help tells keys"
    assert f"Logs:    {demo / 'customer-records.shell.log'}" in text


def test_customer_bot_shell_runs_on_the_embedded_default_and_logs_to_a_file(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "shell"],
        input="/customer jane doe\nquit\n",
        env=_without_accounts(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "customer-records.db").exists(), "the default database is a SQLite file here"
    assert "Jane Doe" in result.stdout
    log = tmp_path / "customer-records.shell.log"
    assert result.stdout.startswith(f"Logs: {log}\n"), "the first line says where the log lines go"
    assert " INFO " in log.read_text() and "stripe" in log.read_text(), "the log file is written"
    assert " INFO " not in result.stdout and " WARNING " not in result.stdout
    assert result.stderr == "", "no log noise in the conversation"


def test_the_shell_refunds_through_a_modal_against_a_local_stripe(demo):
    """Open Jane's newest order (button 8 on her card), Refund (1), type the amount, pick a reason, confirm."""
    text = converse(demo, "/customer jane doe", "8", "1", "12.50", "4", "Shell test", "", "", "quit")

    assert "Jane Doe is linked to it" in text
    assert "Refund $12.50 USD of order" in text, "the confirmation states the exact amount"
    assert "✅ Refunded $12.50 of order" in text, "the modal shows the outcome"
    assert "refunded $12.50 of order" in text.rsplit("── only you can see this", 1)[1], (
        "the record updated in place"
    )


def test_a_refused_value_is_asked_again_with_everything_typed_kept(demo):
    text = converse(
        demo,
        "/customer jane doe",
        "8",
        "1",
        *("99999", "4", "Typed once"),  # too much: the app refuses the amount
        "",
        *("12.50", "", ""),  # a new amount; Enter keeps the reason and the note typed before
        "",
        "",  # the confirmation's Refund
        "quit",
    )
    again = text.split("✗ At most $", 1)[1]

    assert "Amount (USD) (Enter for 99999)" in again, "the refused amount is the field's value"
    assert "4. Other (say why in the note)   ← chosen" in again, "the chosen reason is kept"
    assert "Note (optional) (Enter for Typed once)" in again, "the note is kept"
    assert again.split("Refund $12.50 USD", 1)[0].count("── modal") == 1, "asked again, not drawn again"
    assert "✅ Refunded $12.50 of order" in again
    assert "Typed once" in text.rsplit("── only you can see this", 1)[1], "the note kept reached the refund"


def test_cancel_back_and_quit_close_a_modal_and_the_conversation_goes_on(demo):
    text = converse(
        demo,
        "/customer jane doe",
        "8",
        *("1", "quit"),  # Refund, then quit at the amount
        *("1", "12.50", "9", "back"),  # a reason that is not there, then back
        *("1", "", "", "", "cancel"),  # every field answered, then cancel instead of going ahead
        "/customer jane doe",
        **NO_STRIPE,
    )

    assert text.count("(modal closed: nothing was done)") == 3
    assert "Type a number from 1 to 4." in text
    assert "(no answer)" not in text, "closing a modal changes no message, and that is no news"
    assert "Refund $" not in text and "✅ Refunded" not in text
    assert "Lifetime value" in text.rsplit("(modal closed", 1)[1], "the shell went on after the modal"
    assert text.rstrip().endswith("Bye."), "the end of the input leaves like Ctrl-D"


# At a terminal


class Terminal:
    """`customer-bot shell` in a pseudo-terminal, as a person at a keyboard runs it."""

    def __init__(self, directory: Path, **env: str) -> None:
        environment = {**_without_accounts(), "TERM": "dumb", "COLUMNS": "100", **env}
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: become the shell, in the demo's directory
            try:
                os.chdir(directory)
                # As a login shell would start it: Ctrl-C not ignored (as in a background job) nor blocked.
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, set())
                os.execve(sys.executable, [sys.executable, "-m", "runtime.cli", "shell"], environment)
            finally:
                os._exit(127)
        self.screen = ""
        self._looked = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.status: int | None = None

    def press(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def expect(self, text: str, timeout: float = 60) -> str:
        """What the screen showed since the last look, up to and including `text`."""
        deadline = time.monotonic() + timeout
        while (found := self.screen.find(text, self._looked)) < 0:
            if not self._read(deadline):
                raise AssertionError(
                    f"{text!r} never came; the screen showed:\n{self.screen[self._looked :]}"
                )
        shown, self._looked = self.screen[self._looked : found + len(text)], found + len(text)
        return shown

    def exit_code(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while self._read(deadline):
            pass
        while self.status is None and time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
            else:
                select.select([], [], [], 0.05)  # the terminal closed; the process is ending
        assert self.status is not None, "the shell did not end"
        return self.status

    def stop(self) -> None:
        """After a failed test: end the shell and what it started (its process group), then close the terminal."""
        if self.status is None:
            os.killpg(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)

    def _read(self, deadline: float) -> bool:
        """Read what the shell shows next; False when the time is up or the shell closed its terminal."""
        ready, _, _ = select.select([self.fd], [], [], max(0, deadline - time.monotonic()))
        if not ready:
            return False
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: nothing holds the terminal open any more
            return False
        self.screen += self._decoder.decode(chunk).replace("\r\n", "\n")
        return bool(chunk)


@pytest.fixture
def terminals():
    started: list[Terminal] = []

    def start(directory: Path, **env: str) -> Terminal:
        started.append(Terminal(directory, **env))
        return started[-1]

    yield start
    for terminal in started:
        terminal.stop()


UP, CTRL_C, CTRL_D = "\x1b[A", "\x03", "\x04"


def test_at_a_terminal_up_brings_back_last_run_s_command_ctrl_c_closes_a_modal_and_ctrl_d_ctrl_c_leave(
    demo, terminals
):
    first = terminals(demo, STRIPE_API_KEY="sk_test_unused", STRIPE_API_BASE="http://127.0.0.1:9")
    first.expect("you> ")
    first.press("/customer jane doe\r")
    assert "Lifetime value" in first.expect("you> ")
    first.press(CTRL_D)
    first.expect("Bye.")
    assert first.exit_code() == 0
    assert "/customer jane doe" in (demo / "customer-records.shell-history").read_text()

    second = terminals(demo)  # with the local Stripe this time
    second.expect("you> ")
    second.press(UP + "\r")
    assert "Lifetime value" in second.expect("you> "), "Up brought back /customer jane doe"
    second.press("8\r")  # her newest order
    second.expect("you> ")
    second.press("1\r")  # Refund
    second.expect("Amount (USD) (Enter for")
    second.expect("): ")
    second.press(CTRL_C)
    second.expect("(modal closed: nothing was done)")
    second.expect("you> ")

    second.press("1\r")
    second.expect("): ")
    second.press("12.50\r")
    second.expect("Enter keeps the chosen one): ")
    second.press("4\r")  # Other: the emulator refunds with no Stripe reason
    for _note_then_go_ahead_then_refund in range(3):
        second.expect("): ")
        second.press("\r")
    assert "✅ Refunded $12.50 of order" in second.expect("you> "), "the local Stripe outlived the Ctrl-C"
    second.press("/customer jane do" + CTRL_C)
    second.expect("Bye.")
    assert second.exit_code() == 0
    assert "Traceback" not in first.screen + second.screen


def _without_accounts() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "STRIPE_", "DATABASE_URL"))}
