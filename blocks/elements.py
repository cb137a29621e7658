"""Small builders for the Block Kit pieces every renderer uses, as the plain dicts Slack takes (building slack_sdk's
models and serialising them cost more than the rest of a record's rendering). The tests parse every message the
bot sends back through slack_sdk's models and Slack's limits (blocks.limits.message_problems), so a dict Slack
would refuse fails them. Text that Slack reads as mrkdwn goes in only through `mrkdwn`, which takes `Mrkdwn` (see
blocks.text) and refuses a plain string."""

from __future__ import annotations

from typing import Any

from blocks.limits import BUTTON_TEXT, CONTEXT_TEXT, HEADER_TEXT, SECTION_FIELD_TEXT, SECTION_TEXT
from blocks.text import Mrkdwn, clip, escape, md, mention, one_line, truncate
from bot.viewmodels import Notice

Block = dict[str, Any]

_ANGLES = str.maketrans({"<": "‹", ">": "›"})


def mrkdwn(text: Mrkdwn, limit: int = SECTION_TEXT) -> dict[str, Any]:
    """A mrkdwn text object; `verbatim` so Slack does not turn bare names or URLs in it into mentions or links."""
    return {"type": "mrkdwn", "text": clip(_checked(text), limit), "verbatim": True}


def _checked(text: Mrkdwn) -> Mrkdwn:
    if not isinstance(text, Mrkdwn):
        raise TypeError("mrkdwn text must be built with blocks.text.md or escape, so data in it is escaped")
    return text


def plain(text: str, limit: int) -> dict[str, Any]:
    """Plain text, cut to `limit`. Slack parses no markup in it; angle brackets are still shown as look-alikes
    so that nothing in any field of a message reads as markup to whatever relays or inspects it."""
    return {"type": "plain_text", "text": truncate(str(text).translate(_ANGLES), limit)}


def button(
    label: str,
    action_id: str,
    value: str,
    *,
    selected: bool = False,
    danger: bool = False,
    confirm: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A button; `selected` marks the current choice of a toggle (Slack's primary style)."""
    element: dict[str, Any] = {
        "type": "button",
        "text": plain(label, BUTTON_TEXT),
        "action_id": action_id,
        "value": value,
    }
    if selected or danger:
        element["style"] = "danger" if danger else "primary"
    if confirm:
        element["confirm"] = confirm
    return element


def confirm(title: str, text: str, yes: str, no: str) -> dict[str, Any]:
    """A confirmation dialog, all plain text (Slack would read a bare string there as mrkdwn)."""
    return {
        "title": plain(title, 100),
        "text": plain(text, 300),
        "confirm": plain(yes, 30),
        "deny": plain(no, 30),
    }


def section(text: Mrkdwn, accessory: dict[str, Any] | None = None, *, block_id: str | None = None) -> Block:
    block: Block = {"type": "section", "text": mrkdwn(text)}
    if accessory:
        block["accessory"] = accessory
    if block_id:
        block["block_id"] = block_id
    return block


def fields(*shown: dict[str, Any]) -> Block:
    """A section of side-by-side fields (see `field`)."""
    return {"type": "section", "fields": list(shown)}


def field(label: str, value: Mrkdwn) -> dict[str, Any]:
    return mrkdwn(md("*{}*\n{}", label, _checked(value)), SECTION_FIELD_TEXT)


def context(text: Mrkdwn, *, block_id: str | None = None) -> Block:
    block: Block = {"type": "context", "elements": [mrkdwn(text, CONTEXT_TEXT)]}
    if block_id:
        block["block_id"] = block_id
    return block


def header(text: str, *, block_id: str | None = None) -> Block:
    block: Block = {"type": "header", "text": plain(text, HEADER_TEXT)}
    if block_id:
        block["block_id"] = block_id
    return block


def divider() -> Block:
    return {"type": "divider"}


def actions(block_id: str, elements: list[dict[str, Any]]) -> Block:
    return {"type": "actions", "block_id": block_id, "elements": elements}


def action_notice(said: Notice) -> Block:
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


def awaiting_stripe(requests: list[str]) -> Block:
    """What was asked of Stripe for a record and still awaits its answer."""
    listed = md("; ").join(escape(one_line(request), 300) for request in requests)
    return context(md(":hourglass_flowing_sand: Awaiting Stripe's answer: {}", listed))
