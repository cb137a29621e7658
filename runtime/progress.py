"""How far a long command has got (`import-stripe`, `seed`, a job run by hand): a tqdm bar when a person watches a
terminal, and otherwise, in a platform's log, a plain line every so often."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import IO

from tqdm import tqdm

logger = logging.getLogger("customer_bot.progress")
LOG_EVERY_SECONDS = 10.0


class Progress:
    """Counts of one step after another ("customers", then "subscriptions" …), each shown as it grows."""

    def __init__(
        self,
        total: int | None = None,
        *,
        stream: IO[str] | None = None,
        every: float = LOG_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.bars = self.stream.isatty()
        self.every = every
        self.clock = clock
        self.step: str | None = None
        self.done = 0
        self._bar: tqdm | None = None
        self._logged_at = clock()

    def __call__(self, step: str, done: int) -> None:
        if step != self.step:
            self._end_step()
            self.step, self.done, self._logged_at = step, 0, self.clock()
            if self.bars:
                self._bar = tqdm(total=self.total, desc=step, unit="", file=self.stream, leave=True)
        if self._bar is not None:
            self._bar.update(done - self.done)
        elif self.clock() - self._logged_at >= self.every:
            self._log(done)
            self._logged_at = self.clock()
        self.done = done

    def close(self) -> None:
        self._end_step()
        self.step = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _end_step(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.step is not None and self.done:
            self._log(self.done, "done")

    def _log(self, done: int, state: str = "so far") -> None:
        of = f" of {self.total:,}" if self.total else ""
        logger.info("%s: %s%s %s", self.step, f"{done:,}", of, state)
