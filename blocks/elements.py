"""Small builders for the Block Kit pieces every renderer uses."""

from __future__ import annotations

from slack_sdk.models.blocks import ButtonElement, ContextBlock, MarkdownTextObject, SectionBlock

from blocks.limits import BUTTON_TEXT
from blocks.text import truncate


def button(label: str, action_id: str, value: str, *, selected: bool = False) -> ButtonElement:
    """A button; `selected` marks the current choice of a toggle (Slack's primary style)."""
    return ButtonElement(
        text=truncate(label, BUTTON_TEXT),
        action_id=action_id,
        value=value,
        style="primary" if selected else None,
    )


def section(text: str, accessory: ButtonElement | None = None) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text), accessory=accessory)


def context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=text)])


def field(label: str, value: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=f"*{label}*\n{value}")


def notice(text: str, *, ok: bool = True) -> ContextBlock:
    """The line on top of a record after an action: what happened and who did it."""
    icon = ":white_check_mark:" if ok else ":x:"
    return ContextBlock(elements=[MarkdownTextObject(text=truncate(f"{icon} {text}", 1900))])
