"""A rendered message: Block Kit blocks (plain dicts, see blocks.elements) and its fallback text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from blocks.limits import MESSAGE_TEXT
from blocks.text import Mrkdwn, clip


@dataclass(frozen=True)
class Message:
    text: Mrkdwn  # shown in notifications and by clients that cannot draw blocks: escaped like any block text
    blocks: list[dict[str, Any]]

    def __post_init__(self) -> None:
        if not isinstance(self.text, Mrkdwn):
            raise TypeError("a message's text must be built with blocks.text.md or escape")

    @classmethod
    def of(cls, text: Mrkdwn, blocks: list[dict[str, Any]]) -> Message:
        if not isinstance(text, Mrkdwn):
            raise TypeError("a message's text must be built with blocks.text.md or escape")
        return cls(clip(text, MESSAGE_TEXT), blocks)
