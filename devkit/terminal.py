"""Block Kit in, terminal text out: how `customer-bot shell` shows the bot's messages and modals.

`render_message` and `render_view` turn the blocks the app sends (dicts, exactly as Slack receives them) into
readable text, and list every clickable element with a number and the action Slack would put in a
`block_actions` payload if that element were clicked, so the shell can replay the click through the real app.
Buttons are clickable; so is each option of an overflow menu or static select. Everything else (inputs, date
pickers, images, unknown blocks) is shown but not clickable. Nothing here does any I/O.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from itertools import zip_longest
from typing import Any

Json = dict[str, Any]

BOLD = "\033[1m"
RED = "\033[31m"
RESET = "\033[0m"

EMOJI = {
    "warning": "⚠️",
    "white_check_mark": "✅",
    "heavy_check_mark": "✔️",
    "x": "❌",
    "credit_card": "💳",
    "hourglass": "⏳",
    "hourglass_flowing_sand": "⏳",
    "pause_button": "⏸️",
    "arrow_forward": "▶️",
    "arrows_counterclockwise": "🔄",
    "moneybag": "💰",
    "money_with_wings": "💸",
    "email": "📧",
    "envelope": "✉️",
    "package": "📦",
    "repeat": "🔁",
    "calendar": "📅",
    "date": "📅",
    "red_circle": "🔴",
    "large_green_circle": "🟢",
    "large_yellow_circle": "🟡",
    "white_circle": "⚪",
    "no_entry": "⛔",
    "lock": "🔒",
    "bust_in_silhouette": "👤",
    "receipt": "🧾",
    "mag": "🔍",
    "link": "🔗",
    "bell": "🔔",
    "rotating_light": "🚨",
    "information_source": "ℹ️",
    "memo": "📝",
    "tada": "🎉",
}

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _long_date(d: datetime) -> str:
    return f"{_MONTHS[d.month - 1]} {d.day}, {d.year}"


def _short_date(d: datetime) -> str:
    return f"{_MONTHS[d.month - 1][:3]} {d.day}, {d.year}"


def _weekday_date(d: datetime) -> str:
    return f"{_WEEKDAYS[d.weekday()]}, {_long_date(d)}"


# Slack's date tokens. The "pretty" ones would say "today" or "yesterday"; here they show the date, so that
# rendering does not depend on when it runs.
_DATE_TOKENS: dict[str, Callable[[datetime], str]] = {
    "date_num": lambda d: f"{d:%Y-%m-%d}",
    "date_slash": lambda d: f"{d:%m/%d/%Y}",
    "date_short": _short_date,
    "date_short_pretty": _short_date,
    "date": _long_date,
    "date_pretty": _long_date,
    "date_long": _weekday_date,
    "date_long_pretty": _weekday_date,
    "time": lambda d: f"{d:%H:%M}",
    "time_secs": lambda d: f"{d:%H:%M:%S}",
}

# Kinds of element shown in brackets, e.g. "Amount: [text input]"; others show their type, e.g. "[users select]".
_ELEMENT_NAMES = {
    "plain_text_input": "text input",
    "number_input": "number input",
    "email_text_input": "email input",
    "url_text_input": "URL input",
    "rich_text_input": "rich text input",
    "datepicker": "date",
    "timepicker": "time",
    "datetimepicker": "date and time",
    "file_input": "file upload",
    "static_select": "select",
    "external_select": "select",
    "multi_static_select": "multi-select",
    "multi_external_select": "multi-select",
}
_INITIAL_VALUE_KEYS = (
    "initial_value",
    "initial_date",
    "initial_time",
    "initial_user",
    "initial_conversation",
    "initial_channel",
)
_RICH_MENTIONS = {
    "user": ("@", "user_id"),
    "usergroup": ("@", "usergroup_id"),
    "channel": ("#", "channel_id"),
    "broadcast": ("@", "range"),
}
_MENUS = frozenset({"overflow", "static_select", "external_select"})
_STYLE_MARKS = {"primary": "*", "danger": "!"}
_STYLE_COLORS = {"primary": BOLD, "danger": RED}
_FIELD_GAP = "   "
_SUMMARY_LENGTH = 60

_ANSI = re.compile(r"\033\[[0-9;]*m")
_CODE = re.compile(r"```\n?(.*?)```|`([^`\n]+)`", re.DOTALL)
_TOKEN = re.compile(r"<([^<>\n]*)>")
_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")
_EMOJI_CODE = re.compile(r":([a-z0-9_+\-]+):")
_DATE_FIELD = re.compile(r"\{(\w+)\}")
_ENTITY = re.compile(r"&(amp|lt|gt);")
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">"}


def _span(marker: str) -> re.Pattern[str]:
    """Slack's `*bold*`-style span: the markers hug the text and do not touch a word on the outside."""
    m = re.escape(marker)
    return re.compile(rf"(?<![\w{m}]){m}(?=\S)([^\n{m}]*?\S){m}(?![\w{m}])")


