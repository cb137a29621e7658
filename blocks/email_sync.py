"""The email-sync report the scheduler posts: who differs where, with a "Push our email" button per customer.

The message carries what it needs to redraw itself after a push: each button's value holds its customer's row
of the report, and the header's block_id holds how many customers were compared, how many more differ than are
listed, the CRMs connected, how many customers they were asked about and how many wait for the next check. So a
click never has to run the whole check again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from blocks import ids
from blocks.elements import Block, action_notice, button, confirm, context, header, section
from blocks.limits import MESSAGE_BLOCK_TEXT, block_texts
from blocks.message import Message
from blocks.text import Mrkdwn, code, escape, json_value, md, mention, one_line, plural
from bot.viewmodels import BadValue, Difference, Notice

PUSH_EMAIL = "push_email"
MOST_LISTED = 20  # customers listed in one message; the rest are counted ("and N more")
# Block text the customer sections may use, leaving room under Slack's limit for the header, notices and
# problems. Long names or addresses list fewer than MOST_LISTED customers rather than overflow.
SECTIONS_TEXT = MESSAGE_BLOCK_TEXT - 2_500
BUTTON_VALUE = 2000  # Slack's limit on a button's value

# block_id prefix of the header; the rest is JSON [checked, hidden, crms, asked, waiting]
_HEADER = "email_sync:"
PROBLEMS = "email_sync_problems"  # block_id of the problems line, kept as is when the report is redrawn
_SHOWN_EMAIL = 120
_SHOWN_NAME = 120


def email_sync_report(
    differences: Sequence[Difference],
    checked: int,
    *,
    crms: Sequence[str] = (),
    problems: Sequence[str] = (),
    hidden: int = 0,
    pushed: Notice | None = None,
    asked: int = 0,
    waiting: int = 0,
) -> Message:
    """The report: a header, one section per customer who differs (at most MOST_LISTED, then "and N more"),
    or an all-clear. `hidden` counts customers who differ but are not in `differences` (a redraw after a
    push); `pushed` goes on top (who pushed what). `asked` counts the customers the CRMs were asked about,
    `waiting` those left for the next check."""
    listed: list[Block] = []
    size = 0
    for difference in differences[:MOST_LISTED]:
        block = _customer(difference)
        block_size = sum(len(t) for t in block_texts(block))
        if size + block_size > SECTIONS_TEXT:
            break
        listed.append(block)
        size += block_size
    more = hidden + len(differences) - len(listed)
    total = len(differences) + hidden
    header_id = _HEADER + json.dumps([checked, more, list(crms), asked, waiting], separators=(",", ":"))

    blocks: list[Block] = []
    if pushed:
        blocks.append(action_notice(pushed))
    if total:
        title = md("Email check: {} {}", plural(total, "customer"), "differs" if total == 1 else "differ")
        text = md("{} from our records", title)
        blocks.append(header(title, block_id=header_id[:255]))
        blocks.append(
            context(
                _compared(checked, crms, asked, waiting)
                + md(" Our records are the source of truth: *Push our email* puts ours everywhere else.")
            )
        )
        blocks.extend(listed)
        if more:
            blocks.append(
                context(
                    md(
                        "…and {} not listed here; the next check lists them once these are fixed.",
                        plural(more, "more customer"),
                    )
                )
            )
    else:
        title = md("Email check: all clear") if not problems else md("Email check: no differences found")
        if problems and not checked:
            title, line = (
                md("Email check: nothing compared"),
                md("No customer's email could be compared with Stripe."),
            )
        elif problems:
            line = md("No differences among the {} compared with Stripe.", plural(checked, "customer"))
        elif checked == 1:
            line = md(":white_check_mark: The 1 customer's email matches Stripe.")
        else:
            line = md(":white_check_mark: All {}' emails match Stripe.", plural(checked, "customer"))
        text = md("{}. {}", title, line)
        blocks.append(header(title, block_id=header_id[:255]))
        blocks.append(section(line))
        blocks.append(context(_crms_line(crms, asked, waiting)))
    if problems:
        lines = md("\n").join(md(":warning: {}", escape(one_line(p), 600)) for p in problems[:5])
        blocks.append(_with_id(context(lines), PROBLEMS))
    return Message.of(text, blocks)


def report_after_push(blocks: list[dict[str, Any]], customer_id: int, pushed: Notice) -> Message:
    """The report in `blocks` (as Slack sent it back) redrawn without this customer, with a notice on top."""
    checked, hidden, crms, asked, waiting = 0, 0, [], 0, 0
    for block in blocks:
        block_id = block.get("block_id", "")
        if block.get("type") == "header" and block_id.startswith(_HEADER):
            # reports posted before the CRM counts were added carry the first three only
            checked, hidden, crms, asked, waiting = [*json.loads(block_id[len(_HEADER) :]), 0, 0][:5]
    remaining = [d for d in listed_differences(blocks) if d.customer_id != customer_id]
    problems_block = next((b for b in blocks if b.get("block_id") == PROBLEMS), None)
    message = email_sync_report(
        remaining, checked, crms=crms, hidden=hidden, pushed=pushed, asked=asked, waiting=waiting
    )
    if problems_block is not None and not any(b.get("block_id") == PROBLEMS for b in message.blocks):
        return Message(message.text, [*message.blocks, problems_block])
    return message


def pushed_message(pushed: Notice) -> Message:
    """What the person who pushed is told, privately."""
    text = md("{} {}.", mention(pushed.actor), escape(one_line(pushed.said), 2000))
    return Message.of(text, [action_notice(pushed)])


def listed_differences(blocks: list[dict[str, Any]]) -> list[Difference]:
    """The customers a report lists, read back from its buttons."""
    return [
        parse_push_value(element["value"])
        for element in _buttons(blocks)
        if element.get("action_id", "").startswith(PUSH_EMAIL + "-")
    ]


def push_value(difference: Difference) -> str:
    """A button's value: the customer's row of the report (what a push needs, and what a redraw shows)."""
    crms = [[crm, (email or "")[:254] or None] for crm, email in difference.crm_differences]
    row = {
        "c": difference.customer_id,
        "n": difference.name[:100],
        "e": difference.our_email[:254],
        "s": None if difference.stripe_email is None else difference.stripe_email[:254],
        "k": crms,
    }
    value = json_value(row)
    while len(value) > BUTTON_VALUE and row["k"]:
        row["k"] = row["k"][:-1]
        value = json_value(row)
    return value


def parse_push_value(value: str) -> Difference:
    """A report's row back from its button; BadValue when the value is not one a report wrote."""
    try:
        row = json.loads(value)
        crms = [(str(crm), None if email is None else str(email)) for crm, email in row.get("k") or []]
        customer_id, stripe_email = row["c"], row.get("s")
        if not isinstance(customer_id, int) or isinstance(customer_id, bool):
            raise TypeError("customer id")
        return Difference(
            customer_id,
            str(row.get("n") or ""),
            str(row.get("e") or ""),
            None if stripe_email is None else str(stripe_email),
            crms,
        )
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as error:
        raise BadValue(f"not an email check row: {str(value)[:80]!r}") from error


