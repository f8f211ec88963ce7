"""The health verdict: each rule alone, then all at once in their order."""

from __future__ import annotations

import pytest

from audimeter.health import LOOP_STALL, OutputHealth, SourceHealth, Verdict, assess

NOW = 1_700_000_000.0


def source(last_ok: float | None, problem: str | None = None, since: float = NOW - 1000):
    return SourceHealth("main", grace=120, since=since, last_ok=last_ok, problem=problem)


def verdict(**kwargs: object) -> Verdict:
    args: dict[str, object] = {
        "loop_beat": NOW - 1,
        "sources": [],
        "outputs": [],
        "delivery_lag": 300,
        **kwargs,
    }
    return assess(NOW, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "problems"),
    [
        ({}, ()),
        ({"loop_beat": None}, ("main loop: not running",)),
        ({"loop_beat": NOW - LOOP_STALL}, ()),
        ({"loop_beat": NOW - 45}, ("main loop: no round for 45 s",)),
        (
            {"state_error": "/var/lib/a.db is not writable"},
            ("state file: /var/lib/a.db is not writable",),
        ),
        ({"sources": [source(NOW - 120)]}, ()),
        (
            {"sources": [source(NOW - 121)]},
            ("source main: no good poll for 121 s (outage grace 120 s)",),
        ),
        (
            {"sources": [source(NOW - 200, "source main (http://x/admin/stats): unreachable")]},
            (
                "source main: no good poll for 200 s (outage grace 120 s): "
                "source main (http://x/admin/stats): unreachable",
            ),
        ),
        # No good poll yet: the silence counts from the start of the run.
        ({"sources": [source(None, since=NOW - 60)]}, ()),
        (
            {"sources": [source(None, since=NOW - 130)]},
            ("source main: no good poll for 130 s (outage grace 120 s)",),
        ),
        ({"outputs": [OutputHealth("matomo", None)]}, ()),
        ({"outputs": [OutputHealth("matomo", NOW - 300)]}, ()),
        (
            {"outputs": [OutputHealth("matomo", NOW - 301), OutputHealth("jsonl", NOW - 5)]},
            ("output matomo: oldest pending event is 301 s old (limit 300 s)",),
        ),
        (
            {
                "loop_beat": NOW - 31,
                "state_error": "gone",
                "sources": [source(NOW - 500)],
                "outputs": [OutputHealth("jsonl", NOW - 400)],
            },
            (
                "main loop: no round for 31 s",
                "state file: gone",
                "source main: no good poll for 500 s (outage grace 120 s)",
                "output jsonl: oldest pending event is 400 s old (limit 300 s)",
            ),
        ),
    ],
)
def test_assess(kwargs: dict[str, object], problems: tuple[str, ...]) -> None:
    result = verdict(**kwargs)
    assert result.problems == problems
    assert result.healthy is (not problems)
