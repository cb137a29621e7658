"""The subscription, payment plan and order records, opened from a customer card."""

from __future__ import annotations

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    DividerBlock,
    HeaderBlock,
    SectionBlock,
)
from slack_sdk.models.blocks.basic_components import ConfirmObject

from blocks import ids
from blocks.customer import (
    NAME_IN_TEXT,
    ORDER_STATUS_LABELS,
    PRODUCT_IN_TEXT,
    SOURCE_LABELS,
    card_label,
    interval_text,
    status_text,
)
from blocks.elements import action_notice, awaiting_stripe, button, context, field, section
from blocks.limits import HEADER_TEXT, SECTION_TEXT
from blocks.message import Message
from blocks.text import date_token, escape, money, money_list, one_line, plural, truncate
from bot.money import Money
from bot.viewmodels import (
    CardState,
    Notice,
    OrderRecord,
    PaymentLine,
    RecurringRecord,
    record_value,
    with_seen,
)

PAYMENTS_SHOWN = 12
ORDER_LINES_SHOWN = 20
REFUNDS_SHOWN = 12
LINE_ITEM_IN_TEXT = 100

PAYMENT_STATUS_LABELS = {
    "paid": ":white_check_mark: Paid",
    "failed": ":x: Failed",
    "open": ":hourglass: Open",
    "void": "Void",
}
REFUND_REASONS = {
    "requested_by_customer": "requested by customer",
    "duplicate": "duplicate",
    "fraudulent": "fraudulent",
}


def recurring_record(record: RecurringRecord, *, notice: Notice | None = None) -> Message:
    item = record.summary
    is_plan = item.kind == "payment_plan"
    kind = "Payment plan" if is_plan else "Subscription"
    title = f"{kind}: {one_line(item.product)}"
    fields = [
        field("Status", status_text(item)),
        field("Price", f"{money(item.price)} {interval_text(item.interval, item.interval_count)}"),
    ]
    if is_plan and item.installments_total:
        fields.append(
            field("Instalments", f"{item.installments_paid or 0} of {item.installments_total} paid")
        )
    fields.append(field("Started", date_token(item.started_at)))
    if item.next_bill_at and item.status not in ("canceled", "completed"):
        fields.append(
            field("Next instalment" if is_plan else "Next bill date", date_token(item.next_bill_at))
        )
    if record.current_period_end and item.status not in ("canceled", "completed"):
        fields.append(field("Current period ends", date_token(record.current_period_end)))
    fields.append(field("Paid so far", money_list(record.paid_total)))
    fields.append(
        field(
            "Missed payments",
            f":warning: {item.missed_payments}" if item.missed_payments else ":white_check_mark: None",
        )
    )
    subtitle = f"{escape(one_line(record.customer_name), NAME_IN_TEXT)}"
    if record.stripe_subscription_id:
        subtitle += f" · Stripe `{escape(record.stripe_subscription_id, 64)}`"
    blocks: list[Block] = [action_notice(notice)] if notice else []
    blocks += [HeaderBlock(text=truncate(title, HEADER_TEXT)), context(subtitle)]
    if record.awaiting:
        blocks.append(awaiting_stripe(record.awaiting))
    blocks += [SectionBlock(fields=fields), DividerBlock(), section(_payments_text(record))]
    actions = _recurring_actions(record)
    if actions:
        blocks.append(ActionsBlock(block_id="recurring_actions", elements=actions))
    elif item.status not in ENDED and not record.stripe_subscription_id:
        blocks.append(context("Not linked to a Stripe subscription, so it can't be changed from here."))
    blocks.append(
        ActionsBlock(block_id="record_actions", elements=[_back(record.back, record.customer_name)])
    )
    return Message.of(f"{kind}: {truncate(one_line(item.product), PRODUCT_IN_TEXT)}", blocks)


ENDED = ("canceled", "completed")


def _recurring_actions(record: RecurringRecord) -> list[ButtonElement]:
    """What can be done to a live subscription or plan that Stripe knows."""
    item = record.summary
    if item.status in ENDED or not record.stripe_subscription_id:
        return []
    is_plan = item.kind == "payment_plan"
    value = record_value(item.id, record.back)
    buttons = []
    if record.refundable_payments:
        label = "Refund an instalment" if is_plan else "Refund a payment"
        buttons.append(button(label, ids.per_item(ids.REFUND_PAYMENT, item.id), value))
    if item.payments_paused:
        # It acts at once, on the plan as this record showed it.
        resume = button(
            "Resume payments",
            ids.per_item(ids.RESUME_PAYMENTS, item.id),
            with_seen(value, record.fingerprint),
        )
        resume.confirm = ConfirmObject(
            title="Resume payments?",
            text=f"Stripe will bill {truncate(one_line(record.customer_name), 100)} again from the next bill date.",
            confirm="Resume payments",
            deny="Not now",
        )
        buttons.append(resume)
    else:
        buttons.append(button("Pause payments", ids.per_item(ids.PAUSE_PAYMENTS, item.id), value))
    buttons.append(button("Change next bill date", ids.per_item(ids.CHANGE_NEXT_BILL_DATE, item.id), value))
    if is_plan:
        buttons.append(button("Change status", ids.per_item(ids.CHANGE_PLAN_STATUS, item.id), value))
    cancel = button(
        "Cancel plan" if is_plan else "Cancel subscription",
        ids.per_item(ids.CANCEL_RECURRING, item.id),
        value,
    )
    cancel.style = "danger"
    buttons.append(cancel)
    return buttons


