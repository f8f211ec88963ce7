"""SHOUTcast DNAS 2 and DNAS 1.9: parse the admin reports and poll a server.

Theory of operation
-------------------
DNAS 2 (sc_serv2) serves several streams from one process. One poll cycle asks:

1. `/statistics?json=1` (public): every stream the server knows, with its id, `streampath`,
   listener count, title and song on air (`songtitle`), and the server version. The streams
   polled are `config.streams`, or every stream listed. Each stream is a mount named by its
   streampath, `/stream/<sid>/` when the server gives none.
2. `admin.cgi?sid=S&mode=bandwidth&type=json`: its `time` is the number of seconds since the DNAS
   process started, which names the server instance (below).
3. `admin.cgi?sid=N&mode=viewjson&page=3` per stream, all at once: that stream's listeners. When
   the JSON is refused or is not JSON (a DNAS older than its JSON reports answers an unknown mode
   with its HTML admin page), `mode=viewxml&page=3` instead, from then on.

`sid` is always sent: without it DNAS answers admin.cgi with a redirect to index.html. The admin
password goes in HTTP Basic first. DNAS accepts HTTP Basic only for the user "admin"; with another
user, or behind a proxy that drops the header, it answers 401 (or redirects), and the password is
sent as `pass=` in the query instead. Whichever was accepted is kept. Redirects are not followed:
`fetch` treats any answer but 200 as a failure, which is what a login-page redirect must be.

DNAS 1.9 serves one stream (mount `/`) and answers everything in one request,
`admin.cgi?pass=P&mode=viewxml` (the song on air is its `SONGTITLE`). It hands the audio stream,
not its pages, to clients whose User-Agent lacks "Mozilla", so those requests carry a
Mozilla-compatible User-Agent.

A stream whose listing fails is left out of that cycle (its listeners are unknown, not gone) and
logged once, when it starts failing or fails differently.

Passwords never appear in a log line or an exception message: every message names the URL without
its query, and httpx's own request log (which shows queries) is silenced by the logging set-up.

Instance rule
-------------
Listener ids (`UID`) come from one counter per DNAS process that restarts from a small number, and
DNAS reports no start time, so the instance is derived:

* With an uptime reading (DNAS 2's bandwidth report), the instance is named after the start time
  the first reading implies: `started:<unix time>`. The server restarted when its uptime went
  down *and* is no longer than the time since the previous reading (plus 5 s): a restarted
  server cannot have been up longer than that. Requiring both keeps clock steps on either machine
  from faking a restart, and the name, fixed at the first reading, does not wobble with the
  whole-second rounding of later readings.
* Without one (DNAS 1, or a DNAS 2 without the report), the uid counter itself is the witness: a
  listener that appears on a stream after that stream's previous listing connected later, so its
  uid is above every uid seen before that listing. A newly listed uid at or below that bound means
  the counter went back: new instance `seen:<poll time>`. Listeners that stay keep their uids and
  prove nothing; a restart with nobody listening is caught when the first listener comes back.

Either way the instance stays the same across normal polls. `previous_instance` (the instance the
store remembers from before audimeter restarted) is kept when the server's start agrees with it:
`started:T` when the server started within 5 s of T, `seen:T` when it started by T; with no uptime
to compare, it is kept. A clock that stepped while audimeter was stopped moves the start read
from the uptime by the step; the listeners still connected tell it apart from a restart: their
uids are those of the stored sessions (`previous_starts`), and their starts (poll time minus
seconds connected) moved by just as much.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx
from lxml import etree

from audimeter import __version__
from audimeter.config import SourceConfig
from audimeter.logs import ProblemLog
from audimeter.observations import Listener, ListenerList, ListenerTable, MountPolled, SourceSeen
from audimeter.sources import Emit, ServerInfo, SourceError
from audimeter.sources.http import FetchError, fetch
from audimeter.sources.xml import FormatError, parse_xml

log = logging.getLogger(__name__)

ROOT = "SHOUTCASTSERVER"

MAX_CONNECT_TIME = 10 * 366 * 86400
"""Over ten years connected is a server bug (a zero start time): treated as just connected."""

DNAS1_USER_AGENT = f"Mozilla/5.0 (compatible; audimeter/{__version__})"

_TOLERANCE = 5
"""Seconds of slack for whole-second uptimes, request latency and clock drift."""

_INTEGER = re.compile(r"\s*[+-]?\d+\s*")
# Ten digits of hours or minutes would be past MAX_CONNECT_TIME, and int() refuses thousands.
_DURATION = re.compile(r"\s*(\d{1,9}):(\d{1,2})(?::(\d{1,2}))?\s*")
# A \uXXXX escape of half a UTF-16 surrogate pair without its other half. Escaped backslashes and
# whole pairs are matched too, so that scanning never starts inside them.
_LONE_SURROGATE = re.compile(
    r"(?P<keep>\\\\|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|\\u[dD][89a-fA-F][0-9a-fA-F]{2}"
)


# -- parsed reports ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dnas2Stream:
    """One stream of a DNAS 2 server as `/statistics?json=1` lists it."""

    sid: int
    mount: str
    """The streampath, or `/stream/<sid>/` when the server gives none (unique per server)."""
    path: str
    """The streampath as reported; empty when absent."""
    listeners: int
    title: str
    song: str
    """The song on air (`songtitle`), "" for none."""
    active: bool
    """A source is connected (`streamstatus` 1)."""


@dataclass(frozen=True, slots=True)
class Dnas2Statistics:
    version: str
    """As reported, e.g. "2.6.1.777 (posix(linux x64))"."""
    streams: dict[int, Dnas2Stream]


@dataclass(frozen=True, slots=True)
class Dnas1Status:
    version: str
    listeners: ListenerList
    current_listeners: int
    song: str
    """The song on air (`SONGTITLE`), "" for none."""


# -- value helpers -------------------------------------------------------------------------------


def _integer(value: object) -> int | None:
    """A JSON or XML number; DNAS documentation shows numbers as strings, so those count too."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        try:
            return int(value)
        except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits())
            return None
    return None


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool | list | dict):
        return ""
    return str(value)


