"""The poller for each kind of server."""

from __future__ import annotations

import httpx

from audimeter.config import SourceConfig
from audimeter.sources import Poller
from audimeter.sources.icecast import IcecastPoller
from audimeter.sources.shoutcast import Shoutcast1Poller, Shoutcast2Poller


def make_poller(
    config: SourceConfig, client: httpx.AsyncClient, previous_instance: str | None = None
) -> Poller:
    """`previous_instance` is the server instance the state remembers for this source."""
    if config.kind == "shoutcast2":
        return Shoutcast2Poller(config, client, previous_instance=previous_instance)
    if config.kind == "shoutcast1":
        return Shoutcast1Poller(config, client, previous_instance=previous_instance)
    return IcecastPoller(config, client)
