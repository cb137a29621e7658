"""A modal's memory and what a person typed into it: `Form` travels in the modal's private_metadata (where the
person was, what they chose so far); the readers take a submitted view's values by the input's block id."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from blocks.text import json_value
from bot.viewmodels import CardState

VERSION = 3  # of what a modal keeps; a form opened under another is refused, not misread


PRIVATE_METADATA = 3000  # characters of a modal's memory Slack keeps
TOO_BIG = (
    "This is too long for Slack to keep while you confirm (signs like < > & take the room of six letters "
    "there). Shorten the note, or the description, and review again."
)


class StaleForm(Exception):
    """A modal's memory that this version of the bot did not write (opened before an update, or not by us)."""


@dataclass(frozen=True)
class Form:
    response_url: str | None
    shown: tuple[str, int]  # the record the person is looking at: ("order" | "recurring" | "customer", id)
    back: CardState
    data: dict[str, Any] = field(default_factory=dict)
    in_place: bool = True  # the button was on the person's own message; from a shared one, answer privately

    @classmethod
    def opened_from(cls, body: dict, shown: tuple[str, int], back: CardState, **data: Any) -> Form:
        private = bool(body.get("container", {}).get("is_ephemeral"))
        return cls(body.get("response_url"), shown, back, data, in_place=private)

    def encode(self) -> str:
        return json_value(
            {
                "v": VERSION,
                "u": self.response_url,
                "s": list(self.shown),
                "b": self.back.encode(),
                "d": self.data,
                "p": self.in_place,
            }
        )

    @classmethod
    def decode(cls, text: str) -> Form:
        try:
            raw = json.loads(text)
            if raw["v"] != VERSION:
                raise StaleForm(f"form version {raw['v']!r}")
            kind, record_id = raw["s"]
            return cls(raw["u"], (kind, int(record_id)), CardState.decode(raw["b"]), dict(raw["d"]), raw["p"])
        except (KeyError, TypeError, ValueError) as error:
            raise StaleForm(str(error)[:80]) from error

    def add(self, **data: Any) -> Form:
        return replace(self, data={**self.data, **data})

    @property
    def fits(self) -> bool:
        """Whether Slack can keep this as a modal's memory."""
        return len(self.encode()) <= PRIVATE_METADATA


def selected(values: dict, block_id: str) -> str | None:
    option = _input(values, block_id).get("selected_option")
    return option["value"] if option else None


def text(values: dict, block_id: str) -> str:
    return (_input(values, block_id).get("value") or "").strip()


def picked_date(values: dict, block_id: str) -> date | None:
    """The date picked, or None (none picked, or not a date: Slack sends ISO dates, anything else is not Slack)."""
    chosen = _input(values, block_id).get("selected_date")
    try:
        return date.fromisoformat(chosen) if chosen else None
    except (TypeError, ValueError):
        return None


def _input(values: dict, block_id: str) -> dict:
    return values.get(block_id, {}).get(block_id, {}) or {}
