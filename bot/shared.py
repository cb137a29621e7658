"""`Shared`: the base of the long-lived parts every request uses (services holding the database or Stripe)."""

from __future__ import annotations

from typing import Any


class Shared:
    """One instance serves every request: a copy would be a second database pool or Stripe client, so copying
    gives the same object. (Bolt deep-copies a request's context for its lazy listeners.)"""

    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return self
