"""Icecast 2.4, 2.5 and Icecast-KH: parse the admin XML and poll a server.

The versions differ only in the listener fields of `/admin/listclients`: 2.4 writes `<IP>`,
`<UserAgent>`, `<Connected>`, `<ID>`; 2.5 writes them in lower case and adds `<referer>`; KH
adds `<Referer>` and `<lag>`. The parser accepts every spelling, so the version is detected from
the answer and never configured.

One poll cycle asks `/admin/stats` for the server instance (`server_start_iso8601`), the live
mounts and the title on air on each, then `/admin/listclients` for every mount at once. A mount
whose listing fails is left out: its listeners are unknown this cycle, not gone.

The listings are fetched together but parsed one at a time, each handed on before the next is
parsed: a parsed listing takes several times the memory of its bytes. Of a listing only the client
ids are read up front; a listener's other fields are decoded when the sessionizer asks for them,
which it does for new listeners only.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
from lxml import etree

from audimeter.config import SourceConfig
from audimeter.logs import ProblemLog
from audimeter.observations import (
    Listener,
    ListenerList,
    ListenerTable,
    MountPolled,
    SourceSeen,
    now_playing,
)
from audimeter.sources import Emit, ServerInfo, SourceError
from audimeter.sources.http import fetch
from audimeter.sources.xml import FormatError, parse_xml

log = logging.getLogger(__name__)

_LISTENER_FIELDS = {
    "IP": 0, "ip": 0,
    "UserAgent": 1, "useragent": 1,
    "Connected": 2, "connected": 2,
    "Referer": 3, "referer": 3,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ServerStats:
    server_id: str
    instance: str
    mounts: dict[str, int]
    """Live mounts and their listener counts."""
    titles: dict[str, str]
    """The title on air per live mount ("" for none)."""


def parse_stats(body: bytes) -> ServerStats:
    """`/admin/stats`: the server instance and its live mounts."""
    # Repaired like listings: a source client's title in Latin-1 must not hide the mounts.
    root = parse_xml(body, "icestats", "Icecast")
    instance = root.findtext("server_start_iso8601") or root.findtext("server_start")
    if not instance:
        raise FormatError("no server_start_iso8601 in /admin/stats")
    mounts = {}
    titles = {}
    for source in root.iterchildren("source"):
        mount = source.get("mount")
        if mount:
            mounts[mount] = _int(source.findtext("listeners"))
            # MP3 sources' artist and title arrive joined in <title>; Ogg ones' apart; a
            # server listed in a directory may show only yp_currently_playing.
            titles[mount] = (
                now_playing(source.findtext("artist"), source.findtext("title"))
                or (source.findtext("yp_currently_playing") or "").strip()
            )
    return ServerStats(root.findtext("server_id") or "Icecast", instance, mounts, titles)


# A listener's id is the first text in its first <ID> element (2.4, KH) or, when that has none,
# in its first <id> element (2.5).
_CLIENT_ID = etree.XPath("ID[1]/text()[1]", smart_strings=False)
_LOWER_CASE_CLIENT_ID = etree.XPath("id[1]/text()[1]", smart_strings=False)


def parse_listclients(body: bytes) -> tuple[str, ListenerTable]:
    """`/admin/listclients?mount=…`: the mount and every listener on it."""
    root = parse_xml(body, "icestats", "Icecast")
    source = root.find("source")
    if source is None or not source.get("mount"):
        raise FormatError("no <source mount=…> in /admin/listclients")
    mount = source.get("mount", "")
    client_ids = _client_ids(source, "ID")
    if client_ids is None and next(source.iter("ID"), None) is None:
        client_ids = _client_ids(source, "id")
    if client_ids is not None:
        return mount, _Listing(source, client_ids)
    # Some listener lacks an id, has two, or some have an upper-case and others a lower-case
    # one: find each listener's and leave out those without.
    listeners = []
    for element in source.iterchildren("listener"):
        client_id = _client_id(element)
        if client_id:
            listeners.append(_decode(element, client_id))
    return mount, ListenerList(listeners)


def _client_ids(source: etree._Element, tag: str) -> list[str] | None:
    """Every listener's id, when each listener has one `tag` element with text and no other
    element under `source` has one (nearly every listing); None otherwise.

    Then the id is the text of the element, as `_client_id` reads it. The listeners and the
    `tag` elements are walked side by side, through the same stretch of the tree at a time:
    an XPath query takes several times as long, and so does a walk that keeps an object of
    each listener, which the garbage collector then reads again and again.
    """
    client_ids: list[str] = []
    add = client_ids.append
    for listener, element in itertools.zip_longest(
        source.iterchildren("listener"), source.iter(tag)
    ):
        if element is None:
            return None  # a listener without one
        client_id = element.text
        if not client_id or element.getparent() is not listener:
            return None
        add(client_id)
    return client_ids


def _client_id(element: etree._Element) -> str:
    found = _CLIENT_ID(element) or _LOWER_CASE_CLIENT_ID(element)
    return str(found[0]) if isinstance(found, list) and found else ""


def _decode(element: etree._Element, client_id: str) -> Listener:
    values = ["", "", "", ""]
    fields = _LISTENER_FIELDS
    for child in element:
        index = fields.get(child.tag)
        if index is not None:
            values[index] = child.text or ""
    return Listener(client_id, values[0], values[1], _int(values[2]), values[3])


class _Listing:
    """A parsed listing whose listeners are decoded when asked for.

    A poll asks for those it has not seen yet, in the order listed; Icecast lists its clients in
    the order they connected, so those are mostly at the end. A walk along the listing makes an
    object of every element it passes, which for 100,000 listeners takes longer than the rest of
    the poll: so each listener is found from the nearest of the start, the end and the listener
    found last.
    """

    __slots__ = ("_at", "_source", "_walk", "client_ids")

    def __init__(self, source: etree._Element, client_ids: list[str]) -> None:
        self._source = source
        self._walk: Iterator[etree._Element] = source.iterchildren("listener")
        self._at = -1
        """The index of the listener found last; the walk goes on from there."""
        self.client_ids = client_ids

    def details(self, index: int) -> Listener:
        count = len(self.client_ids)
        if not 0 <= index < count:
            raise IndexError(f"no listener {index} in a listing of {count}")
        ahead = index - self._at - 1
        from_end = count - 1 - index
        if 0 <= ahead <= min(index, from_end):
            walk = self._walk
        elif index <= from_end:
            walk, ahead = self._source.iterchildren("listener"), index
        else:
            walk, ahead = self._source.iterchildren("listener", reversed=True), from_end
        element = next(itertools.islice(walk, ahead, None))
        self._walk = element.itersiblings("listener")
        self._at = index
        return _decode(element, self.client_ids[index])


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
        self._problems = ProblemLog(log)
        self.software = ""

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def poll_interval(self) -> float:
        return self.config.poll_interval

    async def _get(self, path: str, params: dict[str, str] | None = None) -> bytes:
        what = f"source {self.name} ({self.config.base_url}{path})"
        return await fetch(
            self._client, self.config.base_url + path, what=what, auth=self._auth, params=params
        )

    async def stats(self) -> ServerStats:
        body = await self._get("/admin/stats")
        try:
            return parse_stats(body)
        except FormatError as exc:
            raise SourceError(
                f"source {self.name} ({self.config.base_url}/admin/stats): {exc}; "
                "is this an Icecast server?"
            ) from None

    async def describe(self) -> ServerInfo:
        stats = await self.stats()
        followed = {m: n for m, n in stats.mounts.items() if self.config.wants_mount(m)}
        return ServerInfo(stats.server_id, followed)

    async def poll(self, emit: Emit) -> None:
        """One cycle: the server's instance and mounts, then each mount's listeners."""
        stats = await self.stats()
        self.software = stats.server_id
        mounts = [mount for mount in stats.mounts if self.config.wants_mount(mount)]
        await emit(SourceSeen(self.name, int(self._clock()), stats.instance, frozenset(mounts)))
        listings = await asyncio.gather(*(self._fetch_listing(mount) for mount in mounts))
        self._problems.retain(mounts)
        listings.reverse()
        while listings:
            # Off the list as it is parsed: a listing's bytes (1 MB for 5,000 listeners) are
            # not kept while the mounts after it are handled.
            mount, at, body = listings.pop()
            if body is None:
                continue
            try:
                listed_mount, listeners = parse_listclients(body)
            except FormatError as exc:
                self._skipped(mount, str(exc))
                continue
            del body
            self._problems.succeeded(mount, "source %s: mount %s answers again", self.name, mount)
            title = stats.titles.get(listed_mount)
            await emit(MountPolled(self.name, at, stats.instance, listed_mount, listeners, title))

    async def _fetch_listing(self, mount: str) -> tuple[str, int, bytes | None]:
        try:
            body = await self._get("/admin/listclients", {"mount": mount})
        except SourceError as exc:
            self._skipped(mount, str(exc))
            return mount, 0, None
        return mount, int(self._clock()), body

    def _skipped(self, mount: str, problem: str) -> None:
        self._problems.failed(
            mount,
            problem,
            "source %s: mount %s skipped until it answers: %s",
            self.name,
            mount,
            problem,
        )
