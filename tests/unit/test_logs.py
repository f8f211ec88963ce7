"""`ProblemLog`: a recurring failure is logged once per change, its end once."""

from __future__ import annotations

import logging

import pytest

from audimeter.logs import ProblemLog


def test_once_per_change_and_once_at_recovery(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="audimeter.test")
    problems = ProblemLog(logging.getLogger("audimeter.test"))
    for problem in ["timeout", "timeout", "timeout", "HTTP 500", "HTTP 500"]:
        problems.failed("/live", problem, "mount %s: %s", "/live", problem)
    problems.failed("/talk", "timeout", "mount %s: %s", "/talk", "timeout")  # its own episode
    for _ in range(2):
        problems.succeeded("/live", "mount %s answers again", "/live")
    problems.failed("/live", "HTTP 500", "mount %s: %s", "/live", "HTTP 500")  # a new episode
    logged = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [entry for entry in logged if entry[0] != "DEBUG"] == [
        ("WARNING", "mount /live: timeout"),
        ("WARNING", "mount /live: HTTP 500"),
        ("WARNING", "mount /talk: timeout"),
        ("INFO", "mount /live answers again"),
        ("WARNING", "mount /live: HTTP 500"),
    ]
    assert [m for level, m in logged if level == "DEBUG"] == ["mount /live: timeout"] * 2 + [
        "mount /live: HTTP 500"
    ]


def test_a_thing_gone_takes_its_problem_along(caplog: pytest.LogCaptureFixture) -> None:
    problems = ProblemLog(logging.getLogger("audimeter.test"))
    problems.failed("/old", "HTTP 400", "mount /old: HTTP 400")
    problems.failed("/live", "timeout", "mount /live: timeout")
    problems.retain(["/live"])  # /old is no longer followed: nothing to say about it
    problems.succeeded("/old", "mount /old answers again")
    problems.failed("/old", "HTTP 400", "mount /old: HTTP 400")  # back, failing: news again
    problems.failed("/live", "timeout", "mount /live: timeout")  # kept: still the same
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert warnings == ["mount /old: HTTP 400", "mount /live: timeout", "mount /old: HTTP 400"]
