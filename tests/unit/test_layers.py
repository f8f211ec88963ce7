"""Data flows one way, in the imports too: sources and the admit policy know nothing downstream."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import audimeter

PACKAGE = Path(audimeter.__file__).parent
DOWNSTREAM = (
    *("store", "sessionizer", "nowplaying", "exactends", "runner", "sinks", "outputs", "matomo"),
    *("telemetry", "metricsserver", "sdnotify"),
)
"""What sources and the policy feed, directly or further on: none of it may be imported."""


def module_path(name: str) -> Path | None:
    """The file of an audimeter module, or None for a name that is no module of ours."""
    parts = name.split(".")
    if parts[0] != "audimeter":
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported(name: str) -> set[str]:
    """The audimeter modules a module imports anywhere in its text, with their packages."""
    path = module_path(name)
    assert path is not None, name
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from audimeter.sources import icecast` imports a module by that name too
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    found = set()
    for full in names:
        parts = full.split(".")
        for end in range(1, len(parts) + 1):
            prefix = ".".join(parts[:end])
            if module_path(prefix) is not None:
                found.add(prefix)
    return found - {name}


def reached(start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(imported(name))
    return seen


UPSTREAM = sorted(
    [f"audimeter.sources.{p.stem}" for p in (PACKAGE / "sources").glob("[!_]*.py")]
    + ["audimeter.sources", "audimeter.webhook", "audimeter.policy", "audimeter.observations"]
    + ["audimeter.addresses"]
)


@pytest.mark.parametrize("start", UPSTREAM)
def test_upstream_imports_nothing_downstream(start: str) -> None:
    downstream = {
        name
        for name in reached(start)
        if any(name == f"audimeter.{d}" or name.startswith(f"audimeter.{d}.") for d in DOWNSTREAM)
    }
    assert not downstream, f"{start} reaches {sorted(downstream)}"


def test_the_walk_sees_deferred_and_indirect_imports() -> None:
    assert "audimeter.privacy" in imported("audimeter.cli")  # inside a function
    assert "audimeter.store" in reached("audimeter.cli")  # through privacy


@pytest.mark.parametrize("start", ["audimeter.sessionizer", "audimeter.store", "audimeter.health"])
def test_the_metrics_are_fed_by_the_runner_only(start: str) -> None:
    told = {"audimeter.telemetry", "audimeter.metricsserver", "audimeter.sdnotify"}
    assert not reached(start) & told
