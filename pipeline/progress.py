"""Progress reporting: a bar on a terminal, plain periodic log lines elsewhere (cluster logs)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
log = logging.getLogger("pipeline")


class Progress:
    """Counts work done. `update(n)` advances; `close()` logs the final line.

    On a terminal this is a tqdm bar; otherwise a log line at most every `interval` seconds.
    """

    def __init__(self, total: float | None, desc: str, unit: str = "it", interval: float = 30.0):
        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.count = 0.0
        self._start = self._last = time.monotonic()
        self._bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True) if _tty() else None

    def update(self, n: float = 1, **postfix: object) -> None:
        self.count += n
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)
            return
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            log.info("%s", self._line(now, postfix))

    def close(self, **postfix: object) -> None:
        if self._bar is not None:
            self._bar.close()
        log.info("%s (done)", self._line(time.monotonic(), postfix))

    def _line(self, now: float, postfix: dict[str, object]) -> str:
        elapsed = max(now - self._start, 1e-9)
        done = f"{self.count:,.0f}" + (f"/{self.total:,.0f}" if self.total else "")
        extra = "".join(f" {k}={v}" for k, v in postfix.items())
        return f"{self.desc}: {done} {self.unit} ({self.count / elapsed:,.1f} {self.unit}/s){extra}"

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track(items: Iterable[T], total: float | None, desc: str, unit: str = "it") -> Iterator[T]:
    """Iterate `items`, reporting progress one unit per item."""
    with Progress(total, desc, unit) as progress:
        for item in items:
            yield item
            progress.update(1)


def _tty() -> bool:
    return sys.stderr.isatty()