_STRIKE, _ITALIC, _BOLD = _span("~"), _span("_"), _span("*")


@dataclass(frozen=True)
class Clickable:
    """One element the shell user can click by typing its number."""

    number: int
    label: str
    action: Json
    confirm: Json | None
    context: str


@dataclass(frozen=True)
class Screen:
    """A rendered message or modal and what can be clicked in it."""

    text: str
    clickables: list[Clickable]


def render_message(
    blocks: list[Json],
    *,
    fallback_text: str = "",
    width: int = 100,
    tz: tzinfo | None = None,
    color: bool = False,
) -> Screen:
    """Render a message's blocks, or its fallback text when it has no blocks."""
    renderer = _Renderer(width, tz, color)
    if not blocks:
        return Screen(_join([renderer.wrap(renderer.mrkdwn(fallback_text))]), [])
    return Screen(_join(renderer.blocks(blocks)), renderer.clickables)


def render_view(view: Json, *, width: int = 100, tz: tzinfo | None = None, color: bool = False) -> Screen:
    """Render a modal (or Home tab) view: title, blocks, and the submit and close labels of a modal."""
    renderer = _Renderer(width, tz, color)
    paragraphs = []
    title = renderer.text(view.get("title"))
    if title:
        paragraphs.append(renderer.heading(title))
        renderer.context = _summary(title)
    paragraphs += renderer.blocks(view.get("blocks", []))
    if view.get("type", "modal") == "modal":
        paragraphs.append([_view_buttons(renderer, view)])
    return Screen(_join(paragraphs), renderer.clickables)


def _view_buttons(renderer: _Renderer, view: Json) -> str:
    buttons = []
    if view.get("submit"):
        buttons.append(f"[Submit: {renderer.text(view['submit'])}]")
    buttons.append(f"[Close: {renderer.text(view.get('close')) or 'Cancel'}]")
    return " ".join(buttons)


def render_mrkdwn(text: str, *, tz: tzinfo | None = None, color: bool = False) -> str:
    """Slack mrkdwn to terminal text: links, mentions and dates spelled out, markers removed, emoji shown."""
    kept: list[str] = []

    def keep(rendered: str) -> str:
        kept.append(rendered)
        return f"\ue000{len(kept) - 1}\ue001"

    text = _CODE.sub(lambda m: keep(m.group(1) if m.group(1) is not None else m.group(2)), text)
    text = _TOKEN.sub(lambda m: keep(_emoji(_token(m.group(1), tz))), text)
    text = _emoji(text)
    text = _STRIKE.sub(r"\1", text)
    text = _ITALIC.sub(r"\1", text)
    text = _BOLD.sub(lambda m: _bold(m.group(1), color), text)
    text = _PLACEHOLDER.sub(lambda m: kept[int(m.group(1))], text)
    return _ENTITY.sub(lambda m: _ENTITIES[m.group(1)], text)


def _token(body: str, tz: tzinfo | None) -> str:
    """One `<…>` token: a link, a mention, a special mention or a date."""
    if body.startswith("!date^"):
        return _slack_date(body, tz)
    target, _, label = body.partition("|")
    if target.startswith(("@", "#")):
        return target[0] + (label.removeprefix(target[0]) or target[1:])
    if target.startswith("!subteam^"):
        return label or "@" + target.removeprefix("!subteam^")
    if target.startswith("!"):
        return "@" + target[1:]
    shown = target.removeprefix("mailto:")
    return shown if label in ("", shown, target) else f"{label} ({shown})"


def _slack_date(body: str, tz: tzinfo | None) -> str:
    """`!date^<timestamp>^<format>[^<link>]|<fallback>`; the fallback when the format cannot be honoured."""
    spec, _, fallback = body.partition("|")
    parts = spec.split("^")
    if len(parts) < 3:
        return fallback
    try:
        moment = datetime.fromtimestamp(int(parts[1]), tz)
    except (ValueError, OverflowError, OSError):
        return fallback
    formatted = _format_date(moment, parts[2])
    return fallback if formatted is None else formatted


def _format_date(moment: datetime, template: str) -> str | None:
    """Fill Slack date tokens such as `{date_short} at {time}`; None if the template has an unknown token."""
    if any(name not in _DATE_TOKENS for name in _DATE_FIELD.findall(template)):
        return None
    return _DATE_FIELD.sub(lambda m: _DATE_TOKENS[m.group(1)](moment), template)


