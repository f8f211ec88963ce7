"""Icecast 2.4: parse the admin XML and poll a server.

One poll cycle asks `/admin/stats` for the server instance (`server_start_iso8601`) and the live
mounts, then `/admin/listclients` for every mount at once. A mount whose listing fails is left
out: its listeners are unknown this cycle, not gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from lxml import etree

from audimeter.config import SourceConfig
from audimeter.observations import Listener, MountPolled, Observation, SourceSeen
from audimeter.sources import SourceError
from audimeter.sources.http import fetch

log = logging.getLogger(__name__)

_LISTENER_FIELDS = {"IP": 0, "UserAgent": 1, "Connected": 2, "ID": 3}


class IcecastFormatError(ValueError):
    """The body is not the Icecast admin XML that was asked for."""


@dataclass(frozen=True, slots=True)
class ServerStats:
    server_id: str
    instance: str
    mounts: dict[str, int]
    """Live mounts and their listener counts."""


# Entities are never expanded and nothing is fetched: no XML bombs, no external entities.
_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True
)


def _root(body: bytes) -> etree._Element:
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise IcecastFormatError(f"not Icecast XML ({exc})") from None
    if root is None:
        raise IcecastFormatError("empty response")
    if root.tag != "icestats":
        raise IcecastFormatError(f"not Icecast XML (root element <{root.tag}>)")
    return root


def parse_stats(body: bytes) -> ServerStats:
    """`/admin/stats`: the server instance and its live mounts."""
    root = _root(body)
    instance = root.findtext("server_start_iso8601") or root.findtext("server_start")
    if not instance:
        raise IcecastFormatError("no server_start_iso8601 in /admin/stats")
    mounts = {}
    for source in root.iterchildren("source"):
        mount = source.get("mount")
        if mount:
            mounts[mount] = _int(source.findtext("listeners"))
    return ServerStats(root.findtext("server_id") or "Icecast", instance, mounts)


def parse_listclients(body: bytes) -> tuple[str, list[Listener]]:
    """`/admin/listclients?mount=…`: the mount and every listener on it."""
    root = _root(body)
    source = root.find("source")
    if source is None or not source.get("mount"):
        raise IcecastFormatError("no <source mount=…> in /admin/listclients")
    listeners = []
    fields = _LISTENER_FIELDS
    for element in source.iterchildren("listener"):
        values = ["", "", "", ""]
        for child in element:
            index = fields.get(child.tag)
            if index is not None:
                values[index] = child.text or ""
        if values[3]:
            listeners.append(Listener(values[3], values[0], values[1], _int(values[2])))
    return source.get("mount", ""), listeners


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


class IcecastPoller:
    def __init__(
        self,
        config: SourceConfig,
        client: httpx.AsyncClient,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._client = client
        self._clock = clock
        self._auth = httpx.BasicAuth(config.username, config.password.get_secret_value())

    @property
    def name(self) -> str:
        return self.config.name

    async def _get(self, path: str, params: dict[str, str] | None = None) -> bytes:
        what = f"source {self.name} ({self.config.base_url}{path})"
        return await fetch(
            self._client, self.config.base_url + path, what=what, auth=self._auth, params=params
        )

    async def stats(self) -> ServerStats:
        body = await self._get("/admin/stats")
        try:
            return parse_stats(body)
        except IcecastFormatError as exc:
            raise SourceError(
                f"source {self.name} ({self.config.base_url}/admin/stats): {exc}; "
                "is this an Icecast server?"
            ) from None

    async def poll(self) -> list[Observation]:
        """One cycle: the server's instance and mounts, then each mount's listeners."""
        stats = await self.stats()
        observations: list[Observation] = [
            SourceSeen(self.name, int(self._clock()), stats.instance, frozenset(stats.mounts))
        ]
        results = await asyncio.gather(
            *(self._poll_mount(stats.instance, mount) for mount in stats.mounts)
        )
        observations.extend(r for r in results if r is not None)
        return observations

    async def _poll_mount(self, instance: str, mount: str) -> MountPolled | None:
        try:
            body = await self._get("/admin/listclients", {"mount": mount})
            at = int(self._clock())
            listed_mount, listeners = parse_listclients(body)
        except (SourceError, IcecastFormatError) as exc:
            log.warning("source %s: mount %s skipped this cycle: %s", self.name, mount, exc)
            return None
        return MountPolled(self.name, at, instance, listed_mount, listeners)
