"""A rendered message: blocks serialised (and so validated) by slack_sdk's models, plus fallback text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slack_sdk.models.blocks import Block

from blocks.limits import MESSAGE_TEXT
from blocks.text import truncate


@dataclass(frozen=True)
class Message:
    text: str  # shown in notifications and by clients that cannot draw blocks
    blocks: list[dict[str, Any]]

    @classmethod
    def of(cls, text: str, blocks: list[Block]) -> Message:
        return cls(truncate(text, MESSAGE_TEXT), [block.to_dict() for block in blocks])
