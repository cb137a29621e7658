"""How asking for an action ends, in the words the person who asked is told: done, being confirmed with Stripe,
or one of the refusals (not allowed, not possible as asked, Stripe said no)."""

from __future__ import annotations

from dataclasses import dataclass

Record = tuple[str, int]  # a record to show: ("order" | "recurring" | "customer", id)
Problems = dict[str, str]  # a form's field → what is wrong with it, in a sentence; empty when all is well


class NotAllowed(Exception):
    """The person may not do this; nothing happened."""

    def __init__(self, admins: frozenset[str]) -> None:
        super().__init__("not a payment admin")
        self.admins = admins


class Invalid(Exception):
    """What was asked cannot be done as asked; nothing changed. `problems` names the form fields at fault; a
    problem that belongs to no field (the record changed meanwhile, say) has `message` only."""

    def __init__(self, message: str, problems: Problems | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or {}

    @classmethod
    def of(cls, problems: Problems) -> Invalid:
        return cls(" ".join(problems.values()), problems)


class Failed(Exception):
    """Stripe did not do it, for certain; our records are unchanged. The message says what happened and what
    to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Done:
    summary: str  # one clause in plain words, what happened: "refunded $12.50 of order #100021 (Jane Doe)"
    customer_id: int
    record: Record  # the record to show afterwards
    already: bool = False  # an identical earlier request had already done it
    # A part of the request that was not done (Stripe refused it, or it waits for a part still being confirmed):
    # what, why, and what asking again does, in a sentence. Asking for the very same request again does only that.
    left: str | None = None


@dataclass(frozen=True)
class Pending:
    """Stripe may have acted and we cannot tell yet: the request stays open until Stripe's answer is known (a
    retry, a webhook or the settle job finds it out), and whatever it set aside stays set aside meanwhile."""

    summary: str  # what was asked: "refund $12.50 of order #100021 (Jane Doe)"
    customer_id: int
    record: Record
    why: str  # a sentence: what happened, and what the person should (not) do
    stripe_id: str | None = None  # Stripe's object, when Stripe said yes but our records could not be updated
    left: str | None = None  # as Done.left
