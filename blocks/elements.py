"""Small builders for the Block Kit pieces every renderer uses."""

from __future__ import annotations

from slack_sdk.models.blocks import ButtonElement, ContextBlock, MarkdownTextObject, SectionBlock

from blocks.limits import BUTTON_TEXT
from blocks.text import escape, one_line, truncate
from bot.viewmodels import Notice


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
    """A line on top of a message: what happened and who did it (`text` is mrkdwn, escaped by the caller)."""
    icon = ":white_check_mark:" if ok else ":x:"
    return ContextBlock(elements=[MarkdownTextObject(text=truncate(f"{icon} {text}", 1900))])


def action_notice(said: Notice) -> ContextBlock:
    """The line on top of a record after someone acted on it."""
    who = f"<@{escape(said.actor, 32)}>"
    if said.pending:
        text = f":hourglass_flowing_sand: {who} asked to {escape(one_line(said.said), 1700)}: awaiting Stripe's answer."
    else:
        text = f":white_check_mark: {who} {escape(one_line(said.said), 1700)}."
    return ContextBlock(elements=[MarkdownTextObject(text=text)])


def awaiting_stripe(requests: list[str]) -> ContextBlock:
    """What was asked of Stripe for a record and still awaits its answer."""
    listed = "; ".join(escape(one_line(request), 300) for request in requests)
    return ContextBlock(
        elements=[MarkdownTextObject(text=f":hourglass_flowing_sand: Awaiting Stripe's answer: {listed}")]
    )
