"""Disputes in words: the lines of an order record's Disputes section, and the alerts posted when a dispute
opens and when it closes."""

from __future__ import annotations

from blocks import ids
from blocks.elements import Block, actions, button, section
from blocks.message import Message
from blocks.text import DATE_AND_TIME, Mrkdwn, date_token, escape, md, money, one_line
from bot.viewmodels import CardState, DisputeLine, DisputeNews, record_value

DISPUTE_STATUS_LABELS = {
    "warning_needs_response": "Inquiry, needs a response",
    "warning_under_review": "Inquiry, under review",
    "warning_closed": "Inquiry closed",
    "needs_response": "Needs a response",
    "under_review": "Under review",
    "won": "Won",
    "lost": "Lost",
    "prevented": "Prevented",
}
# Stripe takes evidence while a dispute (or an inquiry) awaits a response.
_AWAITING_EVIDENCE = frozenset({"warning_needs_response", "needs_response"})
DASHBOARD = "https://dashboard.stripe.com/disputes/"
_ID_LIMIT = 255


def status_words(status: str) -> Mrkdwn:
    return escape(DISPUTE_STATUS_LABELS.get(status, status.replace("_", " ").capitalize()), 40)


def reason_words(reason: str | None) -> Mrkdwn:
    """Stripe's reason code in words: `product_not_received` is "Product not received"."""
    if not reason:
        return md("No reason given")
    return escape(one_line(reason.replace("_", " ")).capitalize(), 64)


def dashboard_link(line: DisputeLine) -> Mrkdwn:
    """Where evidence is submitted: the dispute in the Stripe Dashboard, a plain URL (mrkdwn is sent verbatim)."""
    return md("{}{}", DASHBOARD, escape(line.stripe_dispute_id, _ID_LIMIT))


def dispute_text(line: DisputeLine) -> Mrkdwn:
    """One dispute on an order record: status, amount, reason, when it opened and what it means now."""
    text = md(
        "*{}* · {} · {} · opened {}",
        status_words(line.status),
        money(line.amount),
        reason_words(line.reason),
        date_token(line.opened_at),
    )
    if line.status in _AWAITING_EVIDENCE and line.due_by is not None:
        text += md(
            "\nRespond by {}: evidence is submitted in the Stripe Dashboard, {}",
            date_token(line.due_by, DATE_AND_TIME),
            dashboard_link(line),
        )
    elif line.lost.amount:
        text += md("\n{} taken back by the bank, counted against lifetime value", money(line.lost))
    elif line.status == "lost":
        text += md("\nThe funds were reinstated since: not counted against lifetime value")
    else:
        text += md("\nIn the Stripe Dashboard: {}", dashboard_link(line))
    return text


def dispute_alert(news: DisputeNews) -> Message:
    """A dispute opened or closed, for the alerts channel: who, which order, how much, why, and what to do (or
    what it came to), with a button to open the order's record."""
    line = news.dispute
    name = escape(one_line(news.customer_name), 120)
    number = escape(news.order_number, 32)
    if news.step == "opened":
        text = md(
            ":warning: *Dispute opened* · *{}*\n{} of order #{} is disputed: {}.",
            name,
            money(line.amount),
            number,
            reason_words(line.reason),
        )
        if line.due_by is not None:
            text += md(" Respond by {}.", date_token(line.due_by, DATE_AND_TIME))
        text += md(" Evidence is submitted in the Stripe Dashboard: {}", dashboard_link(line))
        summary = md("Dispute opened: {}, {} (order #{})", name, money(line.amount), number)
    else:
        outcome, emoji, said = _closed_words(line)
        text = md(
            "{} *{}* · *{}*\nThe dispute of {} of order #{} ({}), opened {}, {}",
            emoji,
            outcome,
            name,
            money(line.amount),
            number,
            reason_words(line.reason),
            date_token(line.opened_at),
            said,
        )
        summary = md("{}: {}, {} (order #{})", outcome, name, money(line.amount), number)
    back = CardState(news.customer_id)
    blocks: list[Block] = [
        section(text),
        actions(
            f"dispute_{news.dispute_id}",
            [
                button(
                    "Open record",
                    ids.per_item(ids.OPEN_ORDER, news.order_id),
                    record_value(news.order_id, back),
                )
            ],
        ),
    ]
    return Message.of(summary, blocks)


def _closed_words(line: DisputeLine) -> tuple[Mrkdwn, Mrkdwn, Mrkdwn]:
    """(outcome, emoji, what it came to) of a closed dispute."""
    if line.status == "won":
        return md("Dispute won"), md(":white_check_mark:"), md("was won: the money stays with you.")
    if line.status == "lost":
        return (
            md("Dispute lost"),
            md(":x:"),
            md("was lost: {} goes back to the customer and off lifetime value.", money(line.amount)),
        )
    if line.status == "prevented":
        return (
            md("Dispute prevented"),
            md(":white_check_mark:"),
            md("was resolved before it became a dispute."),
        )
    return md("Inquiry closed"), md(":white_check_mark:"), md("closed without becoming a dispute.")
