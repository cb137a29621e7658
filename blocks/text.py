"""Text for Block Kit. Every mrkdwn string the bot sends is a `Mrkdwn`: one of our own templates with each piece
of data escaped on the way in, so text from customers, Stripe, CRMs or people can never mention, link or format.

    md("*{}* · {}", name, money(total))      # name is escaped; money(...) is already Mrkdwn and kept as is

The renderers' builders (blocks.elements, blocks.message) accept only `Mrkdwn`, so the unsafe way (an f-string
with data in it) fails the first time it is rendered. A template passed to `md` is ours: a literal, never data.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache
from typing import Any, LiteralString

from bot.money import Money

ELLIPSIS = "…"
_ESCAPE_TABLE = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
# Slack formats *bold*, _italic_, ~strike~ and `code` when a marker pair stands at word boundaries. In data, the
# markers of such a pair are shown as look-alikes that Slack leaves alone; a lone marker (jane_doe) stays as is.
_FORMATTING = re.compile(r"(?<![\w])([*_~])(?=\S)(.*?\S)\1(?![\w])")
_LOOK_ALIKES = {"*": "∗", "_": "‗", "~": "∼"}
_BACKTICK_LOOK_ALIKE = "ˋ"


class Mrkdwn(str):
    """Text safe to send as Slack mrkdwn. Build it with `md`, `escape` or the helpers here, never by hand."""

    __slots__ = ()

    def __add__(self, other: str) -> Mrkdwn:  # type: ignore[override]
        return Mrkdwn(str.__add__(self, _checked(other)))

    def __radd__(self, other: str) -> Mrkdwn:
        return Mrkdwn(str.__add__(_checked(other), self))

    def join(self, pieces: Iterable[str]) -> Mrkdwn:  # type: ignore[override]
        return Mrkdwn(str.join(self, (_safe(piece) for piece in pieces)))


def md(template: LiteralString, /, *args: Any, **kwargs: Any) -> Mrkdwn:
    """Our `template` (str.format syntax: {}, {0}, {name}, with format specs) with every value escaped, except
    values that are already Mrkdwn."""
    out: list[str] = []
    auto = 0
    for literal, name, spec in _parsed(template):
        out.append(literal)
        if name is None:
            continue
        if name:
            value = args[int(name)] if name.isdigit() else kwargs[name]
        else:
            value, auto = args[auto], auto + 1
        if isinstance(value, Mrkdwn):
            if spec:
                raise ValueError(f"a format spec would pad or cut escaped text: {template!r}")
            out.append(value)
        else:
            out.append(escape(format(value, spec)))
    return Mrkdwn("".join(out))


@lru_cache(maxsize=2048)
def _parsed(template: str) -> tuple[tuple[str, str | None, str], ...]:
    """A template taken apart once (the renderers use a few hundred, over and over)."""
    parts = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        if conversion or (name and not (name.isdigit() or name.isidentifier())):
            raise ValueError(f"md templates take plain fields only: {template!r}")
        parts.append((literal, name, spec or ""))
    names = {name for _, name, _ in parts if name is not None}
    if "" in names and any(name.isdigit() for name in names):
        raise ValueError(f"md templates number their fields all or none: {template!r}")
    return tuple(parts)


def _safe(text: str) -> str:
    return text if isinstance(text, Mrkdwn) else escape(text)


def _checked(text: str) -> str:
    if not isinstance(text, Mrkdwn):
        raise TypeError("only Mrkdwn joins Mrkdwn: put data in with md() or escape()")
    return text


def escape(text: str, limit: int | None = None) -> Mrkdwn:
    """Data made safe for mrkdwn: &, < and > escaped, formatting pairs disarmed; cut to fit `limit` (never
    inside an escape)."""
    if isinstance(text, Mrkdwn):
        return clip(text, limit)
    text = _within(text, limit)
    if "`" in text:
        text = text.replace("`", _BACKTICK_LOOK_ALIKE)
    escaped = clip(Mrkdwn(_unformat(text).translate(_ESCAPE_TABLE)), limit)
    # The ellipsis of a cut is not a word character, so it can close a pair that was none before the cut.
    return Mrkdwn(_unformat(escaped)) if escaped.endswith(ELLIPSIS) else escaped


def code(text: str, limit: int | None = None) -> Mrkdwn:
    """Data shown as inline code (emails, Stripe ids): exactly as written (Slack formats nothing inside code),
    easy to copy; a backtick, which would end the code, shown as an apostrophe."""
    if not text.strip():
        return Mrkdwn("—")
    inner = None if limit is None else max(1, limit - 2)  # the backticks count too
    shown = _within(one_line(text), inner).replace("`", "'").translate(_ESCAPE_TABLE)
    return Mrkdwn(f"`{clip(Mrkdwn(shown), inner)}`")


def _within(text: str, limit: int | None) -> str:
    # Escaping only lengthens text: what lies past the limit can never be shown, so it is not worked on.
    return text if limit is None else text[: limit + 1]


def _unformat(text: str) -> str:
    if not any(marker in text for marker in _LOOK_ALIKES):
        return text
    text = _FORMATTING.sub(lambda m: _LOOK_ALIKES[m[1]] + _unformat(m[2]) + _LOOK_ALIKES[m[1]], text)
    # A marker at either end could pair with one in the text next to it ("_a" then "b_"): disarmed too.
    if text[:1] in _LOOK_ALIKES:
        text = _LOOK_ALIKES[text[0]] + text[1:]
    if text[-1:] in _LOOK_ALIKES:
        text = text[:-1] + _LOOK_ALIKES[text[-1]]
    return text


def clip(text: Mrkdwn, limit: int | None = None) -> Mrkdwn:
    """Mrkdwn cut to at most `limit` characters, never inside an escape (&amp;) or a token (<!date…>)."""
    if limit is None or len(text) <= limit:
        return text
    cut = max(0, limit - len(ELLIPSIS))
    for opening, closing in (("<", ">"), ("&", ";")):  # a token first: it may hold an escape
        opened = text.rfind(opening, 0, cut)
        if opened >= 0 and text.find(closing, opened, cut) < 0:
            cut = opened
    return Mrkdwn(text[:cut].rstrip() + ELLIPSIS)


def json_value(data: Any) -> str:
    """Compact JSON for a button value or a modal's memory, with <, > and & written as \\u escapes: it reads
    back the same, and no data carried in it looks like Slack markup to anything that inspects the payload."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def truncate(text: str, limit: int) -> str:
    """Plain text (headers, buttons, options) of at most `limit` characters, ending in an ellipsis when cut."""
    if isinstance(text, Mrkdwn):
        return clip(text, limit)
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)].rstrip() + ELLIPSIS


