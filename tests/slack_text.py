"""Reading a Slack message in tests the way a person reads it: its text and its buttons."""

from __future__ import annotations

from typing import Any

from devkit.local_slack import SlackMessage


def text_of(message: SlackMessage | None) -> str:
    """Every piece of text in the message's blocks, in order, one per line."""
    assert message is not None, "expected a message"
    return "\n".join(_texts(message.blocks))


def buttons(message: SlackMessage) -> list[str]:
    """The visible labels of every button, in order."""
    return [b["text"]["text"] for b in _buttons(message.blocks)]


def action_ids(message: SlackMessage) -> list[str]:
    return [b["action_id"] for b in _buttons(message.blocks)]


def selected(message: SlackMessage) -> list[str]:
    """Labels of the buttons drawn as the current choice of a toggle."""
    return [b["text"]["text"] for b in _buttons(message.blocks) if b.get("style") == "primary"]


def _buttons(node: Any) -> list[dict]:
    found: list[dict] = []
    if isinstance(node, dict):
        if node.get("type") == "button":
            found.append(node)
        for value in node.values():
            found.extend(_buttons(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_buttons(item))
    return found


def _texts(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        if isinstance(node.get("text"), str) and node.get("type") in ("mrkdwn", "plain_text"):
            found.append(node["text"])
        for value in node.values():
            if not isinstance(value, str):
                found.extend(_texts(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_texts(item))
    return found
