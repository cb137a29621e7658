"""`customer-bot shell`: a person types commands and button numbers; the real app answers through the local Slack."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from bot.settings import Settings
from devkit.shell import run_shell


def converse(tmp_path: Path, *lines: str) -> str:
    out = io.StringIO()
    settings = Settings(database_url=f"sqlite:///{tmp_path}/shell.db")
    assert run_shell(settings, stdin=io.StringIO("".join(line + "\n" for line in lines)), out=out) == 0
    return out.getvalue()


def test_first_run_seeds_demo_data_and_shows_a_record(tmp_path):
    text = converse(tmp_path, "/customer jane doe", "quit")

    assert "First run: writing 300 demo customers" in text
    assert "Jane Doe" in text and "Lifetime value" in text and "Missed payments" in text
    assert "[1 Active*] [2 All]" in text, "buttons are numbered, the current toggle marked"


def test_numbers_click_buttons_through_the_app(tmp_path):
    text = converse(tmp_path, "/customer jane doe", "2", "quit")
    after_click = text.split("[1 Active*] [2 All]", 1)[1]

    assert "[1 Active] [2 All*]" in after_click, "the All toggle is now the current one"
    assert "Canceled" in after_click, "All shows the ended subscription"


def test_second_run_keeps_the_data_and_explains_odd_input(tmp_path):
    converse(tmp_path, "quit")
    text = converse(tmp_path, "/customer nobody-by-this-name", "/refund", "hello", "42", "help", "quit")

    assert "First run" not in text
    assert "No customer matches “nobody-by-this-name”" in text
    assert "The bot knows one command, /customer" in text
    assert "Type /customer hello to search" in text
    assert "There is no button 42" in text
    assert "click the button with that number" in text


def test_customer_bot_shell_runs_on_the_embedded_default(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "STRIPE_", "DATABASE_URL"))}
    result = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "shell"],
        input="/customer jane doe\nquit\n",
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "customer-records.db").exists(), "the default database is a SQLite file here"
    assert "Jane Doe" in result.stdout
    assert result.stderr == "", "no log noise in the conversation"


def test_the_shell_refunds_through_a_modal_against_a_local_stripe(tmp_path):
    """Open Jane's newest order (button 8 on her card), Refund (1), type the amount, pick a reason, confirm."""
    text = converse(tmp_path, "/customer jane doe", "8", "1", "12.50", "4", "Shell test", "", "", "quit")

    assert "Jane Doe is linked to it" in text
    assert "Refund $12.50 USD of order" in text, "the confirmation states the exact amount"
    assert "✅ Refunded $12.50 of order" in text, "the modal shows the outcome"
    assert "refunded $12.50 of order" in text.rsplit("── only you can see this", 1)[1], (
        "the record updated in place"
    )


def test_closing_a_modal_does_nothing(tmp_path):
    text = converse(tmp_path, "/customer jane doe", "8", "1", "cancel", "quit")

    assert "(closed: nothing was done)" in text
    assert "✅ Refunded" not in text and "Refund $" not in text
