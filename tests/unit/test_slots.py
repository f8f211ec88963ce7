"""The slot rule's pool: the smallest slot no open session holds."""

from __future__ import annotations

import random
from collections.abc import Collection

import pytest

from audimeter.slots import SlotPool


def smallest_free(used: Collection[int], taken: Collection[int] = ()) -> int:
    slot = 0
    while slot in used or slot in taken:
        slot += 1
    return slot


def test_a_new_pool_is_empty_and_hands_out_zero_first() -> None:
    pool = SlotPool()
    assert not pool.used
    assert pool.smallest() == 0
    assert pool.acquire() == 0
    assert pool.used
    assert pool.acquire() == 1
    pool.release(0)
    assert pool.used
    assert pool.smallest() == 0
    pool.release(1)
    assert not pool.used


def test_taking_a_high_slot_leaves_the_gap_below_it_free() -> None:
    pool = SlotPool()
    pool.take(5)
    assert [pool.acquire() for _ in range(6)] == [0, 1, 2, 3, 4, 6]
    assert pool.smallest({7, 8, 0}) == 9


def test_releasing_a_slot_not_held_changes_nothing() -> None:
    pool = SlotPool()
    pool.take(1)
    pool.release(3)
    assert pool.smallest() == 0
    pool.take(0)
    assert pool.smallest() == 2


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_a_plain_search_over_random_operations(seed: int) -> None:
    rng = random.Random(seed)
    pool, used = SlotPool(), set[int]()
    for _ in range(3000):
        action = rng.random()
        if action < 0.5:
            slot = pool.acquire()
            assert slot == smallest_free(used)
            used.add(slot)
        elif action < 0.55:
            slot = rng.randrange(200)
            pool.take(slot)
            used.add(slot)
        elif used and action < 0.95:
            slot = rng.choice(sorted(used))
            pool.release(slot)
            used.discard(slot)
        else:
            taken = {rng.randrange(100) for _ in range(rng.randrange(4))}
            assert pool.smallest(taken) == smallest_free(used, taken)
        assert bool(pool.used) == bool(used)
        assert pool.smallest() == smallest_free(used)
