"""The slot rule, for live sessions and imported ones alike.

Listeners who look identical (one address, one player) are told apart by a slot: each session
takes the smallest slot that no other open session of the same (address, player) holds. So
look-alikes listening at the same time get slots 0, 1, … and become different visitors, while a
listener who comes back after the previous session ended gets the same slot, hence the same
visitor, again.
"""

from __future__ import annotations

from collections.abc import Collection


class SlotPool:
    """The slots of one (address, player) identity that open sessions hold.

    The slots in use are the bits of one int: nearly every identity holds slot 0 alone, and the
    daemon keeps a pool per open session's identity, so a set and a heap per pool would cost some
    300 bytes a session where this costs none (small ints are shared). With many look-alikes (with
    [privacy] ip = "none" and user_agent = "drop" every listener is one) an operation copies an
    int of one bit per slot: some microseconds for 100,000 slots.
    """

    __slots__ = ("used",)

    def __init__(self) -> None:
        self.used = 0
        """Bit n is set while slot n is in use."""

    def smallest(self, taken: Collection[int] = ()) -> int:
        used = self.used
        if taken:  # rare (sessions replayed from a log line): a plain search
            slot = 0
            while used >> slot & 1 or slot in taken:
                slot += 1
            return slot
        # The lowest clear bit: adding 1 carries through the low run of set bits into it.
        return (~used & (used + 1)).bit_length() - 1

    def take(self, slot: int) -> None:
        self.used |= 1 << slot

    def acquire(self) -> int:
        """Take the smallest free slot."""
        slot = self.smallest()
        self.take(slot)
        return slot

    def release(self, slot: int) -> None:
        self.used &= ~(1 << slot)