def _uid(value: object) -> str | None:
    """The canonical decimal form, so JSON `10157`, `"010157"` and XML `010157` are one listener."""
    number = _integer(value)
    if number is None or number < 0:
        return None
    return str(number)


def _connect_time(value: object) -> int:
    seconds = _integer(value)
    if seconds is None and isinstance(value, str):
        # Some DNAS 1 builds show connect times as [h:]mm:ss.
        match = _DURATION.fullmatch(value)
        if match:
            first, second, third = match.groups()
            if third is None:
                seconds = int(first) * 60 + int(second)
            else:
                seconds = (int(first) * 60 + int(second)) * 60 + int(third)
    if seconds is None or seconds < 0 or seconds > MAX_CONNECT_TIME:
        return 0
    return seconds


def _looks_like_html(text: str) -> bool:
    head = text[:200].lower()
    return head.startswith(("<!doctype html", "<html")) or "<html" in head


def _json_document(body: bytes, what: str) -> object:
    # DNAS writes UTF-8 but passes some client strings through as they came.
    text = body.decode("utf-8", errors="replace").lstrip("\ufeff").strip()
    if not text:
        raise FormatError(f"not {what} JSON (empty answer)")
    if _looks_like_html(text):
        raise FormatError(
            f"not {what} JSON (an HTML page: a login page, or a DNAS without JSON reports?)"
        )
    if text.startswith("<"):
        raise FormatError(f"not {what} JSON (an XML or HTML document)")
    if "\\ud" in text or "\\uD" in text:
        # json.loads keeps a lone surrogate, which no encoder takes: the user agent holding it
        # would fail later, in a Matomo request or the store.
        text = _LONE_SURROGATE.sub(lambda match: match["keep"] or "\\ufffd", text)
    try:
        # strict=False: a raw control character inside a user agent must not lose the whole list.
        return json.loads(text, strict=False)
    except json.JSONDecodeError as exc:
        raise FormatError(
            f"not {what} JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise FormatError(f"not {what} JSON (nested too deeply)") from None
    except ValueError:
        # int()'s limit (sys.get_int_max_str_digits()); DNAS writes numbers of its own only, so
        # one that long spoils the whole answer.
        raise FormatError(f"not {what} JSON (a number too long to convert)") from None


def _xml_root(body: bytes, what: str) -> etree._Element:
    text = body.lstrip(b"\xef\xbb\xbf \t\r\n")[:200].decode("latin-1")
    if _looks_like_html(text):
        raise FormatError(
            f"not {what} XML (an HTML page: a login page, a wrong password or an unknown mode?)"
        )
    root = parse_xml(body, ROOT, what)
    # DNAS never declares a document type; one with entity definitions is an attack, and its
    # unresolved entities would silently blank the values they stand in.
    if root.getroottree().docinfo.internalDTD is not None:
        raise FormatError(f"not {what} XML (has a document type declaration)")
    return root


# -- DNAS 2 --------------------------------------------------------------------------------------


def parse_dnas2_listeners_json(body: bytes) -> ListenerList:
    """`admin.cgi?sid=N&mode=viewjson&page=3`: the listeners of one stream."""
    document = _json_document(body, "DNAS 2 listener")
    if not isinstance(document, list):
        kind = type(document).__name__
        raise FormatError(f"not a DNAS 2 listener list (a JSON {kind}, expected an array)")
    listeners = []
    for entry in document:
        if not isinstance(entry, dict):
            kind = type(entry).__name__
            raise FormatError(f"not a DNAS 2 listener list (an entry is a JSON {kind})")
        client_id = _uid(entry.get("uid"))
        if client_id is None:
            continue
        listeners.append(
            Listener(
                client_id=client_id,
                ip=_text(entry.get("hostname")),
                user_agent=_text(entry.get("useragent")),
                connected=_connect_time(entry.get("connecttime")),
                referrer=_text(entry.get("referer")),
                forwarded_for=_text(entry.get("xff")),
            )
        )
    return ListenerList(listeners)


_XML_FIELDS = {"HOSTNAME": 0, "USERAGENT": 1, "CONNECTTIME": 2, "UID": 3, "REFERER": 4, "XFF": 5}


def _xml_listeners(root: etree._Element, what: str) -> ListenerList:
    container = root.find("LISTENERS")
    if container is None:
        raise FormatError(f"no <LISTENERS> in the {what} XML (another page of the report?)")
    listeners = []
    for element in container.iterchildren("LISTENER"):
        values = ["", "", "", "", "", ""]
        for child in element:
            index = _XML_FIELDS.get(child.tag) if isinstance(child.tag, str) else None
            if index is not None:
                values[index] = child.text or ""
        client_id = _uid(values[3])
        if client_id is None:
            continue
        listeners.append(
            Listener(
                client_id=client_id,
                ip=values[0],
                user_agent=values[1],
                connected=_connect_time(values[2]),
                referrer=values[4],
                forwarded_for=values[5],
            )
        )
    return ListenerList(listeners)


def parse_dnas2_listeners_xml(body: bytes) -> ListenerList:
    """`admin.cgi?sid=N&mode=viewxml&page=3`: the listeners of one stream."""
    return _xml_listeners(_xml_root(body, "DNAS 2 listener"), "DNAS 2 listener")


def parse_dnas2_statistics(body: bytes) -> Dnas2Statistics:
    """`/statistics?json=1`: the server version and every stream with its path and counts."""
    document = _json_document(body, "DNAS 2 statistics")
    if not isinstance(document, dict):
        kind = type(document).__name__
        raise FormatError(f"not DNAS 2 statistics (a JSON {kind}, expected an object)")
    if "version" not in document and "totalstreams" not in document:
        raise FormatError("not DNAS 2 statistics (no version and no totalstreams)")
    raw_streams = document.get("streams", [])
    if not isinstance(raw_streams, list):
        raise FormatError("not DNAS 2 statistics (streams is not an array)")
    entries: list[tuple[int, str, dict[str, object]]] = []
    for entry in raw_streams:
        if not isinstance(entry, dict):
            raise FormatError("not DNAS 2 statistics (a stream is not an object)")
        sid = _integer(entry.get("id"))
        if sid is None or sid < 1:
            continue
        path = _text(entry.get("streampath")).strip()
        if path and not path.startswith("/"):
            path = "/" + path
        entries.append((sid, path, entry))
    # Two streams on one path would make their listings overwrite each other's sessions.
    paths = [path for _, path, _ in entries if path]
    streams = {}
    for sid, path, entry in entries:
        mount = path if path and paths.count(path) == 1 else default_mount(sid)
        streams[sid] = Dnas2Stream(
            sid=sid,
            mount=mount,
            path=path,
            listeners=max(_integer(entry.get("currentlisteners")) or 0, 0),
            title=_text(entry.get("servertitle")),
            song=_text(entry.get("songtitle")).strip(),
            active=_integer(entry.get("streamstatus")) == 1,
        )
    return Dnas2Statistics(_text(document.get("version")).strip(), streams)


def parse_dnas2_uptime(body: bytes) -> int:
    """`admin.cgi?sid=N&mode=bandwidth&type=json`: seconds since the DNAS process started."""
    document = _json_document(body, "DNAS 2 bandwidth")
    if not isinstance(document, dict):
        raise FormatError("not a DNAS 2 bandwidth report (expected a JSON object)")
    uptime = _integer(document.get("time"))
    if uptime is None or uptime < 0:
        raise FormatError("not a DNAS 2 bandwidth report (no uptime in time)")
    return uptime


def default_mount(sid: int) -> str:
    return f"/stream/{sid}/"


# -- DNAS 1 --------------------------------------------------------------------------------------


def parse_dnas1_status(body: bytes) -> Dnas1Status:
    """DNAS 1.9 `admin.cgi?pass=P&mode=viewxml`: version, listener count and listeners."""
    root = _xml_root(body, "SHOUTcast 1 status")
    listeners = _xml_listeners(root, "SHOUTcast 1 status")
    count = _integer(root.findtext("CURRENTLISTENERS"))
    return Dnas1Status(
        version=(root.findtext("VERSION") or "").strip(),
        listeners=listeners,
        current_listeners=len(listeners.client_ids) if count is None else max(count, 0),
        song=(root.findtext("SONGTITLE") or "").strip(),
    )


# -- instance ------------------------------------------------------------------------------------


class _UidWatch:
    """Spots a uid counter that went back (see the module docstring)."""

    def __init__(self) -> None:
        self._highest: int | None = None
        """The highest uid of the earlier cycles of this instance."""
        self._last: dict[int, tuple[frozenset[int], int]] = {}
        """Per stream: the uids at its last listing, and the bound any later new uid exceeds."""

    def restarted(self, listings: Mapping[int, Sequence[int]]) -> bool:
        for stream, uids in listings.items():
            last = self._last.get(stream)
            if last is None:
                continue
            known, bound = last
            if any(uid <= bound for uid in uids if uid not in known):
                return True
        return False

    def record(self, listings: Mapping[int, Sequence[int]]) -> None:
        before = self._highest
        for stream, uids in listings.items():
            listed = frozenset(uids)
            # Listings of one cycle run concurrently: another stream's uids of this cycle may
            # be younger than this listing, so only earlier cycles raise the bound.
            bound = max(listed, default=-1)
            if before is not None:
                bound = max(bound, before)
            self._last[stream] = (listed, bound)
            if listed:
                top = max(listed)
                self._highest = top if self._highest is None else max(self._highest, top)

    def reset(self) -> None:
        self._highest = None
        self._last.clear()


class _InstanceTracker:
    def __init__(self, previous: str | None) -> None:
        self._previous = previous
        self._instance: str | None = None
        self._reading: tuple[int, float] | None = None
        """The last uptime and when it was read."""
        self._uids = _UidWatch()

    @property
    def resuming(self) -> bool:
        """No instance yet: the first cycle decides whether the stored one is kept."""
        return self._instance is None

    def update(
        self,
        at: float,
        uptime: int | None,
        listings: Mapping[int, Sequence[int]],
        moved: int | None = None,
    ) -> str:
        """The instance after this cycle's uptime (if any) and listings (stream → uids).

        `moved`: how far the starts of the stored sessions' listeners still listed moved.
        """
        restarted = False
        if uptime is not None:
            start = round(at - uptime)
            if self._instance is None:
                self._instance = self._resume(start, moved) or f"started:{start}"
            elif self._reading is not None:
                last_uptime, last_at = self._reading
                if uptime < last_uptime and uptime <= at - last_at + _TOLERANCE:
                    restarted = True
                    self._renew(f"started:{start}")
            self._reading = (uptime, at)
        elif self._instance is None:
            self._instance = self._previous or f"seen:{int(at)}"
        elif self._uids.restarted(listings):
            restarted = True
            self._reading = None
            self._renew(f"seen:{int(at)}")
        if restarted:
            self._uids.reset()
        self._uids.record(listings)
        assert self._instance is not None
        return self._instance

    def _renew(self, instance: str) -> None:
        self._instance = instance if instance != self._instance else instance + "+"

    def _resume(self, start: int, moved: int | None) -> str | None:
        previous = self._previous
        if not previous:
            return None
        kind, _, value = previous.partition(":")
        stamp = _integer(value.rstrip("+"))
        if stamp is None:
            return None
        if kind == "started" and abs(start - stamp) <= _TOLERANCE:
            return previous
        if kind == "started" and moved is not None and abs(start - stamp - moved) <= _TOLERANCE:
            return previous  # the clock stepped; the server and its listeners ran on
        if kind == "seen" and start <= stamp + _TOLERANCE:
            return previous
        return None


# -- HTTP ----------------------------------------------------------------------------------------


# DNAS answers in HTTP/1.1 with a Content-Length but closes the connection after every answer
# without saying so; a pooled connection reused in that moment fails the next request.
_CLOSE = {"Connection": "close"}


class _CredentialsRefused(SourceError):
    pass


def _shown(url: str) -> str:
    """The URL for messages: no user info, no query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# -- pollers -------------------------------------------------------------------------------------


def _software(major: int, version: str) -> str:
    return f"SHOUTcast DNAS {version or f'{major} (version unknown)'}"


class Shoutcast2Poller:
    def __init__(
        self,
        config: SourceConfig,
        client: httpx.AsyncClient,
        clock: Callable[[], float] = time.time,
        *,
        previous_instance: str | None = None,
        previous_starts: Mapping[str, int] | None = None,
    ) -> None:
        """`previous_starts`: the start of each stored open session of `previous_instance`, by
        client id."""
        self.config = config
        self._client = client
        self._clock = clock
        self._url = config.base_url
        self._shown = _shown(config.base_url)
        self._password = config.password.get_secret_value()
        self._use_query = False
        """Send the password as pass= (HTTP Basic was refused)."""
        self._use_xml = False
        """Ask for XML listings (the JSON ones were refused or were not JSON)."""
        self._instance = _InstanceTracker(previous_instance)
        self._previous_starts = dict(previous_starts or {})
        self._problems = ProblemLog(log)
        self.software = ""

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def poll_interval(self) -> float:
        return self.config.poll_interval

    # -- requests

    async def _exchange(
        self, path: str, params: Mapping[str, str], what: str, *, query: bool
    ) -> bytes:
        auth = None if query else httpx.BasicAuth(self.config.username, self._password)
        if query:
            params = {**params, "pass": self._password}
        return await fetch(
            self._client, self._url + path, what=what, auth=auth, params=params, headers=_CLOSE
        )

    async def _request(self, path: str, params: Mapping[str, str], what: str) -> bytes:
        """GET with the credentials that worked last; on a refusal, once with the other kind."""
        first = self._use_query
        try:
            return await self._exchange(path, params, what, query=first)
        except FetchError as exc:
            if not exc.refused:
                raise
            first_status = exc.status
        try:
            body = await self._exchange(path, params, what, query=not first)
        except FetchError as exc:
            if not exc.refused:
                raise
            kinds = ("pass=", "HTTP Basic") if first else ("HTTP Basic", "pass=")
            raise _CredentialsRefused(
                f"{what}: credentials refused (HTTP {first_status} with {kinds[0]}, "
                f"HTTP {exc.status} with {kinds[1]}); check the password (the server's or "
                'this stream\'s admin password) and, for HTTP Basic, the username ("admin")'
            ) from None
        if self._use_query == first:
            self._use_query = not first
            how = "as pass= in the query" if self._use_query else "by HTTP Basic"
            log.info("source %s: the server accepts the password %s; using that", self.name, how)
        return body

    async def statistics(self) -> Dnas2Statistics:
        what = f"source {self.name} ({self._shown}/statistics)"
        body = await self._request("/statistics", {"json": "1"}, what)
        try:
            return parse_dnas2_statistics(body)
        except FormatError as exc:
            raise SourceError(f"{what}: {exc}; is this a SHOUTcast DNAS 2 server?") from None

    def _selected(self, statistics: Dnas2Statistics) -> list[Dnas2Stream]:
        if self.config.streams is None:
            streams = sorted(statistics.streams.values(), key=lambda stream: stream.sid)
        else:
            # A configured stream the server does not list has nobody on it: polling it says so.
            streams = [
                statistics.streams.get(sid)
                or Dnas2Stream(sid, default_mount(sid), "", 0, "", "", False)
                for sid in self.config.streams
            ]
        return [stream for stream in streams if self.config.wants_mount(stream.mount)]

    async def _uptime(self, sid: int) -> int | None:
        what = f"source {self.name} ({self._shown}/admin.cgi, server uptime)"
        try:
            body = await self._request(
                "/admin.cgi", {"sid": str(sid), "mode": "bandwidth", "type": "json"}, what
            )
        except _CredentialsRefused:
            raise
        except SourceError as exc:
            log.debug("%s; telling restarts by listener ids", exc)
            return None
        try:
            return parse_dnas2_uptime(body)
        except FormatError as exc:
            # DNAS 2 before its bandwidth report answers with the admin page.
            log.debug("%s: %s; telling restarts by listener ids", what, exc)
            return None

    async def _listing(self, stream: Dnas2Stream) -> tuple[int, ListenerList | None, str]:
        """(time listed, listeners or None, why not)."""
        problem = ""
        for use_xml in (True,) if self._use_xml else (False, True):
            kind = "XML" if use_xml else "JSON"
            what = f"source {self.name} ({self._shown}/admin.cgi, stream {stream.sid} {kind})"
            params = {"sid": str(stream.sid), "mode": "viewxml" if use_xml else "viewjson"}
            try:
                body = await self._request("/admin.cgi", {**params, "page": "3"}, what)
            except _CredentialsRefused as exc:
                return 0, None, str(exc)
            except FetchError as exc:
                if exc.status is None:
                    return 0, None, str(exc)
                problem = str(exc)
                continue
            at = int(self._clock())
            try:
                if use_xml:
                    listeners = parse_dnas2_listeners_xml(body)
                else:
                    listeners = parse_dnas2_listeners_json(body)
            except FormatError as exc:
                problem = f"{what}: {exc}"
                continue
            if use_xml and not self._use_xml:
                self._use_xml = True
                log.info("source %s: no JSON listener lists here; asking for XML", self.name)
            return at, listeners, ""
        return 0, None, problem

    # -- protocol

    async def describe(self) -> ServerInfo:
        statistics = await self.statistics()
        streams = self._selected(statistics)
        if streams:
            # The statistics are public: one listing shows that the credentials work.
            _, listeners, problem = await self._listing(streams[0])
            if listeners is None:
                raise SourceError(problem)
        return ServerInfo(
            _software(2, statistics.version), {stream.mount: stream.listeners for stream in streams}
        )

    async def poll(self, emit: Emit) -> None:
        """One cycle: streams, server uptime, every stream's listeners; then the observations."""
        statistics = await self.statistics()
        self.software = _software(2, statistics.version)
        seen_at = self._clock()
        streams = self._selected(statistics)
        uptime = await self._uptime(streams[0].sid if streams else 1)
        uptime_at = self._clock()
        listings = await asyncio.gather(*(self._listing(stream) for stream in streams))
        self._problems.retain([stream.sid for stream in streams])
        uids: dict[int, list[int]] = {}
        for stream, (_, listeners, problem) in zip(streams, listings, strict=True):
            if listeners is None:
                self._skipped(stream, problem)
                continue
            self._recovered(stream)
            uids[stream.sid] = [int(client_id) for client_id in listeners.client_ids]
        moved = None
        if self._instance.resuming and self._previous_starts:
            moved = self._moved([(at, table) for at, table, _ in listings if table is not None])
        instance = self._instance.update(uptime_at, uptime, uids, moved)
        mounts = frozenset(stream.mount for stream in streams)
        await emit(SourceSeen(self.name, int(seen_at), instance, mounts))
        for stream, (at, listeners, _) in zip(streams, listings, strict=True):
            if listeners is not None:
                await emit(
                    MountPolled(self.name, at, instance, stream.mount, listeners, stream.song)
                )

    def _moved(self, listings: Sequence[tuple[int, ListenerTable]]) -> int | None:
        """How far the starts of the stored sessions' listeners moved (the median, so that no
        odd value decides); None when none of them is listed."""
        moved: list[int] = []
        for at, table in listings:
            for index, client_id in enumerate(table.client_ids):
                start = self._previous_starts.get(client_id)
                if start is not None:
                    connected = table.details(index).connected
                    if 0 <= connected <= MAX_CONNECT_TIME:
                        moved.append(at - connected - start)
        return statistics.median_low(moved) if moved else None

    def _skipped(self, stream: Dnas2Stream, problem: str) -> None:
        self._problems.failed(
            stream.sid,
            problem,
            "source %s: stream %d (%s) skipped until it answers: %s",
            self.name,
            stream.sid,
            stream.mount,
            problem,
        )

    def _recovered(self, stream: Dnas2Stream) -> None:
        self._problems.succeeded(
            stream.sid,
            "source %s: stream %d (%s) answers again",
            self.name,
            stream.sid,
            stream.mount,
        )


class Shoutcast1Poller:
    MOUNT = "/"

    def __init__(
        self,
        config: SourceConfig,
        client: httpx.AsyncClient,
        clock: Callable[[], float] = time.time,
        *,
        previous_instance: str | None = None,
    ) -> None:
        self.config = config
        self._client = client
        self._clock = clock
        self._shown = _shown(config.base_url)
        self._instance = _InstanceTracker(previous_instance)
        self.software = ""

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def poll_interval(self) -> float:
        return self.config.poll_interval

    async def status(self) -> tuple[int, Dnas1Status]:
        """When the status was read, and the status."""
        what = f"source {self.name} ({self._shown}/admin.cgi, status XML)"
        params = {"pass": self.config.password.get_secret_value(), "mode": "viewxml"}
        try:
            body = await fetch(
                self._client,
                self.config.base_url + "/admin.cgi",
                what=what,
                params=params,
                headers={**_CLOSE, "User-Agent": DNAS1_USER_AGENT},
            )
        except FetchError as exc:
            status = exc.status
            if status is not None and 300 <= status < 400:
                # DNAS 2 redirects admin.cgi requests without a stream id to its index page.
                raise SourceError(
                    f"{what}: redirected (HTTP {status}) where DNAS 1 answers; is this a DNAS 2"
                    ' server (kind = "shoutcast2")?'
                ) from None
            raise
        at = int(self._clock())
        try:
            return at, parse_dnas1_status(body)
        except FormatError as exc:
            raise SourceError(
                f"{what}: {exc}; is the password right and is this a SHOUTcast 1.x server?"
            ) from None

    async def describe(self) -> ServerInfo:
        _, status = await self.status()
        return ServerInfo(_software(1, status.version), {self.MOUNT: status.current_listeners})

    async def poll(self, emit: Emit) -> None:
        at, status = await self.status()
        self.software = _software(1, status.version)
        uids = {1: [int(client_id) for client_id in status.listeners.client_ids]}
        instance = self._instance.update(at, None, uids)
        await emit(SourceSeen(self.name, at, instance, frozenset({self.MOUNT})))
        await emit(MountPolled(self.name, at, instance, self.MOUNT, status.listeners, status.song))
