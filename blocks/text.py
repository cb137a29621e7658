"""Text for Block Kit: escaping user content for mrkdwn, truncating to limits, dates and money in words."""

from __future__ import annotations

from datetime import datetime

from bot.money import Money

ELLIPSIS = "…"
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_ESCAPE_TABLE = str.maketrans(_ESCAPES)


def truncate(text: str, limit: int) -> str:
    """At most `limit` characters, ending in an ellipsis when something was cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)].rstrip() + ELLIPSIS


def escape(text: str, limit: int | None = None) -> str:
    """User content made safe for mrkdwn (&, <, > escaped), cut so the escaped form fits `limit`."""
    escaped = text.translate(_ESCAPE_TABLE)
    if limit is None or len(escaped) <= limit:
        return escaped
    out: list[str] = []
    size = 0
    for ch in text:
        piece = _ESCAPES.get(ch, ch)
        if size + len(piece) > limit - len(ELLIPSIS):
            break
        out.append(piece)
        size += len(piece)
    return "".join(out).rstrip() + ELLIPSIS


def one_line(text: str) -> str:
    return " ".join(text.split())


def date_token(moment: datetime, fmt: str = "{date_short}") -> str:
    """A Slack date that each reader sees in their own time zone; the fallback is UTC."""
    fallback = moment.strftime("%Y-%m-%d %H:%M UTC") if "{time}" in fmt else moment.strftime("%b %-d, %Y")
    return f"<!date^{int(moment.timestamp())}^{fmt}|{fallback}>"


def money(value: Money) -> str:
    return value.format()


def money_list(values: list[Money], *, most: int = 4) -> str:
    """'$1,234.00 · €50.00', or '—' when there is nothing."""
    if not values:
        return "—"
    shown = " · ".join(v.format() for v in values[:most])
    more = len(values) - most
    return shown + (f" · and {more} more currencies" if more > 0 else "")


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    word = singular if count == 1 else (plural_form or singular + "s")
    return f"{count:,} {word}"
