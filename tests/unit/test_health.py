"""`health.assess`: each rule, their order, and the edges of each limit."""

from __future__ import annotations

import pytest

from audimeter.health import LOOP_STALL, OutputHealth, SourceHealth, assess

NOW = 1_000_000.0


def source(
    last_ok: float | None, problem: str | None = None, since: float = NOW - 10
) -> SourceHealth:
    return SourceHealth("main", 120, since, last_ok, problem)


CASES = {
    "all well": (NOW - 1, [source(NOW - 5)], [OutputHealth("matomo", NOW - 60)], None, []),
    "no loop": (None, [], [], None, ["main loop: not running"]),
    "loop at the stall limit": (NOW - LOOP_STALL, [], [], None, []),
    "loop stalled": (NOW - 31, [], [], None, ["main loop: no round for 31 s"]),
    "state file": (NOW, [], [], "disk full", ["state file: disk full"]),
    "source at its grace": (NOW, [source(NOW - 120)], [], None, []),
    "source past its grace": (
        NOW,
        [source(NOW - 121, "source main (http://x/admin/stats): connection refused")],
        [],
        None,
        [
            "source main: no good poll for 121 s (outage grace 120 s): "
            "source main (http://x/admin/stats): connection refused"
        ],
    ),
    "never answered, counted from the start": (
        NOW,
        [source(None, since=NOW - 130)],
        [],
        None,
        ["source main: no good poll for 130 s (outage grace 120 s)"],
    ),
    "never answered, within grace of the start": (
        NOW,
        [source(None, since=NOW - 30)],
        [],
        None,
        [],
    ),
    "output at the lag": (NOW, [], [OutputHealth("jsonl", NOW - 300)], None, []),
    "output past the lag": (
        NOW,
        [],
        [OutputHealth("matomo", NOW - 301), OutputHealth("jsonl", None)],
        None,
        ["output matomo: oldest pending event is 301 s old (limit 300 s)"],
    ),
    "in order": (
        None,
        [source(None, since=NOW - 500)],
        [OutputHealth("matomo", NOW - 900)],
        "read-only file system",
        [
            "main loop: not running",
            "state file: read-only file system",
            "source main: no good poll for 500 s (outage grace 120 s)",
            "output matomo: oldest pending event is 900 s old (limit 300 s)",
        ],
    ),
}


@pytest.mark.parametrize(
    ("beat", "sources", "outputs", "state_error", "problems"), CASES.values(), ids=CASES.keys()
)
def test_assess(
    beat: float | None,
    sources: list[SourceHealth],
    outputs: list[OutputHealth],
    state_error: str | None,
    problems: list[str],
) -> None:
    verdict = assess(
        NOW,
        loop_beat=beat,
        sources=sources,
        outputs=outputs,
        delivery_lag=300,
        state_error=state_error,
    )
    assert list(verdict.problems) == problems
    assert verdict.healthy is (not problems)
