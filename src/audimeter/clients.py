"""The HTTP clients every command uses: one User-Agent, and the settings a source's client needs."""

from __future__ import annotations

import httpx

from audimeter import __version__
from audimeter.config import SourceConfig

USER_AGENT = f"audimeter/{__version__}"


def source_client(source: SourceConfig) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=source.timeout, headers={"User-Agent": USER_AGENT}, follow_redirects=False
    )
