"""Short messages that tell a person plainly what went wrong and what to do."""

from __future__ import annotations

from blocks.elements import section
from blocks.message import Message


def database_unavailable() -> Message:
    text = (
        ":warning: The customer records database is not answering right now, so nothing was looked up or changed. "
        "Try again in a minute; if it keeps happening, tell whoever runs the bot."
    )
    return Message.of(text, [section(text)])


def record_gone(what: str) -> Message:
    text = f"That {what} is no longer in the customer records. Search again with `/customer`."
    return Message.of(text, [section(text)])


def unexpected_error(reference: str) -> Message:
    text = (
        ":x: Something went wrong on our side and nothing was changed. "
        f"Try again; if it keeps happening, give whoever runs the bot this reference: `{reference}`."
    )
    return Message.of(text, [section(text)])
