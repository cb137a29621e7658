"""Every action_id the renderers emit, in one place, with the patterns the listeners register.

Buttons that show a customer card (open, Active / All, paging, back) all carry the card state they lead to in
their value, so one listener serves them. Ids that repeat per item get a `-<id>` suffix: Slack wants them unique.
"""

from __future__ import annotations

import re

OPEN_CUSTOMER = "open_customer"
SUBSCRIPTIONS_ACTIVE = "subscriptions_active"
SUBSCRIPTIONS_ALL = "subscriptions_all"
SUBSCRIPTIONS_PREVIOUS = "subscriptions_previous"
SUBSCRIPTIONS_NEXT = "subscriptions_next"
PLANS_ACTIVE = "plans_active"
PLANS_ALL = "plans_all"
PLANS_PREVIOUS = "plans_previous"
PLANS_NEXT = "plans_next"
ORDERS_NEWER = "orders_newer"
ORDERS_OLDER = "orders_older"
BACK_TO_CUSTOMER = "back_to_customer"

OPEN_SUBSCRIPTION = "open_subscription"
OPEN_PAYMENT_PLAN = "open_payment_plan"
OPEN_ORDER = "open_order"
SHARE_CARD = "share_card"
CLOSE = "close_message"

REFUND_ORDER = "refund_order"
REFUND_PAYMENT = "refund_payment"
REFUND_WHOLE_ORDER = "refund_whole_order"
CANCEL_RECURRING = "cancel_recurring"
PAUSE_PAYMENTS = "pause_payments"
RESUME_PAYMENTS = "resume_payments"
UNDO_CANCEL = "undo_cancel"
UNDO_PAUSE = "undo_pause"
CHANGE_NEXT_BILL_DATE = "change_next_bill_date"
CHANGE_PLAN_STATUS = "change_plan_status"
NEW_ORDER = "new_order"
CHANGE_EMAIL = "change_email"
SEND_RECEIPT = "send_receipt"  # per order: send_receipt-12

ADD_NOTE = "add_note"  # per record: add_note-order12, add_note-recurring3, add_note-customer7
ON_HISTORY = "history"  # Add note on a customer's History view: add_note-history7, shown there once saved
# A record's History: its pager on every record, and on the customer card the button that opens it. Their
# values name the record, the page and the card state to go back to (bot.viewmodels.history_value).
SHOW_HISTORY = "show_history"
HISTORY_NEWER = "history_newer"
HISTORY_OLDER = "history_older"

_CARD_NAVIGATION = (
    SUBSCRIPTIONS_ACTIVE,
    SUBSCRIPTIONS_ALL,
    SUBSCRIPTIONS_PREVIOUS,
    SUBSCRIPTIONS_NEXT,
    PLANS_ACTIVE,
    PLANS_ALL,
    PLANS_PREVIOUS,
    PLANS_NEXT,
    ORDERS_NEWER,
    ORDERS_OLDER,
    BACK_TO_CUSTOMER,
)


def per_item(action_id: str, item_id: int | str) -> str:
    return f"{action_id}-{item_id}"


def pattern(*action_ids: str) -> re.Pattern[str]:
    """Matches these action_ids, with or without a per-item suffix."""
    names = "|".join(re.escape(a) for a in action_ids)
    return re.compile(rf"^(?:{names})(?:-[\w.]+)?$")


SHOW_CARD = pattern(OPEN_CUSTOMER, *_CARD_NAVIGATION)
SHOW_RECURRING = pattern(OPEN_SUBSCRIPTION, OPEN_PAYMENT_PLAN)
SHOW_ORDER = pattern(OPEN_ORDER)
SHOW_HISTORY_PAGE = pattern(SHOW_HISTORY, HISTORY_NEWER, HISTORY_OLDER)