def _customer(difference: Difference) -> Block:
    lines = [
        md("*{}*", escape(one_line(difference.name), _SHOWN_NAME)),
        md("Ours: {}", code(difference.our_email, _SHOWN_EMAIL)),
    ]
    if difference.stripe_email is not None:
        shown = code(difference.stripe_email, _SHOWN_EMAIL) if difference.stripe_email else md("_no email_")
        lines.append(md("Stripe: {}", shown))
    for crm, email in difference.crm_differences:
        shown = code(email, _SHOWN_EMAIL) if email else md("_no contact under either address_")
        lines.append(md("{}: {}", escape(crm, 40), shown))
    elsewhere = (["Stripe"] if difference.stripe_email is not None else []) + [
        crm for crm, email in difference.crm_differences if email
    ]
    push = button("Push our email", ids.per_item(PUSH_EMAIL, difference.customer_id), push_value(difference))
    where = ", ".join(elsewhere) if elsewhere else "the other systems"
    push["confirm"] = confirm(
        "Push our email?",
        f"Put {one_line(difference.our_email)} for {one_line(difference.name)} into {where}?",
        "Push",
        "Cancel",
    )
    return _with_id(
        section(md("\n").join(lines), accessory=push), f"email_sync_customer-{difference.customer_id}"
    )


def _compared(checked: int, crms: Sequence[str], asked: int, waiting: int) -> Mrkdwn:
    line = md("Compared {} with Stripe", plural(checked, "customer"))
    if crms:
        line += md(", and {}", _asked(crms, asked, waiting))
    return line + md(".") + _waiting(waiting, asked)


def _crms_line(crms: Sequence[str], asked: int, waiting: int) -> Mrkdwn:
    if not crms:
        return md("No CRMs are connected, so only Stripe was compared.")
    return md(
        "CRMs connected: {}; {}.", escape(", ".join(crms), 200), _asked(crms, asked, waiting)
    ) + _waiting(waiting, asked)


def _asked(crms: Sequence[str], asked: int, waiting: int) -> Mrkdwn:
    names = escape(", ".join(crms), 200)
    if asked:
        return md("asked {} about the {} whose email changed", names, plural(asked, "customer"))
    if waiting:
        return md("{} could not be asked this time", names)
    return md("no email changed that {} had to be asked about", names)


def _waiting(waiting: int, asked: int) -> Mrkdwn:
    if not waiting:
        return md("")
    return md(
        " The next check asks about {} whose email changed.",
        plural(waiting, "more customer" if asked else "customer"),
    )


def _with_id(block: Block, block_id: str) -> Block:
    block["block_id"] = block_id
    return block


def _buttons(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if node.get("type") == "button":
            yield node
        for value in node.values():
            yield from _buttons(value)
    elif isinstance(node, list):
        for item in node:
            yield from _buttons(item)
