"""Read ahead in a background thread, so that reading overlaps the caller's work.

pysam and htslib release the GIL while they decompress and parse, so the next record (or
segment) is read while the current one is tokenized and written.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")
_POLL_SECONDS = 0.1


def prefetched(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Yield `items` in order, produced by a background thread up to `depth` items ahead.

    An exception raised while producing is raised here, in the consuming thread. When the
    consumer stops early (an error, or closing this generator), the producer stops as well and
    `items` is closed in its own thread.
    """
    slots: queue.Queue[tuple[bool, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    producer = threading.Thread(target=_produce, args=(items, slots, stop), daemon=True)
    producer.start()
    try:
        while True:
            more, value = slots.get()
            if not more:
                if value is not None:
                    raise value
                return
            yield value
    finally:
        stop.set()
        producer.join()


def _produce(items: Iterator[T], slots: queue.Queue, stop: threading.Event) -> None:
    try:
        for item in items:
            if not _put(slots, stop, (True, item)):
                return
        _put(slots, stop, (False, None))
    except BaseException as error:  # handed to the consumer, which raises it
        _put(slots, stop, (False, error))
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()


def _put(slots: queue.Queue, stop: threading.Event, entry: tuple[bool, object]) -> bool:
    while not stop.is_set():
        try:
            slots.put(entry, timeout=_POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False
