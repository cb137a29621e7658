"""`customer-bot check` against the local Slack, localstripe, the CRM stand-ins and a SQLite database: everything
configured well prints ✓ lines and exits 0; each mistake an operator makes on the first day prints its ✗ line with
what to do, and exits 1. Nothing secret is ever printed."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import stripe

from bot.settings import Settings
from bot.webhooks import HANDLED
from devkit.local_slack import LocalSlack
from devkit.local_stripe import LocalStripe
from runtime.check import NEEDED_PERMISSIONS, Limits, check_everything
from runtime.cli import main
from tests.stripe_support import local_stripe_client
from tests.test_crm import AC_TOKEN, KEAP_KEY, FakeActiveCampaign, FakeKeap
from tests.web_process import web_env

BOT_TOKEN = "xoxb-check-token"
SIGNING_SECRET = "check-signing-secret"
ALERTS, AUDIT = "C0ALERTS", "C0AUDIT"
ADMINS = {"U0PAT": "pat.finance", "U0SAM": "sam.support"}
SETTINGS_VARIABLES = (
    "DATABASE_URL",
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "SLACK_API_URL",
    "STRIPE_API_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_API_BASE",
    "ALERTS_CHANNEL",
    "AUDIT_CHANNEL",
    "PAYMENT_ADMINS",
    "ACTIVECAMPAIGN_URL",
    "ACTIVECAMPAIGN_API_KEY",
    "KEAP_API_URL",
    "KEAP_API_KEY",
    "PUBLIC_URL",
)
# Permissions as Stripe names them for the checks' probes (Stripe's own rak_ names).
RAK_NAMES = {
    "Customers: Write": "rak_customer_write",
    "PaymentIntents: Write": "rak_payment_intent_write",
    "Refunds: Write": "rak_refund_write",
    "Subscriptions: Write": "rak_subscription_write",
    "Invoices: Read": "rak_invoice_read",
    "Charges: Read": "rak_charge_read",
    "PaymentMethods: Read": "rak_payment_method_read",
    "Products: Read": "rak_product_read",
}


@dataclass
class Setup:
    """A deployment configured as the README says, through environment variables."""

    env: dict[str, str]
    slack: LocalSlack
    local_stripe: LocalStripe
    stripe: stripe.StripeClient
    public_url: str

    def webhook_endpoint(self, events: list[str]) -> str:
        """An endpoint in Stripe for this host (its deliveries are refused at once: port 9); its signing secret."""
        endpoint = self.stripe.v1.webhook_endpoints.create(
            params={"url": self.public_url + "/stripe/webhook", "enabled_events": events}
        )
        self._endpoints.append(endpoint.id)
        return endpoint.secret

    def restricted_key(self, permissions: list[str]) -> str:
        key = f"rk_test_{uuid.uuid4().hex}"
        request = urllib.request.Request(
            f"{self.local_stripe.url}/_config/restricted_keys/{key}",
            data=json.dumps({"permissions": permissions}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(request, timeout=5).close()
        return key

    def __post_init__(self) -> None:
        self._endpoints: list[str] = []


@pytest.fixture
def setup(monkeypatch, tmp_path, sqlite_template, slack, local_stripe) -> Iterator[Setup]:
    for variable in SETTINGS_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    database = tmp_path / "records.db"
    shutil.copy(sqlite_template, database)
    for user_id, name in ADMINS.items():
        slack.add_user(user_id, name)
    with FakeActiveCampaign() as activecampaign, FakeKeap() as keap:
        configured = Setup(
            env={
                "DATABASE_URL": f"sqlite:///{database}",
                "SLACK_BOT_TOKEN": BOT_TOKEN,
                "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "SLACK_API_URL": slack.api_url,
                "STRIPE_API_KEY": local_stripe.api_key,
                "STRIPE_API_BASE": local_stripe.url,
                "ALERTS_CHANNEL": ALERTS,
                "AUDIT_CHANNEL": AUDIT,
                "PAYMENT_ADMINS": ",".join(ADMINS),
                "ACTIVECAMPAIGN_URL": activecampaign.url,
                "ACTIVECAMPAIGN_API_KEY": AC_TOKEN,
                "KEAP_API_URL": keap.url,
                "KEAP_API_KEY": KEAP_KEY,
            },
            slack=slack,
            local_stripe=local_stripe,
            stripe=local_stripe_client(local_stripe),
            public_url=f"http://127.0.0.1:9/{uuid.uuid4().hex[:8]}",  # its own host in the shared localstripe
        )
        configured.env["PUBLIC_URL"] = configured.public_url
        configured.env["STRIPE_WEBHOOK_SECRET"] = configured.webhook_endpoint(sorted(HANDLED))
        yield configured
        for endpoint_id in configured._endpoints:
            configured.stripe.v1.webhook_endpoints.delete(endpoint_id)


def check(monkeypatch, capsys, setup: Setup, **changes: str | None) -> tuple[int, list[str]]:
    """Run `customer-bot check` in this process with the setup's environment, changed; (exit code, lines)."""
    for variable, value in {**setup.env, **changes}.items():
        if value is None:
            monkeypatch.delenv(variable, raising=False)
        else:
            monkeypatch.setenv(variable, value)
    code = main(["check"])
    out = capsys.readouterr().out
    secrets = [BOT_TOKEN, SIGNING_SECRET, AC_TOKEN, KEAP_KEY, setup.env["STRIPE_WEBHOOK_SECRET"]]
    secrets += [v for v in changes.values() if v and v.startswith(("sk_", "rk_", "pk_", "whsec_"))]
    assert not [secret for secret in secrets if secret in out], "a secret was printed"
    return code, out.splitlines()


