"""The slot rule, for live sessions and imported ones alike.

Listeners who look identical (one address, one player) are told apart by a slot: each session
takes the smallest slot that no other open session of the same (address, player) holds. So
look-alikes listening at the same time get slots 0, 1, … and become different visitors, while a
listener who comes back after the previous session ended gets the same slot, hence the same
visitor, again.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection


class SlotPool:
    """The slots of one (address, player) identity: those in use, and the smallest free one in
    O(log n), however many look-alikes listen (with [privacy] ip = "none" and user_agent =
    "drop" every listener is one)."""

    __slots__ = ("free", "top", "used")

    def __init__(self) -> None:
        self.used: set[int] = set()
        self.free: list[int] = []
        """A heap of free slots below `top`; entries taken since are dropped when met."""
        self.top = 0
        """Every slot from here on is free."""

    def smallest(self, taken: Collection[int] = ()) -> int:
        if taken:  # rare (sessions replayed from a log line): a plain search
            slot = 0
            while slot in self.used or slot in taken:
                slot += 1
            return slot
        free = self.free
        while free and free[0] in self.used:
            heapq.heappop(free)
        return free[0] if free else self.top

    def take(self, slot: int) -> None:
        self.used.add(slot)
        if slot >= self.top:
            for gap in range(self.top, slot):
                heapq.heappush(self.free, gap)
            self.top = slot + 1

    def acquire(self) -> int:
        """Take the smallest free slot."""
        slot = self.smallest()
        self.take(slot)
        return slot

    def release(self, slot: int) -> None:
        self.used.discard(slot)
        heapq.heappush(self.free, slot)
