"""Notes: the optional note every action form takes (kept with the action's audit entry), and Add note, a note
written on a record by anyone who can see it (it moves no money, so it needs no payment admin)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select

from bot.actions.outcomes import Done, Invalid, Problems
from bot.db import Database
from bot.models import Customer, Note, Order, Recurring
from bot.shared import Shared
from bot.viewmodels import NOTE_LENGTH

NOTE_FIELD = "note"  # the field a note's problem is told against, in every form
NOTED_KINDS = {"customer": Customer, "recurring": Recurring, "order": Order}


def clean_note(text: str | None) -> str | None:
    """A note as it is kept: trimmed; None when nothing was written."""
    return (text or "").strip() or None


def note_problems(note: str | None, *, required: bool = False) -> Problems:
    """Field → sentence: an action's note is optional; a note of its own (Add note) must say something."""
    note = clean_note(note)
    if note is None:
        return {NOTE_FIELD: "Write the note."} if required else {}
    if len(note) > NOTE_LENGTH:
        return {NOTE_FIELD: f"Keep the note to {NOTE_LENGTH} characters (it has {len(note):,})."}
    return {}


class Notes(Shared):
    """Writes the notes people add to records."""

    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.clock = clock

    def add(self, author: str, target: tuple[str, int], text: str | None) -> Done:
        """Write a note on a record; Invalid (nothing written) when it is empty or too long, or the record is gone."""
        problems = note_problems(text, required=True)
        if problems:
            raise Invalid.of(problems)
        kind, record_id = target
        model = NOTED_KINDS.get(kind)
        if model is None:
            raise Invalid(
                f"Notes are written on customers, subscriptions, plans and orders, not on {kind!r}."
            )
        note = clean_note(text)
        assert note is not None  # checked above
        with self.db.session() as session:
            customer_id = session.scalar(
                select(Customer.id if model is Customer else model.customer_id).where(model.id == record_id)
            )
            if customer_id is None:
                raise Invalid("That record no longer exists, so the note was not saved.")
            session.add(
                Note(target_type=kind, target_id=record_id, author=author, text=note, created_at=self.clock())
            )
        return Done("added a note", customer_id, target)