def advice(lines: list[str], problem: str) -> str:
    """The what-to-do line under the ✗ line that starts with `problem`."""
    at = next(i for i, line in enumerate(lines) if line.startswith("✗ " + problem))
    assert lines[at + 1].startswith("    → "), lines
    return lines[at + 1]


def test_a_well_configured_deployment_gets_a_tick_on_every_line_and_exit_0(monkeypatch, capsys, setup):
    code, lines = check(monkeypatch, capsys, setup)

    assert code == 0, "\n".join(lines)
    marks = [line for line in lines if line and not line.startswith("    ")]
    assert all(line.startswith("✓ ") for line in marks[:-1]), "\n".join(lines)
    assert marks[-1] == "Everything the bot needs works."
    endpoint = setup.public_url + "/stripe/webhook"
    for expected in (
        f"✓ Database {setup.env['DATABASE_URL']}: answers, every migration applied",
        "✓ Slack: the token works, in workspace Local as @customer-bot",
        "✓ Slack: SLACK_SIGNING_SECRET is set (for `customer-bot web`)",
        "✓ Slack: the app has every scope manifest.yml asks for (commands, chat:write, channels:history, "
        "groups:history, users:read)",
        f"✓ Slack: the bot is in ALERTS_CHANNEL {ALERTS}",
        f"✓ Slack: the bot is in AUDIT_CHANNEL {AUDIT}",
        "✓ Slack: payment admin U0PAT is @pat.finance",
        "✓ Slack: payment admin U0SAM is @sam.support",
        "✓ Stripe: the secret key works, in test mode, for “Local Shop”",
        f"✓ Stripe: the webhook endpoint {endpoint} sends all {len(HANDLED)} events the bot handles",
        "✓ Stripe: STRIPE_WEBHOOK_SECRET is set",
        "✓ ActiveCampaign: the key works (a contact lookup answered)",
        "✓ Keap: the key works (a contact lookup answered)",
    ):
        assert expected in lines, "\n".join(lines)


def test_what_is_not_configured_but_optional_is_said_and_is_no_failure(monkeypatch, capsys, setup):
    code, lines = check(
        monkeypatch,
        capsys,
        setup,
        AUDIT_CHANNEL=None,
        ACTIVECAMPAIGN_URL=None,
        ACTIVECAMPAIGN_API_KEY=None,
        KEAP_API_KEY=None,
    )

    assert code == 0, "\n".join(lines)
    assert (
        "✓ Slack: AUDIT_CHANNEL is not set, so actions are audited in the database only (optional)" in lines
    )
    assert "✓ CRMs: none connected, so emails are compared with Stripe only (optional)" in lines


def revoke_token(setup: Setup) -> dict[str, str]:
    setup.slack.refused_tokens.add(BOT_TOKEN)
    return {}


def withdraw_history_scope(setup: Setup) -> dict[str, str]:
    setup.slack.scopes.discard("channels:history")
    return {}


def leave_alerts_channel(setup: Setup) -> dict[str, str]:
    setup.slack.channels_without_bot.add(ALERTS)
    return {}


def name_an_unknown_admin(setup: Setup) -> dict[str, str]:
    return {"PAYMENT_ADMINS": "U0PAT,U0NOBODY"}


def use_an_unknown_stripe_key(setup: Setup) -> dict[str, str]:
    return {"STRIPE_API_KEY": "rk_test_" + uuid.uuid4().hex}


def use_the_publishable_key(setup: Setup) -> dict[str, str]:
    return {"STRIPE_API_KEY": "pk_test_" + uuid.uuid4().hex}


def restrict_the_key_without_refunds(setup: Setup) -> dict[str, str]:
    granted = [rak for name, rak in RAK_NAMES.items() if name != "Refunds: Write"]
    return {"STRIPE_API_KEY": setup.restricted_key([*granted, "rak_webhook_read"])}


def register_an_endpoint_without_some_events(setup: Setup) -> dict[str, str]:
    for endpoint_id in setup._endpoints:
        setup.stripe.v1.webhook_endpoints.delete(endpoint_id)
    setup._endpoints.clear()
    events = sorted(HANDLED - {"charge.refunded", "invoice.paid"})
    return {"STRIPE_WEBHOOK_SECRET": setup.webhook_endpoint(events)}


