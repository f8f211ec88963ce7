"""Listening seconds integrate the open sessions per mount exactly, between pipeline steps."""

from __future__ import annotations

from audimeter.telemetry import ListeningClock


def test_listening_seconds_are_the_integral_of_the_open_sessions() -> None:
    now = [0.0]
    counts = {("main", "/a"): 2}
    clock = ListeningClock(lambda: counts, clock=lambda: now[0])
    now[0] = 10.0
    assert clock.seconds() == {("main", "/a"): 20.0}
    counts = {("main", "/a"): 1, ("main", "/b"): 3}
    clock.advance()  # two listened 10 s; from now on one on /a and three on /b
    now[0] = 15.0
    assert clock.seconds() == {("main", "/a"): 25.0, ("main", "/b"): 15.0}
    counts = {("main", "/b"): 3}  # /a removed: its seconds stay
    clock.advance()
    now[0] = 16.0
    assert clock.seconds() == {("main", "/a"): 25.0, ("main", "/b"): 18.0}
    assert clock.current == {("main", "/b"): 3}
