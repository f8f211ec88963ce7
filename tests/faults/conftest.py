"""The fault suite's figures: what each case lost and sent twice, summed up after the run."""

from __future__ import annotations

from collections.abc import Callable

import pytest

_FIGURES: list[tuple[str, str]] = []

Figures = Callable[[str], None]


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    """Record one line of figures for this test; all are printed at the end of the run."""

    def record(line: str) -> None:
        _FIGURES.append((request.node.nodeid, line))
        print(line)

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("fault figures (lost must be 0; duplicates within their bound)")
    for nodeid, line in _FIGURES:
        terminalreporter.write_line(f"{nodeid.rpartition('::')[2]}: {line}")