def leave_the_database_unmigrated(setup: Setup) -> dict[str, str]:
    empty = setup.env["DATABASE_URL"].removeprefix("sqlite:///") + ".empty"
    sqlite3.connect(empty).close()
    return {"DATABASE_URL": f"sqlite:///{empty}"}


def give_a_wrong_crm_key(setup: Setup) -> dict[str, str]:
    return {"ACTIVECAMPAIGN_API_KEY": "not-the-key"}


FIRST_DAY_MISTAKES = [
    (revoke_token, "Slack refused SLACK_BOT_TOKEN (invalid_auth)", "Bot User OAuth Token (xoxb-…)"),
    (
        withdraw_history_scope,
        "Slack: the token lacks scopes the app needs: channels:history",
        "reinstall the app",
    ),
    (leave_alerts_channel, f"Slack: the bot is not in ALERTS_CHANNEL {ALERTS}", "/invite @customer-bot"),
    (name_an_unknown_admin, "Slack: payment admin U0NOBODY is nobody in this workspace", "member id (U…"),
    (use_an_unknown_stripe_key, "Stripe refused STRIPE_API_KEY", "Developers → API keys"),
    (
        use_the_publishable_key,
        "Stripe: STRIPE_API_KEY is not a secret or restricted key (it looks like a publishable",
        "rk_",
    ),
    (
        restrict_the_key_without_refunds,
        "Stripe: the restricted key lacks Refunds: Write",
        "give it these permissions",
    ),
    (register_an_endpoint_without_some_events, "Stripe: the webhook endpoint", "Add these events"),
    (leave_the_database_unmigrated, "Database sqlite:///", "customer-bot db upgrade"),
    (give_a_wrong_crm_key, "ActiveCampaign: a contact lookup failed", "Check ACTIVECAMPAIGN_API_KEY"),
]


@pytest.mark.parametrize(
    ("mistake", "problem", "todo"), FIRST_DAY_MISTAKES, ids=lambda v: getattr(v, "__name__", "")
)
def test_each_mistake_gets_its_cross_and_what_to_do_and_exit_1(
    monkeypatch, capsys, setup, mistake, problem, todo
):
    code, lines = check(monkeypatch, capsys, setup, **mistake(setup))

    assert code == 1, "\n".join(lines)
    crosses = [line for line in lines if line.startswith("✗ ")]
    assert len(crosses) == 1 and crosses[0].startswith("✗ " + problem), "\n".join(lines)
    assert todo in advice(lines, problem)
    assert lines[-1] == "1 to fix (✗ above); run `customer-bot check` again afterwards."


def test_what_the_cross_lines_say_in_full(monkeypatch, capsys, setup):
    """The wording of the lines an operator reads most, for the webhook events and the database."""
    code, lines = check(monkeypatch, capsys, setup, **register_an_endpoint_without_some_events(setup))
    assert (
        f"✗ Stripe: the webhook endpoint {setup.public_url}/stripe/webhook does not send charge.refunded, invoice.paid"
        in lines
    )

    code, lines = check(monkeypatch, capsys, setup, **leave_the_database_unmigrated(setup))
    assert any(
        line.startswith("✗ Database") and line.endswith(": answers, but no migration is applied")
        for line in lines
    )
    assert code == 1


def test_a_restricted_key_with_every_permission_the_bot_needs_passes(monkeypatch, capsys, setup):
    key = setup.restricted_key([*RAK_NAMES.values(), "rak_webhook_read"])

    code, lines = check(monkeypatch, capsys, setup, STRIPE_API_KEY=key)

    assert code == 0, "\n".join(lines)
    assert (
        "✓ Stripe: the restricted key works, in test mode, for an account whose name this key may not read"
        in lines
    )
    assert (
        f"✓ Stripe: the restricted key has all {len(NEEDED_PERMISSIONS)} permissions the bot needs" in lines
    )
    assert set(RAK_NAMES) == {p.name for p in NEEDED_PERMISSIONS}


def test_a_slack_that_never_answers_costs_one_line_within_the_time_bound(setup, slack):
    held = slack.hold_answer("auth.test")
    settings = Settings.from_env(setup.env)
    try:
        started = time.monotonic()
        findings = check_everything(
            settings, public_url=setup.public_url, limits=Limits(call_seconds=5, part_seconds=0.5)
        )
        took = time.monotonic() - started
    finally:
        held.release()

    assert took < 2
    slack_lines = [f for f in findings if f.line.startswith("Slack")]
    assert [(f.mark, f.line) for f in slack_lines] == [("✗", "Slack: no answer within 0.5 s")]
    assert all(f.mark == "✓" for f in findings if f not in slack_lines)


def test_the_installed_command_prints_the_checklist_and_exits_1_on_a_problem(setup, tmp_path):
    setup.slack.channels_without_bot.add(AUDIT)
    result = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "check"],
        env=web_env({**setup.env, "PYTHONIOENCODING": "utf-8"}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"✗ Slack: the bot is not in AUDIT_CHANNEL {AUDIT}" in result.stdout.splitlines()
    assert "    → Type /invite @customer-bot in that channel." in result.stdout.splitlines()