def _emoji(text: str) -> str:
    return _EMOJI_CODE.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), text)


def _bold(text: str, color: bool) -> str:
    return f"{BOLD}{text}{RESET}" if color else text


def _visible_width(text: str) -> int:
    """Terminal columns taken by text: no ANSI codes, wide characters and emoji count two."""
    width = previous = 0
    for char in _ANSI.sub("", text):
        if char == "\ufe0f":  # emoji presentation makes a narrow symbol such as ⚠ wide
            width += 1 if previous == 1 else 0
            previous = 2
        elif unicodedata.combining(char) or char in "\u200d\ufe0e":
            continue
        else:
            previous = 2 if unicodedata.east_asian_width(char) in "WF" else 1
            width += previous
    return width


def _wrap(line: str, width: int, hanging: str | None = None) -> list[str]:
    """Wrap one line at spaces; long words are not broken.

    Continuation lines start with `hanging`, by default the line's own indentation.
    """
    if _visible_width(line) <= width:
        return [line.rstrip()]
    body = line.lstrip(" ")
    indent = line[: len(line) - len(body)]
    lines: list[str] = []
    current = indent
    for word in body.split(" "):
        if not current.strip():
            current += word
        elif _visible_width(f"{current} {word}") <= width:
            current += f" {word}"
        else:
            lines.append(current.rstrip())
            current = (indent if hanging is None else hanging) + word
    return [*lines, current.rstrip()]


def _flow(items: list[str], width: int) -> list[str]:
    """Lay out items such as `[1 Open]` on lines of at most width columns, never splitting an item."""
    lines: list[str] = []
    for item in items:
        if lines and _visible_width(f"{lines[-1]} {item}") <= width:
            lines[-1] += f" {item}"
        else:
            lines.append(item)
    return lines


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _visible_width(text))


def _summary(text: str) -> str:
    """The first line of a text, without ANSI codes and shortened, to say what a clickable belongs to."""
    line = next((line.strip() for line in _ANSI.sub("", text).splitlines() if line.strip()), "")
    return line if len(line) <= _SUMMARY_LENGTH else line[: _SUMMARY_LENGTH - 1].rstrip() + "…"


def _join(paragraphs: list[list[str]]) -> str:
    """Paragraphs separated by one blank line."""
    return "\n\n".join("\n".join(lines) for lines in paragraphs if lines)


def _options(element: Json) -> list[Json]:
    if "options" in element:
        return list(element["options"])
    return [option for group in element.get("option_groups", []) for option in group.get("options", [])]


def _selected_values(element: Json) -> set[str]:
    selected = [element.get("initial_option"), *element.get("initial_options", [])]
    return {option.get("value", "") for option in selected if option}