def one_line(text: str) -> str:
    return " ".join(text.split())


DATE_AND_TIME = "{date_short} at {time}"


def date_token(moment: datetime, fmt: LiteralString = "{date_short}") -> Mrkdwn:
    """A Slack date that each reader sees in their own time zone. The fallback (shown where Slack cannot draw the
    token: notifications, some clients) says the same in UTC: "Jan 15, 2026", "Jan 15, 2026 at 12:00 UTC"."""
    if fmt == DATE_AND_TIME:
        fallback = moment.strftime("%b %-d, %Y at %H:%M UTC")
    elif "{time}" in fmt:
        fallback = moment.strftime("%Y-%m-%d %H:%M UTC")
    else:
        fallback = moment.strftime("%b %-d, %Y")
    return Mrkdwn(f"<!date^{int(moment.timestamp())}^{fmt}|{fallback}>")


def sentence(text: Mrkdwn) -> Mrkdwn:
    """Text ended as a sentence: a full stop added unless it ends with one (or with ! ? …) already, so data
    that brings its own ("Your card was declined.") never ends in ".."."""
    return text if text.rstrip().endswith((".", "!", "?", ELLIPSIS)) else text + Mrkdwn(".")


def mention(user_id: str) -> Mrkdwn:
    """A Slack user, by id. Ids are letters and digits; anything else is shown as text, never as markup."""
    if user_id.isascii() and user_id.isalnum() and 0 < len(user_id) <= 32:
        return Mrkdwn(f"<@{user_id}>")
    return escape(user_id, 32)


def money(value: Money) -> Mrkdwn:
    return escape(value.format())


def money_list(values: list[Money], *, most: int = 4) -> Mrkdwn:
    """'$1,234.00 · €50.00', or '—' when there is nothing."""
    if not values:
        return Mrkdwn("—")
    shown = md(" · ").join(money(v) for v in values[:most])
    more = len(values) - most
    return shown + (md(" · and {} more currencies", more) if more > 0 else Mrkdwn(""))


def plural(count: int, singular: str, plural_form: str | None = None) -> Mrkdwn:
    word = singular if count == 1 else (plural_form or singular + "s")
    return md("{:,} {}", count, word)
