"""The real-Matomo tier: a private Matomo 5 from the kit in ``../shared/matomo``, one per test run.

Where the kit is absent the whole tier is skipped with one line saying where it was looked for;
where it is present and Matomo does not come up, every test of the tier fails with the kit's error.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.matomolab import KitMissing, MatomoLab, MatomoLabError, kit_path


@pytest.fixture(scope="session")
def matomo_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MatomoLab]:
    try:
        script = kit_path()
    except KitMissing as exc:
        pytest.skip(f"real-Matomo tier skipped: {exc}")
    try:
        lab = MatomoLab.up(tmp_path_factory.mktemp("matomo"), script)
    except MatomoLabError as exc:
        pytest.fail(f"the Matomo kit is present but Matomo did not come up: {exc}", pytrace=False)
    try:
        yield lab
    finally:
        lab.close()
        lab.down()


def answering(lab: MatomoLab) -> bool:
    """Whether Matomo answers an authenticated API call (PHP up and the token read from the DB)."""
    try:
        answer = lab.api_raw("API.getMatomoVersion")
    except (httpx.HTTPError, MatomoLabError):
        return False
    return isinstance(answer, dict) and str(answer.get("value", "")).startswith("5.")


@pytest.fixture
def real_matomo(matomo_lab: MatomoLab) -> MatomoLab:
    """The session's Matomo with no visits left from earlier tests."""
    # A test may have stopped it; `up` (half a second, even when all runs) only then.
    if not answering(matomo_lab):
        matomo_lab.restart()
    matomo_lab.reset()
    return matomo_lab
