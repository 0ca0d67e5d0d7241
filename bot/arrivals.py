"""ArrivalOrder: a thread's messages reach the core in the order they arrived.

Before its turn a message may await its platform (a thread's earlier messages,
people's names, opening a thread) for longer than a follow-up that needs
nothing; the follow-up waits for it to hand over, so turns are stored, and
answered, in arrival order. A message hands over the moment the core has stored
it (`Consultant.handle(on_queued=place.leave)`): from there the core keeps the
thread's order, and a message waiting here is not yet stored, so the wait must
stay short. Every adapter uses this one line.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)

# An earlier message still preparing after this long no longer holds up the ones behind it.
HANDOVER_SECONDS = 30.0


class Place:
    """One message's place in its thread's queue."""

    def __init__(self, order: ArrivalOrder, key: str, before: asyncio.Event | None) -> None:
        self._order = order
        self._key = key
        self._before = before
        self.handed_over = asyncio.Event()

    async def turn(self) -> None:
        """Wait until every earlier message of the thread has been handed to the core."""
        if self._before is None or self._before.is_set():
            return
        try:
            await asyncio.wait_for(self._before.wait(), self._order.handover_seconds)
        except TimeoutError:
            log.warning("an earlier message in %s is still not handed over", self._key)

    def leave(self) -> None:
        """Hand over (or give up): the next message in the thread may go. Idempotent."""
        self.handed_over.set()
        if self._order._last.get(self._key) is self.handed_over:
            del self._order._last[self._key]


class ArrivalOrder:
    """Places in line per thread key; call `arrive` before the message's first await."""

    def __init__(self, handover_seconds: float = HANDOVER_SECONDS) -> None:
        self.handover_seconds = handover_seconds
        self._last: dict[str, asyncio.Event] = {}

    def arrive(self, key: str) -> Place:
        """Take the next place in `key`'s line."""
        before = self._last.get(key)
        if before is not None:
            log.debug("a message in %s waits for the one before it", key)
        place = Place(self, key, before)
        self._last[key] = place.handed_over
        return place

    def __len__(self) -> int:
        return len(self._last)
