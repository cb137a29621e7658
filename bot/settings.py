"""Configuration, read once from the environment and passed to whatever needs it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_DATABASE_URL = "sqlite:///customer-records.db"
DEFAULT_SLACK_API_URL = "https://slack.com/api/"


class MissingSetting(Exception):
    """A command needs an environment variable that is not set."""

    def __init__(self, variable: str, purpose: str) -> None:
        super().__init__(f"{variable} is not set: {purpose}.")
        self.variable = variable


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None
    slack_api_url: str = DEFAULT_SLACK_API_URL
    stripe_api_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str | None = None
    alerts_channel: str | None = None
    audit_channel: str | None = None
    payment_admins: frozenset[str] = field(default_factory=frozenset)
    port: int = 3000
    missed_payments_every_minutes: int = 5
    email_sync_at: str = "06:00"  # each day, UTC, HH:MM
    activecampaign_url: str | None = None  # e.g. https://youraccount.api-us1.com
    activecampaign_api_key: str | None = None
    keap_api_url: str = "https://api.infusionsoft.com/crm/rest"
    keap_api_key: str | None = None  # a Keap personal access token or service account key
    public_url: str | None = (
        None  # https://<host> where `web` is reached; `check` looks for its Stripe webhook
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        slack_api_url = text("SLACK_API_URL") or DEFAULT_SLACK_API_URL
        if not slack_api_url.endswith("/"):
            slack_api_url += "/"
        admins = frozenset(a.strip() for a in env.get("PAYMENT_ADMINS", "").split(",") if a.strip())
        port_text = text("PORT") or "3000"
        if not port_text.isdigit():
            raise ValueError(f"PORT must be a port number, not {port_text!r}.")
        return cls(
            database_url=text("DATABASE_URL") or DEFAULT_DATABASE_URL,
            slack_bot_token=text("SLACK_BOT_TOKEN"),
            slack_signing_secret=text("SLACK_SIGNING_SECRET"),
            slack_app_token=text("SLACK_APP_TOKEN"),
            slack_api_url=slack_api_url,
            stripe_api_key=text("STRIPE_API_KEY"),
            stripe_webhook_secret=text("STRIPE_WEBHOOK_SECRET"),
            stripe_api_base=text("STRIPE_API_BASE"),
            alerts_channel=text("ALERTS_CHANNEL"),
            audit_channel=text("AUDIT_CHANNEL"),
            payment_admins=admins,
            port=int(port_text),
            missed_payments_every_minutes=_positive(env, "MISSED_PAYMENTS_EVERY_MINUTES", 5),
            email_sync_at=_time_of_day(env, "EMAIL_SYNC_AT", "06:00"),
            activecampaign_url=text("ACTIVECAMPAIGN_URL"),
            activecampaign_api_key=text("ACTIVECAMPAIGN_API_KEY"),
            keap_api_url=text("KEAP_API_URL") or "https://api.infusionsoft.com/crm/rest",
            keap_api_key=text("KEAP_API_KEY"),
            public_url=(text("PUBLIC_URL") or "").rstrip("/") or None,
        )

    def require_jobs(self) -> None:
        """The scheduled jobs post to Slack: a bot token and the alerts channel."""
        if not self.slack_bot_token:
            raise MissingSetting("SLACK_BOT_TOKEN", "the bot token (xoxb-…) the jobs post with")
        if not self.alerts_channel:
            raise MissingSetting(
                "ALERTS_CHANNEL",
                "the id (C…) of the channel for missed-payment alerts and email-sync reports",
            )

    def require_slack(self, *, socket_mode: bool = False) -> None:
        """Fail with one line naming the first missing Slack credential."""
        if not self.slack_bot_token:
            raise MissingSetting("SLACK_BOT_TOKEN", "the bot token (xoxb-…) from the Slack app's OAuth page")
        if socket_mode:
            if not self.slack_app_token:
                raise MissingSetting(
                    "SLACK_APP_TOKEN", "an app-level token (xapp-…) with connections:write for Socket Mode"
                )
        elif not self.slack_signing_secret:
            raise MissingSetting(
                "SLACK_SIGNING_SECRET", "the signing secret from the Slack app's Basic Information page"
            )


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, not {value!r}.")
    return int(value)


def _time_of_day(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    hours, _, minutes = value.partition(":")
    if not (hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60):
        raise ValueError(f"{name} must be a time of day like 06:00 (UTC), not {value!r}.")
    return f"{int(hours):02d}:{int(minutes):02d}"
