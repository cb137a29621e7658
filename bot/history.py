"""A record's History: what the bot did to it (the audit trail, with the notes written with each action), the
notes people added, and what happened in Stripe as our records know it (payments paid and failed, refunds made
outside Slack, disputes, a subscription's start and end), newest first, a page at a time.

Each kind of record is one Core statement, built once here: a UNION ALL of those sources within the record's
scope, ordered by time, with LIMIT/OFFSET. It reads one row more than a page to know whether an older page
exists, so no count is needed. The scopes:
- an order: its own entries, its payments and the refunds and disputes of them, and the New order that charged it;
- a subscription or plan: its own entries, its payments and the refunds and disputes of them, its start and end;
- a customer: all of the above for every order and subscription or plan of theirs, and their own entries.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import BigInteger, Text, bindparam, cast, literal_column, null, select, union_all

from bot.models import AuditEvent, Dispute, Note, Order, Payment, Recurring, Refund
from bot.money import Money
from bot.viewmodels import HistoryEntry, HistoryPage

# Outcomes of the audit trail that History shows: what was done, what Stripe refused, what awaits Stripe's answer
# and what was let go. Refusals (not a payment admin), invalid input and repeats of a request changed nothing.
SHOWN_OUTCOMES = ("succeeded", "failed", "unknown", "let_go")
NEW_ORDER = (
    "new_order"  # bot.actions.new_orders.ACTION: its entry names the customer, its Stripe id the payment
)

_audit = AuditEvent.__table__
_notes = Note.__table__
_orders = Order.__table__
_payments = Payment.__table__
_refunds = Refund.__table__
_disputes = Dispute.__table__
_recurring = Recurring.__table__

_TARGET = bindparam("target_id")
_NO_TEXT = cast(null(), Text)
_NO_NUMBER = cast(null(), BigInteger)


def _kind(name: str):
    return literal_column(f"'{name}'").label("kind")


def _audit_parts(*scopes) -> list:
    """The audit entries of each scope, a branch each: every one is a range of ix_audit_events_target (an OR of
    them would read the whole audit trail), and they never overlap (each names its own target type)."""
    return [_audit_part(scope) for scope in scopes]


def _audit_part(where):
    return select(
        _audit.c.at.label("at"),
        _kind("action"),
        _audit.c.actor.label("actor"),
        cast(_audit.c.details, Text).label("said"),  # JSON: the summary, and the note when one was written
        _audit.c.outcome.label("outcome"),
        _audit.c.action.label("action"),
        _NO_TEXT.label("note"),
        _audit.c.amount.label("amount"),
        _audit.c.currency.label("currency"),
        _NO_TEXT.label("detail"),
        _NO_TEXT.label("number"),
        _audit.c.id.label("seq"),
    ).where(_audit.c.outcome.in_(SHOWN_OUTCOMES), where)


def _notes_parts(*scopes) -> list:
    return [_notes_part(scope) for scope in scopes]


def _notes_part(where):
    return select(
        _notes.c.created_at,
        _kind("note"),
        _notes.c.author,
        _notes.c.text,
        _NO_TEXT,
        _NO_TEXT,
        _NO_TEXT,
        _NO_NUMBER,
        _NO_TEXT,
        _NO_TEXT,
        _NO_TEXT,
        _notes.c.id,
    ).where(where)


def _payment_parts(where) -> list:
    """A payment paid, and a payment declined: two events of one payment when it failed first."""
    joined = _payments.join(_orders, _orders.c.id == _payments.c.order_id)
    parts = []
    for kind, at, detail in (
        ("paid", _payments.c.paid_at, _NO_TEXT),
        ("failed", _payments.c.failed_at, _payments.c.failure_reason),
    ):
        parts.append(
            select(
                at,
                _kind(kind),
                _NO_TEXT,
                _payments.c.kind,
                _NO_TEXT,
                _NO_TEXT,
                _NO_TEXT,
                _payments.c.amount,
                _payments.c.currency,
                detail,
                _orders.c.number,
                _payments.c.id,
            )
            .select_from(joined)
            .where(at.is_not(None), where)
        )
    return parts


# A refund asked from Slack is in the audit trail already (who, why, the note): its row names who asked for it
# (`requested_by`, also when Stripe's webhook recorded it first, from the refund's metadata). The others, made in
# the Stripe Dashboard, are told from the refund itself. (Matching on the audit entry's Stripe id instead would
# read the whole audit trail for each refund: it has no index on that.)


def _refunds_part(where):
    return (
        select(
            _refunds.c.created_at,
            _kind("refund"),
            _refunds.c.requested_by,
            _NO_TEXT,
            _NO_TEXT,
            _NO_TEXT,
            _refunds.c.note,
            _refunds.c.amount,
            _refunds.c.currency,
            _refunds.c.reason,
            _orders.c.number,
            _refunds.c.id,
        )
        .select_from(_refunds.join(_orders, _orders.c.id == _refunds.c.order_id))
        .where(where, _refunds.c.requested_by.is_(None))
    )


def _disputes_part(where):
    """A dispute, at when it was opened, with how it stands now (its status) and why (Stripe's reason)."""
    return (
        select(
            _disputes.c.created_at,
            _kind("dispute"),
            _NO_TEXT,
            _disputes.c.reason,
            _disputes.c.status,
            _NO_TEXT,
            _NO_TEXT,
            _disputes.c.amount,
            _disputes.c.currency,
            _NO_TEXT,
            _orders.c.number,
            _disputes.c.id,
        )
        .select_from(_disputes.join(_orders, _orders.c.id == _disputes.c.order_id))
        .where(where)
    )


def _status_parts(where) -> list:
    """A subscription's or plan's start, and its end when it ended."""
    return [
        select(
            at,
            _kind(kind),
            _NO_TEXT,
            _recurring.c.product,
            _NO_TEXT,
            _NO_TEXT,
            _NO_TEXT,
            _NO_NUMBER,
            _NO_TEXT,
            _recurring.c.kind,
            _NO_TEXT,
            _recurring.c.id,
        ).where(at.is_not(None), where)
        for kind, at in (("started", _recurring.c.started_at), ("canceled", _recurring.c.canceled_at))
    ]


def _of(table, kind: str, ids) -> Any:
    """Rows of an audit entry or a note about a record of `kind` among `ids` (a subquery, or the bound id)."""
    if ids is _TARGET:
        return (table.c.target_type == kind) & (table.c.target_id == _TARGET)
    return (table.c.target_type == kind) & table.c.target_id.in_(ids)


def _page(*parts):
    history = union_all(*parts).subquery("history")
    return (
        select(history)
        # seq is an id of its own table: two events of different kinds can share one, and their kind settles it,
        # so every page read cuts the same order at the same place.
        .order_by(history.c.at.desc(), history.c.seq.desc(), history.c.kind)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )


def _order_history():
    payments = select(_payments.c.id).where(_payments.c.order_id == _TARGET)
    intents = select(_payments.c.stripe_payment_intent_id).where(
        _payments.c.order_id == _TARGET, _payments.c.stripe_payment_intent_id.is_not(None)
    )
    customer = select(_orders.c.customer_id).where(_orders.c.id == _TARGET).scalar_subquery()
    return _page(
        *_audit_parts(
            _of(_audit, "order", _TARGET),
            _of(_audit, "payment", payments),
            # The New order that charged it: an entry about its customer, naming its payment's Stripe id.
            (_audit.c.target_type == "customer")
            & (_audit.c.target_id == customer)
            & (_audit.c.action == NEW_ORDER)
            & _audit.c.stripe_id.in_(intents),
        ),
        _notes_part(_of(_notes, "order", _TARGET)),
        *_payment_parts(_payments.c.order_id == _TARGET),
        _refunds_part(_refunds.c.order_id == _TARGET),
        _disputes_part(_disputes.c.order_id == _TARGET),
    )


def _recurring_history():
    payments = select(_payments.c.id).where(_payments.c.recurring_id == _TARGET)
    return _page(
        *_audit_parts(_of(_audit, "recurring", _TARGET), _of(_audit, "payment", payments)),
        _notes_part(_of(_notes, "recurring", _TARGET)),
        *_payment_parts(_payments.c.recurring_id == _TARGET),
        _refunds_part(_refunds.c.payment_id.in_(payments)),
        _disputes_part(_disputes.c.payment_id.in_(payments)),
        *_status_parts(_recurring.c.id == _TARGET),
    )


def _customer_history():
    orders = select(_orders.c.id).where(_orders.c.customer_id == _TARGET)
    recurring = select(_recurring.c.id).where(_recurring.c.customer_id == _TARGET)
    payments = select(_payments.c.id).where(_payments.c.order_id.in_(orders))
    return _page(
        *_audit_parts(
            _of(_audit, "customer", _TARGET),
            _of(_audit, "order", orders),
            _of(_audit, "recurring", recurring),
            _of(_audit, "payment", payments),
        ),
        *_notes_parts(
            _of(_notes, "customer", _TARGET),
            _of(_notes, "order", orders),
            _of(_notes, "recurring", recurring),
        ),
        *_payment_parts(_orders.c.customer_id == _TARGET),
        _refunds_part(_orders.c.customer_id == _TARGET),
        _disputes_part(_orders.c.customer_id == _TARGET),
        *_status_parts(_recurring.c.customer_id == _TARGET),
    )


_HISTORY = {"order": _order_history(), "recurring": _recurring_history(), "customer": _customer_history()}


def history_page(reader, target: tuple[str, int], page: int, page_size: int) -> HistoryPage:
    """A page of the History of `target` ("order" | "recurring" | "customer", id), newest first, in one statement.
    A page past the end shows the last one there is (the history may have been shorter when the button was drawn,
    it never shrinks, but a hand-made value may ask for any page)."""
    kind, record_id = target
    page = max(0, page)
    rows = reader.execute(
        _HISTORY[kind], {"target_id": record_id, "limit": page_size + 1, "offset": page * page_size}
    ).all()
    if not rows and page:
        return history_page(reader, target, 0, page_size)
    return HistoryPage(
        target=target,
        entries=[_entry(row) for row in rows[:page_size]],
        page=page,
        has_older=len(rows) > page_size,
    )


def _entry(row) -> HistoryEntry:
    amount = Money(int(row.amount), row.currency) if row.amount is not None and row.currency else None
    said, note = row.said or "", row.note
    if row.kind == "action":
        details = _details(said)
        said, note = str(details.get("summary") or ""), details.get("note") or None
    return HistoryEntry(
        at=row.at,
        kind=row.kind,
        actor=row.actor,
        said=said,
        outcome=row.outcome,
        action=row.action,
        note=str(note) if note else None,
        amount=amount,
        detail=row.detail if row.kind != "paid" else None,
        number=row.number,
    )


def _details(text: str) -> dict[str, Any]:
    try:
        details = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return details if isinstance(details, dict) else {}
