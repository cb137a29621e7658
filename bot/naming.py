"""What to call a customer."""

from __future__ import annotations


def shown_name(name: str, email: str) -> str:
    """Their name (spaces tidied), or their email when Stripe had no name for them."""
    return " ".join(name.split()) or email or "Unnamed customer"
