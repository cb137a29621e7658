"""Slack listeners: parse what Slack sent, ask bot/ for the answer, send back what blocks/ renders."""

from __future__ import annotations

from dataclasses import dataclass

from slack_bolt import App

from bot.actions import Actions
from bot.db import Database
from bot.settings import Settings


@dataclass(frozen=True)
class Services:
    """What listeners need, handed in by the app factory."""

    settings: Settings
    db: Database
    actions: Actions


def register(app: App, services: Services) -> None:
    from commands import actions, customer, email_sync, records

    customer.register(app, services)
    records.register(app, services)
    actions.register(app, services)
    email_sync.register(app, services)
