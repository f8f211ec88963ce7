"""What "healthy" means, for `/healthz` and `audimeter status`: a pure verdict from timestamps.

The main loop must have run a round within `LOOP_STALL` seconds, the state file must be
writable, every source must have answered within its outage grace, and every output's oldest
undelivered event must be younger than `[health] delivery_lag`. No I/O here: callers gather
the times (from the running daemon or from the state file) and pass them in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

LOOP_STALL = 30.0
"""Seconds without a main-loop round after which the loop counts as stalled."""


@dataclass(frozen=True)
class SourceHealth:
    name: str
    grace: float
    """The source's outage_grace, seconds."""
    since: float
    """Unix time watching began (the run's start); counts when last_ok is None."""
    last_ok: float | None
    """Unix time of the last good poll, None if none since the start."""
    problem: str | None
    """One-line message of the last failure while failing, else None."""


@dataclass(frozen=True)
class OutputHealth:
    name: str
    """The output's cursor name ("matomo", "jsonl", ...)."""
    oldest_pending: float | None
    """Unix time (event time `at`) of the oldest undelivered event."""


@dataclass(frozen=True)
class Verdict:
    problems: tuple[str, ...]
    """One short line each, empty when healthy."""

    @property
    def healthy(self) -> bool:
        return not self.problems


def assess(
    now: float,
    *,
    loop_beat: float | None,
    sources: Sequence[SourceHealth],
    outputs: Sequence[OutputHealth],
    delivery_lag: float,
    state_error: str | None = None,
) -> Verdict:
    """The problems of a daemon at `now`, in the order: loop, state file, sources, outputs."""
    problems: list[str] = []
    if loop_beat is None:
        problems.append("main loop: not running")
    elif now - loop_beat > LOOP_STALL:
        problems.append(f"main loop: no round for {now - loop_beat:.0f} s")
    if state_error:
        problems.append(f"state file: {state_error}")
    for source in sources:
        silent = now - (source.last_ok if source.last_ok is not None else source.since)
        if silent > source.grace:
            line = (
                f"source {source.name}: no good poll for {silent:.0f} s "
                f"(outage grace {source.grace:.0f} s)"
            )
            problems.append(f"{line}: {source.problem}" if source.problem else line)
    for output in outputs:
        if output.oldest_pending is None:
            continue
        age = now - output.oldest_pending
        if age > delivery_lag:
            problems.append(
                f"output {output.name}: oldest pending event is {age:.0f} s old "
                f"(limit {delivery_lag:.0f} s)"
            )
    return Verdict(tuple(problems))
