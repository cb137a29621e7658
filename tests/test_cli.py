"""The command line as an operator meets it: each command's help, what `db upgrade` applied, and jobs that need
Stripe stopping with one line when it is not configured."""

from __future__ import annotations

import io
import logging

import pytest

from devkit.local_slack import LocalSlack
from runtime.cli import main
from runtime.jobs import scheduled_jobs
from runtime.progress import Progress
from tests.conftest import settings_for

COMMANDS = ["web", "socket", "scheduler", "run-job", "import-stripe", "check", "db", "shell", "seed"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_explains_itself(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])

    said = capsys.readouterr().out
    assert exit_.value.code == 0
    assert len(said.split("\n\n")[1].strip()) > 20, "a sentence on what it does"
    if command not in ("shell", "seed"):
        assert "Reads: DATABASE_URL" in said


def test_db_upgrade_says_what_it_applied_then_that_nothing_was_left(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'fresh.db'}")

    assert main(["db", "upgrade"]) == 0
    first = capsys.readouterr().out.splitlines()
    assert main(["db", "upgrade"]) == 0
    second = capsys.readouterr().out.splitlines()

    assert first[0].startswith("Applied 0001: Customer records") and len(first) >= 6
    assert first[-1] == second[-1].removesuffix(": nothing to apply.")
    assert second == [f"{first[-1]}: nothing to apply."]


@pytest.mark.parametrize("job", ["email-sync", "settle-unanswered"])
def test_a_job_that_asks_stripe_stops_with_one_line_without_a_key(job, tmp_path, monkeypatch, capsys):
    with LocalSlack() as slack:
        monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'records.db'}")
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
        monkeypatch.setenv("SLACK_API_URL", slack.api_url)
        monkeypatch.setenv("ALERTS_CHANNEL", "C0ALERTS1")
        monkeypatch.delenv("STRIPE_API_KEY", raising=False)

        assert main(["run-job", job]) == 2

        err = capsys.readouterr().err.strip().splitlines()
        assert err == [
            f"customer-bot: STRIPE_API_KEY is not set: the {job} job asks Stripe, so it needs the Stripe key."
        ]
        assert not [c for c in slack.calls if c.method == "chat.postMessage"], "nothing posted"


def test_the_clock_without_a_stripe_key_runs_only_the_alerts(db):
    with LocalSlack() as slack:
        settings = settings_for(db, slack, alerts_channel="C0ALERTS1")
        assert sorted(scheduled_jobs(settings)) == ["missed-payments"]
        with_stripe = settings_for(db, slack, alerts_channel="C0ALERTS1", stripe_api_key="sk_test_x")
        assert sorted(scheduled_jobs(with_stripe)) == ["email-sync", "missed-payments", "settle-unanswered"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal(caplog):
    screen = Terminal()
    with Progress(stream=screen) as progress:
        for done in (100, 200, 300):
            progress("customers", done)
        progress("subscriptions", 40)

    shown = screen.getvalue()
    assert "customers: " in shown and "300" in shown and "subscriptions: " in shown and "40" in shown
    assert not caplog.records, "no log lines while a bar is shown"


def test_progress_in_a_log_is_a_line_every_so_often(caplog):
    now = [0.0]
    caplog.set_level(logging.INFO, logger="customer_bot.progress")
    with Progress(stream=io.StringIO(), every=10, clock=lambda: now[0]) as progress:
        for done in range(1, 31):
            now[0] += 1
            progress("customers", done * 100)

    assert [r.getMessage() for r in caplog.records] == [
        "customers: 1,100 so far",  # 10 s after the step began
        "customers: 2,100 so far",
        "customers: 3,000 done",  # where the step ended
    ]
