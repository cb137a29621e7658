"""What the parts the bot depends on can fail with, for every front end to word for people."""

from __future__ import annotations


class DatabaseUnavailable(Exception):
    """The database could not be reached or refused the connection."""
