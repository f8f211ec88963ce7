"""The poller for each kind of server."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from audimeter.config import SourceConfig
from audimeter.sources import Poller
from audimeter.sources.icecast import IcecastPoller
from audimeter.sources.shoutcast import Shoutcast1Poller, Shoutcast2Poller


def make_poller(
    config: SourceConfig,
    client: httpx.AsyncClient,
    previous_instance: str | None = None,
    previous_starts: Mapping[str, int] | None = None,
) -> Poller:
    """`previous_instance` is the server instance the state remembers for this source, and
    `previous_starts` the start of each of its open sessions, by client id."""
    if config.kind == "shoutcast2":
        return Shoutcast2Poller(
            config,
            client,
            previous_instance=previous_instance,
            previous_starts=previous_starts,
        )
    if config.kind == "shoutcast1":
        return Shoutcast1Poller(config, client, previous_instance=previous_instance)
    return IcecastPoller(config, client)