def _payments_text(record: RecurringRecord) -> str:
    heading = f"*Payments* · {record.payment_count:,}"
    if record.payment_count > len(record.payments):
        heading += f", latest {len(record.payments)}"
    if not record.payments:
        return heading + "\nNo payments yet."
    lines = [heading] + [_payment_line(p) for p in record.payments]
    return _fit(lines)


def _payment_line(payment: PaymentLine) -> str:
    status = PAYMENT_STATUS_LABELS.get(payment.status, payment.status)
    line = f"{date_token(payment.due_at)} · {money(payment.amount)} · {status}"
    if payment.failure_reason and payment.status == "failed":
        line += f": {escape(one_line(payment.failure_reason), 120)}"
    if payment.order_number:
        line += f" · order #{escape(payment.order_number, 32)}"
    return line


def order_record(record: OrderRecord, *, notice: Notice | None = None) -> Message:
    status = ORDER_STATUS_LABELS.get(record.status, record.status)
    fields = [
        field("Status", status),
        field("Placed", date_token(record.created_at, "{date_short} at {time}")),
        field("Total", money(record.total)),
        field("Refunded", money(record.refunded)),
        field("Still refundable", money(record.refundable)),
        *(
            [field("Refund awaiting Stripe", money(Money(record.refund_pending, record.total.currency)))]
            if record.refund_pending
            else []
        ),
        field("Source", SOURCE_LABELS.get(record.source, record.source)),
        field("Card used", f":credit_card: {card_label(record.card)}" if record.card else "Not recorded"),
    ]
    blocks: list[Block] = [action_notice(notice)] if notice else []
    blocks += [
        HeaderBlock(text=truncate(f"Order #{record.number}", HEADER_TEXT)),
        context(escape(one_line(record.customer_name), NAME_IN_TEXT)),
        *([awaiting_stripe(record.awaiting)] if record.awaiting else []),
        SectionBlock(fields=fields),
        section(_items_text(record)),
        section(
            "*Billing address*\n"
            + (
                "\n".join(escape(one_line(line), 200) for line in record.billing.lines())
                if record.billing
                else "None given"
            )
        ),
        section(_refunds_text(record)),
    ]
    actions: list[ButtonElement] = []
    if record.stripe_payment and record.refundable.amount > 0:
        actions.append(
            button("Refund", ids.per_item(ids.REFUND_ORDER, record.id), record_value(record.id, record.back))
        )
    if record.recurring:
        link = record.recurring
        is_plan = link.kind == "payment_plan"
        blocks.append(
            section(
                f"Paid towards the {'payment plan' if is_plan else 'subscription'} "
                f"*{escape(one_line(link.product), PRODUCT_IN_TEXT)}*"
            )
        )
        actions.append(
            button(
                "Open payment plan" if is_plan else "Open subscription",
                ids.per_item(ids.OPEN_PAYMENT_PLAN if is_plan else ids.OPEN_SUBSCRIPTION, link.id),
                record_value(link.id, record.back),
            )
        )
    actions.append(_back(record.back, record.customer_name))
    blocks.append(DividerBlock())
    blocks.append(ActionsBlock(block_id="record_actions", elements=actions))
    return Message.of(f"Order #{truncate(record.number, 32)}", blocks)


def _items_text(record: OrderRecord) -> str:
    lines = ["*Items*"]
    for line in record.lines[:ORDER_LINES_SHOWN]:
        description = escape(one_line(line.description), LINE_ITEM_IN_TEXT)
        each = f" at {money(line.unit_amount)}" if line.quantity != 1 else ""
        lines.append(f"{line.quantity} × {description}{each} · {money(line.amount)}")
    if len(record.lines) > ORDER_LINES_SHOWN:
        lines.append(f"and {plural(len(record.lines) - ORDER_LINES_SHOWN, 'more item')}")
    if not record.lines:
        lines.append("No items recorded.")
    return _fit(lines)


def _refunds_text(record: OrderRecord) -> str:
    if not record.refunds:
        return "*Refunds*\nNone so far."
    lines = [f"*Refunds* · {len(record.refunds)}"]
    for refund in record.refunds[:REFUNDS_SHOWN]:
        line = f"{date_token(refund.created_at)} · {money(refund.amount)}"
        if refund.reason:
            line += f" · {REFUND_REASONS.get(refund.reason, escape(refund.reason, 40))}"
        if refund.note:
            line += f" · “{escape(one_line(refund.note), 120)}”"
        if refund.requested_by:
            line += f" · by <@{escape(refund.requested_by, 32)}>"
        lines.append(line)
    if len(record.refunds) > REFUNDS_SHOWN:
        lines.append(f"and {plural(len(record.refunds) - REFUNDS_SHOWN, 'earlier refund')}")
    return _fit(lines)


def _fit(lines: list[str]) -> str:
    """Join lines, dropping whole lines from the end so the text fits a section."""
    kept: list[str] = []
    size = 0
    for line in lines:
        if size + len(line) + 1 > SECTION_TEXT - 40:
            kept.append(f"and {len(lines) - len(kept)} more")
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(kept)


def _back(state: CardState, customer_name: str) -> ButtonElement:
    return button(f"Back to {one_line(customer_name)}", ids.BACK_TO_CUSTOMER, state.encode())
