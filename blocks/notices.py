"""Short messages that tell a person plainly what went wrong and what to do."""

from __future__ import annotations

from blocks.elements import section
from blocks.message import Message
from blocks.text import Mrkdwn, code, md


def _said(text: Mrkdwn) -> Message:
    return Message.of(text, [section(text)])


def database_unavailable() -> Message:
    return _said(
        md(
            ":warning: The customer records database is not answering right now, so nothing was looked up or "
            "changed. Try again in a minute; if it keeps happening, tell whoever runs the bot."
        )
    )


def record_gone(what: str) -> Message:
    return _said(md("That {} is no longer in the customer records. Search again with `/customer`.", what))


def bad_value() -> Message:
    return _said(
        md(
            ":x: That button came from a message the bot cannot read any more (an older version, or changed "
            "since), so nothing was done. Open the record again with `/customer` and try there."
        )
    )


def unexpected_error(reference: str) -> Message:
    return _said(
        md(
            ":x: Something went wrong on our side and nothing was changed. "
            "Try again; if it keeps happening, give whoever runs the bot this reference: {}.",
            code(reference),
        )
    )
