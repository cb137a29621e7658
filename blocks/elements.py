"""Small builders for the Block Kit pieces every renderer uses. Text that Slack reads as mrkdwn goes in only
through `mrkdwn`, which takes `Mrkdwn` (see blocks.text) and refuses a plain string."""

from __future__ import annotations

from slack_sdk.models.blocks import (
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from blocks.limits import BUTTON_TEXT, CONTEXT_TEXT, SECTION_FIELD_TEXT, SECTION_TEXT
from blocks.text import Mrkdwn, clip, escape, md, mention, one_line, truncate
from bot.viewmodels import Notice


def mrkdwn(text: Mrkdwn, limit: int = SECTION_TEXT) -> MarkdownTextObject:
    """A mrkdwn text object; `verbatim` so Slack does not turn bare names or URLs in it into mentions or links."""
    return MarkdownTextObject(text=clip(_checked(text), limit), verbatim=True)


def _checked(text: Mrkdwn) -> Mrkdwn:
    if not isinstance(text, Mrkdwn):
        raise TypeError("mrkdwn text must be built with blocks.text.md or escape, so data in it is escaped")
    return text


_ANGLES = str.maketrans({"<": "‹", ">": "›"})


def plain(text: str, limit: int) -> PlainTextObject:
    """Plain text, cut to `limit`. Slack parses no markup in it; angle brackets are still shown as look-alikes
    so that nothing in any field of a message reads as markup to whatever relays or inspects it."""
    return PlainTextObject(text=truncate(str(text).translate(_ANGLES), limit))


def button(label: str, action_id: str, value: str, *, selected: bool = False) -> ButtonElement:
    """A button; `selected` marks the current choice of a toggle (Slack's primary style)."""
    return ButtonElement(
        text=plain(label, BUTTON_TEXT),
        action_id=action_id,
        value=value,
        style="primary" if selected else None,
    )


def confirm(title: str, text: str, yes: str, no: str) -> ConfirmObject:
    """A confirmation dialog, all plain text (Slack would read a bare string there as mrkdwn)."""
    return ConfirmObject(
        title=plain(title, 100), text=plain(text, 300), confirm=plain(yes, 30), deny=plain(no, 30)
    )


def section(text: Mrkdwn, accessory: ButtonElement | None = None) -> SectionBlock:
    return SectionBlock(text=mrkdwn(text), accessory=accessory)


def context(text: Mrkdwn) -> ContextBlock:
    return ContextBlock(elements=[mrkdwn(text, CONTEXT_TEXT)])


def field(label: str, value: Mrkdwn) -> MarkdownTextObject:
    return mrkdwn(md("*{}*\n{}", label, _checked(value)), SECTION_FIELD_TEXT)


def action_notice(said: Notice) -> ContextBlock:
    """The line on top of a record after someone acted on it."""
    what = escape(one_line(said.said), 1700)
    if said.pending:
        return context(
            md(
                ":hourglass_flowing_sand: {} asked to {}: awaiting Stripe's answer.",
                mention(said.actor),
                what,
            )
        )
    return context(md(":white_check_mark: {} {}.", mention(said.actor), what))


def awaiting_stripe(requests: list[str]) -> ContextBlock:
    """What was asked of Stripe for a record and still awaits its answer."""
    listed = md("; ").join(escape(one_line(request), 300) for request in requests)
    return context(md(":hourglass_flowing_sand: Awaiting Stripe's answer: {}", listed))
