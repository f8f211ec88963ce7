"""The documentation stays whole: the MkDocs site builds in strict mode (no broken link, no
missing anchor, no page left out of the nav), the README's links lead to files and headings
that exist, and the configuration reference names exactly the keys config.py accepts."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import markdown
from pydantic import BaseModel, Field

from audimeter.config import Config

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "configuration.md"

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
TABLE_NAME = re.compile(r"\[\[?([A-Za-z0-9_.*]+)\]?\]")


def build_site(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(sys.executable, "-m", "mkdocs", "build", "--strict"),
            *("--config-file", str(project / "mkdocs.yml"), "--site-dir", str(site)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_site_builds_in_strict_mode(tmp_path):
    result = build_site(ROOT, tmp_path / "site")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "configuration" / "index.html").is_file()


def test_a_broken_link_a_missing_anchor_or_a_page_outside_the_nav_fails_the_build(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(ROOT / "docs", project / "docs")
    shutil.copy(ROOT / "mkdocs.yml", project / "mkdocs.yml")
    with (project / "docs" / "troubleshooting.md").open("a", encoding="utf-8") as page:
        page.write("\n[gone](no-such-page.md) and [moved](matomo.md#no-such-heading)\n")
    (project / "docs" / "orphan.md").write_text("# Not in the nav\n", encoding="utf-8")
    result = build_site(project, tmp_path / "site")
    assert result.returncode != 0
    for culprit in ("no-such-page.md", "#no-such-heading", "orphan.md"):
        assert culprit in result.stderr


# -- the README's links ---------------------------------------------------------------------


def _outside_code(text: str) -> Iterator[str]:
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            yield line


def links(text: str) -> list[str]:
    return [m for line in _outside_code(text) for m in LINK.findall(line)]


def anchors(page: Path) -> set[str]:
    """The ids of a page's headings, as MkDocs (Python-Markdown's toc) makes them."""
    converter = markdown.Markdown(extensions=["toc", "tables", "fenced_code"])
    converter.convert(page.read_text(encoding="utf-8"))

    def ids(tokens: list[dict[str, Any]]) -> Iterator[str]:
        for token in tokens:
            yield token["id"]
            yield from ids(token["children"])

    return set(ids(converter.toc_tokens))  # type: ignore[attr-defined]


def broken_links(page: Path) -> list[str]:
    """The relative links of `page` whose file, or heading in that file, does not exist."""
    broken = []
    for target in links(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path) if path else page
        exists = linked.exists()
        if not exists or (anchor and (linked.suffix != ".md" or anchor not in anchors(linked))):
            broken.append(target)
    return broken


def test_the_readme_links_lead_to_files_and_headings_that_exist():
    readme = ROOT / "README.md"
    assert "docs/configuration.md" in links(readme.read_text(encoding="utf-8"))
    assert broken_links(readme) == []


def test_a_missing_file_or_heading_is_a_broken_link(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# Page\n\n## A `[table]` here\n")
    readme = tmp_path / "README.md"
    readme.write_text(
        "## Start\n\n[ok](docs/page.md#a-table-here) [self](#start) [web](https://example.org/x)\n"
        "[gone](docs/gone.md) [moved](docs/page.md#elsewhere) [lost](#nowhere)\n\n"
        "```\n[in code](not-a-link.md)\n```\n"
    )
    assert broken_links(readme) == ["docs/gone.md", "docs/page.md#elsewhere", "#nowhere"]


# -- every configuration key in the reference --------------------------------------------------


def _models(annotation: Any) -> Iterator[tuple[str, type[BaseModel]]]:
    """The models inside a field's type, each with the key segment it adds (`*` for a table of
    them keyed by any name)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield "", annotation
        return
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is dict and len(args) == 2:
        yield from ((".*" + seg, model) for seg, model in _models(args[1]))
    elif origin in (list, tuple, set, frozenset, typing.Union, types.UnionType, typing.Annotated):
        for arg in args[:1] if origin is typing.Annotated else args:
            yield from _models(arg)


def accepted_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every key the model accepts, as `table.key` (`sources.name` for `[[sources]] name`)."""
    keys = set()
    for name, field in model.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else None
        key = prefix + (alias or field.alias or name)
        nested = list(_models(field.annotation))
        if not nested:
            keys.add(key)
        for segment, sub in nested:
            keys |= accepted_keys(sub, f"{key}{segment}.")
    return keys


def documented_keys(reference: str) -> set[str]:
    """The keys in the first column of the reference's tables, under the heading of their table
    (`## [matomo]`, `## [[sources]]`); a level-2 heading without one holds top-level keys."""
    keys = set()
    table = ""
    for line in _outside_code(reference):
        heading = HEADING.match(line)
        if heading:
            named = TABLE_NAME.search(heading.group(2))
            if named:
                table = named.group(1)
            elif len(heading.group(1)) <= 2:
                table = ""
            continue
        cells = line.split("|")
        if not line.startswith("|") or len(cells) < 3:
            continue
        for key in re.findall(r"`([^`]+)`", cells[1]):
            keys.add(f"{table}.{key}" if table else key)
    return keys


def undocumented(model: type[BaseModel], reference: str) -> tuple[list[str], list[str]]:
    """Keys the model accepts that the reference lacks, and keys it documents that no longer
    exist."""
    accepted, documented = accepted_keys(model), documented_keys(reference)
    return sorted(accepted - documented), sorted(documented - accepted)


def test_the_configuration_reference_documents_every_key_the_code_accepts():
    missing, stale = undocumented(Config, REFERENCE.read_text(encoding="utf-8"))
    assert not missing, (
        f"docs/configuration.md lacks these keys: {', '.join(missing)}. Add a row for each "
        "(key, type, default, meaning) under the heading of its table, e.g. `## [matomo]`"
    )
    assert not stale, f"docs/configuration.md documents keys the code does not accept: {stale}"
    assert {"state.path", "sources.reconcile_delay", "keepalive_interval"} <= set(
        accepted_keys(Config)
    )


class _Inner(BaseModel):
    listen: str = ""
    since: int = Field(0, alias="from")


class _Outer(BaseModel):
    level: int = 0
    metrics: _Inner | None = None
    outputs: list[_Inner] = []
    named: dict[str, _Inner] = {}


def test_a_key_missing_from_the_reference_or_no_longer_accepted_is_named():
    assert accepted_keys(_Outer) == {
        "level",
        "metrics.listen",
        "metrics.from",
        "outputs.listen",
        "outputs.from",
        "named.*.listen",
        "named.*.from",
    }
    reference = (
        "# Reference\n\n## Top-level keys\n\n| key | meaning |\n| --- | --- |\n| `level` | x |\n\n"
        "## [metrics]\n\n| key | meaning |\n| --- | --- |\n| `listen`, `from` | x |\n\n"
        "```toml\n# [outputs]\n| `listen` | in code |\n```\n\n"
        "## [[outputs]]\n\n| key | meaning |\n| --- | --- |\n| `listen` | x |\n| `gone` | x |\n\n"
        "## [named.*]\n\n| key | meaning |\n| --- | --- |\n| `listen` | x | \n| `from` | x |\n"
    )
    assert undocumented(_Outer, reference) == (["outputs.from"], ["outputs.gone"])