class _Renderer:
    """Renders blocks into paragraphs of lines, numbering clickables as it meets them."""

    def __init__(self, width: int, tz: tzinfo | None, color: bool) -> None:
        self.width = width
        self.tz = tz
        self.color = color
        self.clickables: list[Clickable] = []
        self.context = ""  # summary of the last block with text, for the clickables that follow
        self.action_ts = f"{time.time():.6f}"
        self.renderers: dict[str, Callable[[Json, str], list[str]]] = {
            "header": self.header,
            "section": self.section,
            "divider": lambda _block, _id: ["─" * self.width],
            "context": self.context_block,
            "actions": self.actions,
            "image": self.image,
            "rich_text": self.rich_text,
            "input": self.input,
        }

    # Text

    def mrkdwn(self, text: str) -> str:
        return render_mrkdwn(text, tz=self.tz, color=self.color)

    def text(self, obj: Json | None) -> str:
        """A text object: mrkdwn rendered; plain_text as-is but for emoji shortcodes, as Slack shows it."""
        if not obj:
            return ""
        if obj.get("type") == "mrkdwn":
            return self.mrkdwn(obj.get("text", ""))
        text = obj.get("text", "")
        return _emoji(text) if obj.get("emoji", True) else text

    def wrap(
        self, text: str, width: int | None = None, indent: str = "", hanging: str | None = None
    ) -> list[str]:
        """Wrap each line of text; the first starts with `indent`, the others and continuations with `hanging`."""
        rest = indent if hanging is None else hanging
        lines = []
        for number, line in enumerate(text.split("\n")):
            lines += _wrap((rest if number else indent) + line, width or self.width, hanging)
        return lines

    def heading(self, text: str) -> list[str]:
        lines = self.wrap(text)
        rule = "═" * min(self.width, max(_visible_width(line) for line in lines))
        return [*(_bold(line, self.color) for line in lines), rule]

    # Blocks

    def blocks(self, blocks: list[Json]) -> list[list[str]]:
        return [self.block(block, index) for index, block in enumerate(blocks)]

    def block(self, block: Json, index: int) -> list[str]:
        kind = block.get("type", "unknown")
        render = self.renderers.get(kind)
        if render is None:
            return [f"[{kind}]"]
        return render(block, block.get("block_id") or f"b{index}")

    def header(self, block: Json, _block_id: str) -> list[str]:
        text = self.text(block.get("text"))
        self.context = _summary(text)
        return self.heading(text)

    def section(self, block: Json, block_id: str) -> list[str]:
        text = self.text(block.get("text"))
        fields = [self.text(field) for field in block.get("fields", [])]
        self.context = _summary(text or "\n".join(fields))
        lines = (self.wrap(text) if text else []) + self.columns(fields)
        if "accessory" not in block:
            return lines
        items = self.element(block["accessory"], block_id)
        beside = f"{lines[0]}  {' '.join(items)}" if lines else ""
        if lines and _visible_width(beside) <= self.width:
            return [beside, *lines[1:]]
        return lines + _flow(items, self.width)

    def columns(self, fields: list[str]) -> list[str]:
        """Fields two by two in aligned columns; a blank line between rows when fields span several lines."""
        column = (self.width - len(_FIELD_GAP)) // 2
        spaced = any("\n" in field for field in fields)
        lines: list[str] = []
        for row, (left_field, right_field) in enumerate(zip_longest(fields[::2], fields[1::2], fillvalue="")):
            if spaced and row:
                lines.append("")
            pairs = zip_longest(self.wrap(left_field, column), self.wrap(right_field, column), fillvalue="")
            lines += [f"{_pad(left, column)}{_FIELD_GAP}{right}".rstrip() for left, right in pairs]
        return lines

    def context_block(self, block: Json, _block_id: str) -> list[str]:
        parts = [
            f"[{element.get('alt_text', '')}]" if element.get("type") == "image" else self.text(element)
            for element in block.get("elements", [])
        ]
        text = " · ".join(part for part in parts if part)
        self.context = _summary(text)
        return self.wrap(text)

    def actions(self, block: Json, block_id: str) -> list[str]:
        items = [item for element in block.get("elements", []) for item in self.element(element, block_id)]
        return _flow(items, self.width)

    def image(self, block: Json, _block_id: str) -> list[str]:
        title = self.text(block.get("title"))
        return [*(self.wrap(title) if title else []), f"[image: {block.get('alt_text', '')}]"]

    def input(self, block: Json, _block_id: str) -> list[str]:
        label = self.text(block.get("label")) + (" (optional)" if block.get("optional") else "")
        lines = self.wrap(f"{label}: {self.describe(block.get('element', {}))}")
        hint = self.text(block.get("hint"))
        return lines + (self.wrap(hint, indent="  ") if hint else [])

    # Elements

    def element(self, element: Json, block_id: str) -> list[str]:
        """An element shown inline, as one or more items; buttons and menu options become clickables."""
        kind = element.get("type", "")
        if kind == "button":
            return [self.button(element, block_id)]
        if kind in _MENUS and _options(element):
            return self.menu(element, block_id)
        if kind == "image":
            return [f"[image: {element.get('alt_text', '')}]"]
        return [self.describe(element)]

    def button(self, element: Json, block_id: str) -> str:
        text = element.get("text") or {}
        label = self.text(text)
        action: Json = {"type": "button", "action_id": element.get("action_id", ""), "block_id": block_id}
        if "value" in element:
            action["value"] = element["value"]
        action["text"] = {
            "type": "plain_text",
            "text": text.get("text", ""),
            "emoji": text.get("emoji", True),
        }
        if "style" in element:
            action["style"] = element["style"]
        number = self.click(label, action, element)
        link = f" ({element['url']})" if element.get("url") else ""
        return self.styled(f"{number} {label}{link}", element.get("style"))

    def menu(self, element: Json, block_id: str) -> list[str]:
        """An overflow menu or select: its title, then each option as its own clickable."""
        kind = element["type"]
        title = self.text(element.get("placeholder")) or ("More" if kind == "overflow" else "Select")
        selected = _selected_values(element)
        items = [f"{title}:"]
        for option in _options(element):
            text = self.text(option.get("text"))
            action: Json = {
                "type": kind,
                "action_id": element.get("action_id", ""),
                "block_id": block_id,
                "selected_option": option,
            }
            if "placeholder" in element:
                action["placeholder"] = element["placeholder"]
            number = self.click(f"{title}: {text}", action, element)
            items.append(
                self.styled(f"{number} {text}", "primary" if option.get("value") in selected else None)
            )
        return items

    def click(self, label: str, action: Json, element: Json) -> int:
        number = len(self.clickables) + 1
        action["action_ts"] = self.action_ts
        self.clickables.append(Clickable(number, label, action, element.get("confirm"), self.context))
        return number

    def styled(self, body: str, style: str | None) -> str:
        """`[body]`, marked as primary (`*`, bold) or danger (`!`, red)."""
        if style not in _STYLE_MARKS:
            return f"[{body}]"
        if self.color:
            return f"{_STYLE_COLORS[style]}[{body}]{RESET}"
        return f"[{body}{_STYLE_MARKS[style]}]"

    def describe(self, element: Json) -> str:
        """A non-clickable element: its kind and its initial value, options or placeholder."""
        kind = element.get("type", "element")
        options = _options(element)
        selected = _selected_values(element)
        if kind in ("checkboxes", "radio_buttons"):
            marks = ("[x]", "[ ]") if kind == "checkboxes" else ("(•)", "( )")
            return "  ".join(
                f"{marks[0] if option.get('value') in selected else marks[1]} {self.text(option.get('text'))}"
                for option in options
            )
        name = _ELEMENT_NAMES.get(kind, kind.replace("_", " "))
        if kind == "plain_text_input" and element.get("multiline"):
            name = "multi-line text input"
        if options:
            labels = (self.text(o.get("text")) + ("*" if o.get("value") in selected else "") for o in options)
            return f"[{name}: {' / '.join(labels)}]"
        value = self.initial_value(element)
        if value:
            return f"[{name}: {value}]"
        placeholder = self.text(element.get("placeholder"))
        return f"[{name} ({placeholder})]" if placeholder else f"[{name}]"

    def initial_value(self, element: Json) -> str:
        if "initial_date_time" in element:
            moment = datetime.fromtimestamp(int(element["initial_date_time"]), self.tz)
            return f"{moment:%Y-%m-%d %H:%M}"
        if element.get("initial_option"):
            return self.text(element["initial_option"].get("text"))
        for key in ("initial_users", "initial_conversations", "initial_channels"):
            if element.get(key):
                return ", ".join(element[key])
        return next((str(element[key]) for key in _INITIAL_VALUE_KEYS if element.get(key) is not None), "")

    # Rich text

    def rich_text(self, block: Json, _block_id: str) -> list[str]:
        lines = [line for element in block.get("elements", []) for line in self.rich_element(element)]
        self.context = _summary("\n".join(lines))
        return lines

    def rich_element(self, element: Json) -> list[str]:
        kind = element.get("type")
        if kind == "rich_text_list":
            return self.rich_list(element)
        text = "".join(self.rich_inline(inline) for inline in element.get("elements", []))
        if kind == "rich_text_preformatted":
            return text.split("\n")
        return self.wrap(text, indent="> ", hanging="> ") if kind == "rich_text_quote" else self.wrap(text)

    def rich_list(self, element: Json) -> list[str]:
        indent = "  " * element.get("indent", 0)
        ordered = element.get("style") == "ordered"
        lines = []
        for number, item in enumerate(element.get("elements", []), start=element.get("offset", 0) + 1):
            bullet = f"{number}. " if ordered else "• "
            text = "".join(self.rich_inline(inline) for inline in item.get("elements", []))
            lines += self.wrap(text, indent=indent + bullet, hanging=indent + " " * len(bullet))
        return lines

    def rich_inline(self, inline: Json) -> str:
        """One inline element of a rich_text section: text, link, emoji, mention, date or color."""
        kind = inline.get("type")
        if kind == "text":
            text = inline.get("text", "")
            return _bold(text, self.color) if inline.get("style", {}).get("bold") else text
        if kind == "link":
            url, label = inline.get("url", ""), inline.get("text", "")
            return f"{label} ({url})" if label and label != url else url
        if kind == "emoji":
            if "unicode" in inline:
                return "".join(chr(int(code, 16)) for code in inline["unicode"].split("-"))
            return EMOJI.get(inline.get("name", ""), f":{inline.get('name', '')}:")
        if kind == "date":
            moment = datetime.fromtimestamp(int(inline.get("timestamp", 0)), self.tz)
            return _format_date(moment, inline.get("format", "")) or inline.get("fallback", "")
        if kind in _RICH_MENTIONS:
            sign, key = _RICH_MENTIONS[kind]
            return sign + inline.get(key, "")
        return str(inline.get("value", inline.get("text", "")))
