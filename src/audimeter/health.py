"""What "healthy" means, for the live /healthz and for `audimeter status`.

Pure: the caller gathers the facts (the main loop's last round, each source's last good poll,
each output's oldest undelivered event) and `assess` names what is wrong, one short line each.
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
    """Unix time watching began (the run's start); counts when `last_ok` is None."""
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
    """The problems, in this order: the main loop, the state file, the sources, the outputs."""
    problems: list[str] = []
    if loop_beat is None:
        problems.append("main loop: not running")
    elif now - loop_beat > LOOP_STALL:
        problems.append(f"main loop: no round for {now - loop_beat:.0f} s")
    if state_error is not None:
        problems.append(f"state file: {state_error}")
    for source in sources:
        silent = now - (source.last_ok if source.last_ok is not None else source.since)
        if silent > source.grace:
            line = (
                f"source {source.name}: no good poll for {silent:.0f} s"
                f" (outage grace {source.grace:.0f} s)"
            )
            problems.append(line + (f": {source.problem}" if source.problem else ""))
    for output in outputs:
        if output.oldest_pending is not None and now - output.oldest_pending > delivery_lag:
            problems.append(
                f"output {output.name}: oldest pending event is"
                f" {now - output.oldest_pending:.0f} s old (limit {delivery_lag:.0f} s)"
            )
    return Verdict(tuple(problems))
