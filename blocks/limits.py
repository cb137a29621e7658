"""Slack's Block Kit limits, and the check that a message or modal stays within them.

slack_sdk's models validate most per-element limits when serialised; `message_problems` adds the ones they do
not check (block count, section fields, duplicate ids, the total size Slack accepts).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block

MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100
SECTION_TEXT = 3000
SECTION_FIELD_TEXT = 2000
HEADER_TEXT = 150
CONTEXT_TEXT = (
    2000  # a context element's text; Slack allows 3000, a context line this long is already unreadable
)
BUTTON_TEXT = 75
VIEW_TITLE = 24
# Slack answers msg_blocks_too_long somewhere past 12,000 characters of block text; stay well inside.
MESSAGE_BLOCK_TEXT = 11_000
# The top-level `text` of a message (the notification fallback) is truncated by Slack past 40,000 characters.
MESSAGE_TEXT = 4_000


def message_problems(
    blocks: list[dict[str, Any]], text: str | None = None, *, view: bool = False
) -> list[str]:
    """Everything that would make Slack refuse these blocks; an empty list when Slack would accept them."""
    problems: list[str] = []
    limit = VIEW_BLOCKS if view else MESSAGE_BLOCKS
    if len(blocks) > limit:
        problems.append(f"{len(blocks)} blocks, more than {limit}")
    for index, raw in enumerate(blocks):
        problems.extend(f"block {index}: {p}" for p in _block_problems(raw))
    problems.extend(_duplicates("block_id", [b["block_id"] for b in blocks if "block_id" in b]))
    problems.extend(_duplicates("action_id", list(_action_ids(blocks))))
    size = sum(len(t) for t in block_texts(blocks))
    if not view and size > MESSAGE_BLOCK_TEXT:
        problems.append(f"{size} characters of block text, more than {MESSAGE_BLOCK_TEXT}")
    if text is not None and len(text) > MESSAGE_TEXT:
        problems.append(f"fallback text of {len(text)} characters, more than {MESSAGE_TEXT}")
    if not blocks and not (text or "").strip():
        problems.append("a message needs text or blocks")
    return problems


def _block_problems(raw: dict[str, Any]) -> list[str]:
    try:
        block = Block.parse(raw)
    except SlackObjectFormationError as error:
        return [str(error)]
    if block is None:
        return [f"unknown block type {raw.get('type')!r}"]
    try:
        rendered = block.to_dict()
    except SlackObjectFormationError as error:
        return [str(error)]
    problems = []
    if rendered != raw:
        problems.append("does not round-trip through slack_sdk's models (unknown or misspelled keys)")
    for field in raw.get("fields", []) if raw.get("type") == "section" else []:
        if len(field.get("text", "")) > SECTION_FIELD_TEXT:
            problems.append(f"a section field of {len(field['text'])} characters")
    return problems


def _duplicates(kind: str, ids: list[str]) -> list[str]:
    seen: set[str] = set()
    repeated = {i for i in ids if i in seen or seen.add(i)}  # type: ignore[func-returns-value]
    return [f"duplicate {kind} {i!r}" for i in sorted(repeated)]


def _action_ids(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if "action_id" in node:
            yield node["action_id"]
        for value in node.values():
            yield from _action_ids(value)
    elif isinstance(node, list):
        for item in node:
            yield from _action_ids(item)


def block_texts(node: Any) -> Iterator[str]:
    """Every text string in blocks, as Slack counts them towards a message's size."""
    if isinstance(node, dict):
        if isinstance(node.get("text"), str):
            yield node["text"]
        for value in node.values():
            if not isinstance(value, str):
                yield from block_texts(value)
    elif isinstance(node, list):
        for item in node:
            yield from block_texts(item)
