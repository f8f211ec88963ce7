"""Emulated SHOUTcast servers for tests: real HTTP on loopback, DNAS's formats and auth rules.

DNAS is proprietary and cannot run here. :class:`Dnas2Emulator` answers the way the DNAS 2.6
source (sc_serv2: protocol_HTTPStyle.cpp, protocol_admincgi.cpp) builds its answers, byte for
byte where it matters:

* ``/statistics?json=1`` and ``/stats?sid=N&json=1`` are public; one line of JSON, numbers as
  JSON numbers except ``bitrate``/``samplerate`` (strings, as DNAS writes them), ``/`` escaped
  as ``\\/``, and the version with DNAS's platform suffix.
* ``admin.cgi`` takes the password from ``pass=`` or else from HTTP Basic, where only the user
  ``admin`` counts. No password: 401 before anything else; a wrong one: the same 401. Accepted:
  ``mode=viewjson|viewxml`` without a ``sid`` redirects to ``index.html`` (302); ``page=3`` lists
  the stream's listeners; ``mode=bandwidth&type=json`` reports ``time``, the seconds since the
  process started. Unknown modes get the stream's HTML admin page, which is also what a DNAS
  older than the JSON reports (``json_enabled=False``) or the bandwidth report
  (``bandwidth_enabled=False``) answers.

:class:`Dnas1Emulator` answers DNAS 1.9.8's ``admin.cgi?pass=P&mode=viewxml`` with the full status
XML of the fixture captured from it. DNAS 1 serves the audio stream, not its pages, to clients
whose User-Agent lacks "Mozilla"; so does the emulator (an ``ICY 200 OK`` answer). How 1.9.8
answers a wrong password could not be checked; the emulator sends the 401 DNAS 2 sends.

Listener ids come from one counter per emulated process; :meth:`restart` empties the server, sets
the counter back to 1 and the uptime to zero, like a restarted DNAS. Every request is recorded in
:attr:`requests` (passwords included: this is a test tool).
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self, cast
from urllib.parse import parse_qsl, urlsplit
from xml.sax.saxutils import escape

__all__ = [
    "DNAS1_PASSWORD",
    "DNAS2_ADMIN_PASSWORD",
    "Dnas1Emulator",
    "Dnas2Emulator",
    "Request",
]

LOOPBACK = "127.0.0.1"
DNAS2_ADMIN_PASSWORD = "adminpass"
DNAS1_PASSWORD = "changeme"
PLATFORM = "posix(linux x64)"

UNAUTHORIZED = (
    b"HTTP/1.1 401 Unauthorized\r\n"
    b"Connection:close\r\n"
    b"Server:Shoutcast DNAS\r\n"
    b'WWW-authenticate:basic realm="Shoutcast Server"\r\n'
    b"Content-type:text/html;charset=utf-8\r\n\r\n"
    b"<html><head>Unauthorized<title>Shoutcast Administrator</title></head></html>"
)
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nConnection:close\r\n\r\n"


@dataclass(frozen=True, slots=True)
class Request:
    """One request as the emulator received it."""

    path: str
    query: dict[str, str]
    basic_user: str | None
    """The user of an HTTP Basic Authorization header, if one came."""
    user_agent: str


@dataclass(frozen=True, slots=True)
class _Client:
    uid: int
    sid: int
    ip: str
    user_agent: str
    referer: str
    xff: str
    connected_at: float


def _response(status: str, content_type: str, body: bytes, extra: tuple[str, ...] = ()) -> bytes:
    head = [status, f"Content-Type:{content_type}", *extra, f"Content-Length:{len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def _json_string(value: str) -> str:
    """A JSON string body the way DNAS's escapeJSON writes it: `/` escaped too."""
    return json.dumps(value, ensure_ascii=False)[1:-1].replace("/", "\\/")


def _xml(value: str) -> str:
    return escape(value, {'"': "&quot;", "'": "&apos;"})


def _redirect(url: str) -> bytes:
    body = (
        f'<html><head><title>Redirect</title></head><body>Click <a href="/{url}">here</a>'
        " for redirect.</body></html>"
    ).encode()
    return _response("HTTP/1.1 302 Found", "text/html;charset=utf-8", body, (f"Location:{url}",))


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, emulator: _Emulator) -> None:
        super().__init__((LOOPBACK, 0), _Handler)
        self.emulator = emulator


class _Handler(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        emulator = cast(_Server, self.server).emulator
        answer = emulator.handle(self.path, dict(self.headers.items()))
        if answer is None:
            return
        try:
            self.wfile.write(answer)
            self.wfile.flush()
        except OSError:
            pass
        # DNAS closes every connection after its answer.
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Emulator:
    """Listeners, uid counter, uptime, hanging and the HTTP server shared by both emulators."""

    def __init__(self, *, first_uid: int, uptime: float) -> None:
        self._lock = threading.Lock()
        self._clients: dict[int, _Client] = {}
        self._next_uid = first_uid
        self._started = time.time() - uptime
        self._hang = 0.0
        self._stop = threading.Event()
        self._requests: list[Request] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> None:
        if self._server is not None:
            return
        self._stop.clear()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            # A short poll interval keeps stop() (which waits for the loop) quick.
            kwargs={"poll_interval": 0.05},
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not running")
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    # -- test controls

    def add_listener(
        self,
        sid: int,
        ip: str,
        user_agent: str,
        referer: str = "",
        xff: str = "",
        *,
        connected: float = 0.0,
    ) -> int:
        """Connect a listener to stream `sid` `connected` seconds ago; returns its uid."""
        self._check_sid(sid)
        with self._lock:
            uid = self._next_uid
            self._next_uid += 1
            self._clients[uid] = _Client(
                uid, sid, ip, user_agent, referer, xff, time.time() - connected
            )
        return uid

    def remove_listener(self, uid: int) -> None:
        with self._lock:
            del self._clients[uid]

    def restart(self) -> None:
        """Like a restarted process: nobody connected, uids from 1 again, uptime zero."""
        with self._lock:
            self._clients.clear()
            self._next_uid = 1
            self._started = time.time()

    def hang(self, seconds: float) -> None:
        """Make every answer wait `seconds` (0 to stop)."""
        self._hang = seconds

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- serving

    def handle(self, target: str, headers: dict[str, str]) -> bytes | None:
        if self._hang and self._stop.wait(self._hang):
            return None
        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        lowered = {key.lower(): value for key, value in headers.items()}
        basic_user, basic_password = _basic(lowered.get("authorization", ""))
        user_agent = lowered.get("user-agent", "")
        with self._lock:
            self._requests.append(Request(parts.path, query, basic_user, user_agent))
        return self.answer(parts.path, query, basic_user, basic_password, user_agent)

    def answer(
        self,
        path: str,
        query: dict[str, str],
        basic_user: str | None,
        basic_password: str,
        user_agent: str,
    ) -> bytes:
        raise NotImplementedError

    def _check_sid(self, sid: int) -> None:
        raise NotImplementedError

    def _listeners(self, sid: int) -> list[_Client]:
        with self._lock:
            return sorted(
                (client for client in self._clients.values() if client.sid == sid),
                key=lambda client: client.uid,
            )

    def _uptime(self) -> int:
        return int(time.time()) - int(self._started)


def _basic(header: str) -> tuple[str | None, str]:
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None, ""
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None, ""
    user, _, password = decoded.partition(":")
    return user, password


class Dnas2Emulator(_Emulator):
    """A DNAS 2.6 server with streams {sid: streampath}; "" gives DNAS's default path."""

    def __init__(
        self,
        admin_password: str = DNAS2_ADMIN_PASSWORD,
        streams: dict[int, str] | None = None,
        version: str = "2.6.1.777",
        *,
        json_enabled: bool = True,
        bandwidth_enabled: bool = True,
        first_uid: int = 100,
        uptime: float = 3600.0,
    ) -> None:
        super().__init__(first_uid=first_uid, uptime=uptime)
        self.admin_password = admin_password
        self.streams = dict({1: "/stream", 2: "/talk"} if streams is None else streams)
        self.version = version
        self.json_enabled = json_enabled
        self.bandwidth_enabled = bandwidth_enabled
        self.broken_listings: set[int] = set()
        """Streams whose listings answer 500 (a fault for tests, not DNAS behaviour)."""

    def _check_sid(self, sid: int) -> None:
        if sid not in self.streams:
            raise ValueError(f"no stream {sid} on this server")

    def stream_path(self, sid: int) -> str:
        """DNAS's getStreamPath: the configured path, else `/` for stream 1, `/stream/N/`."""
        path = self.streams.get(sid, "")
        if path:
            return path if path.startswith("/") else "/" + path
        return "/" if sid == 1 else f"/stream/{sid}/"

    def answer(
        self,
        path: str,
        query: dict[str, str],
        basic_user: str | None,
        basic_password: str,
        user_agent: str,
    ) -> bytes:
        name = path.removeprefix("/")
        if name == "admin.cgi":
            password = query.get("pass", "")
            if not password and basic_user is not None:
                # HTTP Basic counts for the user "admin" only.
                password = basic_password if basic_user == "admin" else ""
            return self._admin(query, password)
        if name == "statistics":
            return self._statistics(query.get("json", "") not in ("", "0"))
        if name == "stats":
            sid = _sid(query) or 1
            body = "{" + self._stats_json(sid, single=True) + "}"
            return _response("HTTP/1.0 200 OK", "application/json;charset=utf-8", body.encode())
        if name in ("", "index.html"):
            return _response(
                "HTTP/1.0 200 OK", "text/html;charset=utf-8", self._page("Server Status")
            )
        return NOT_FOUND

    def _admin(self, query: dict[str, str], password: str) -> bytes:
        if not password or password != self.admin_password:
            return UNAUTHORIZED
        sid = _sid(query)
        mode = query.get("mode", "")
        page = _int(query.get("page", "0"))
        if mode in ("viewjson", "viewxml"):
            if sid is None:
                return _redirect("index.html")
            if mode == "viewjson" and not self.json_enabled:
                return self._admin_page(sid)
            if sid in self.broken_listings:
                return b"HTTP/1.1 500 Internal Server Error\r\nConnection:close\r\n\r\n"
            if page == 3:
                return self._listing_json(sid) if mode == "viewjson" else self._listing_xml(sid)
            return self._admin_page(sid)
        if mode == "bandwidth" and query.get("type") == "json" and self.bandwidth_enabled:
            return self._bandwidth()
        if sid is None:
            return _redirect("index.html")
        return self._admin_page(sid)

    def _listing_json(self, sid: int) -> bytes:
        now = int(time.time())
        entries = [
            "{"
            f'"hostname":"{_json_string(client.ip)}",'
            f'"useragent":"{_json_string(client.user_agent)}",'
            f'"connecttime":{now - int(client.connected_at)},'
            f'"uid":{client.uid},'
            '"type":2052,'
            f'"referer":"{_json_string(client.referer)}",'
            f'"xff":"{_json_string(client.xff)}",'
            f'"grid":{client.uid},'
            '"triggers":0'
            "}"
            for client in self._listeners(sid)
        ]
        body = ("[" + ",".join(entries) + "]").encode()
        return _response("HTTP/1.1 200 OK", "application/json;charset=utf-8", body)

    def _listing_xml(self, sid: int) -> bytes:
        now = int(time.time())
        entries = "".join(
            "<LISTENER>"
            f"<HOSTNAME>{_xml(client.ip)}</HOSTNAME>"
            f"<USERAGENT>{_xml(client.user_agent)}</USERAGENT>"
            f"<CONNECTTIME>{now - int(client.connected_at)}</CONNECTTIME>"
            f"<UID>{client.uid}</UID>"
            "<TYPE>2052</TYPE>"
            f"<REFERER>{_xml(client.referer)}</REFERER>"
            f"<XFF>{_xml(client.xff)}</XFF>"
            f"<GRID>{client.uid}</GRID>"
            "<TRIGGERS>0</TRIGGERS>"
            "</LISTENER>"
            for client in self._listeners(sid)
        )
        body = (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes" ?>'
            f"<SHOUTCASTSERVER><LISTENERS>{entries}</LISTENERS></SHOUTCASTSERVER>"
        ).encode()
        return _response("HTTP/1.1 200 OK", "text/xml", body)

    def _bandwidth(self) -> bytes:
        groups = {
            "clientsent": ("total", "v2", "v1", "http", "flv"),
            "sourcerecv": ("total", "v2", "v1"),
            "sourcesent": ("total", "v2", "v1"),
            "relayrecv": ("total", "misc", "v2", "v1"),
            "webpages": ("total", "public", "private"),
            "other": (
                "total",
                "flash",
                "relaysentv2",
                "ypsent",
                "yprecv",
                "auth_metrics",
                "adverts",
            ),
        }
        parts = ['"total":0', '"sent":0', '"recv":0', f'"time":{self._uptime()}']
        for group, keys in groups.items():
            parts.append(f'"{group}":{{' + ",".join(f'"{key}":0' for key in keys) + "}")
        body = ("{" + ",".join(parts) + "}").encode()
        return _response("HTTP/1.1 200 OK", "application/json;charset=utf-8", body)

    def _stats_json(self, sid: int, *, single: bool) -> str:
        listeners = len(self._listeners(sid))
        genres = ",".join(
            f'"servergenre{"" if n == 0 else n + 1}":"{"Misc" if n == 0 else ""}"' for n in range(5)
        )
        body = (
            ("" if single else f'"id":{sid},')
            + f'"currentlisteners":{listeners},"peaklisteners":{listeners},"maxlisteners":512,'
            f'"uniquelisteners":{listeners},"averagetime":0,{genres},'
            f'"serverurl":"{_json_string("http://radio.example/")}",'
            f'"servertitle":"{_json_string(f"Test Radio {sid}")}",'
            '"songtitle":"Some Song","streamhits":0,"streamstatus":1,"backupstatus":0,'
            '"streamlisted":0,"streamlistederror":200,'
            f'"streampath":"{_json_string(self.stream_path(sid))}",'
            f'"streamuptime":{self._uptime()},'
            '"bitrate":"128","samplerate":"44100",'
            f'"content":"{_json_string("audio/mpeg")}"'
        )
        if single:
            body += f',"version":"{_json_string(self._version())}"'
        return body

    def _statistics(self, as_json: bool) -> bytes:
        sids = sorted(self.streams)
        with self._lock:
            total = len(self._clients)
        if as_json:
            head = (
                f'"totalstreams":{len(sids)},"activestreams":{len(sids)},'
                f'"currentlisteners":{total},"peaklisteners":{total},"maxlisteners":512,'
                f'"uniquelisteners":{total},"averagetime":0,'
                f'"version":"{_json_string(self._version())}"'
            )
            if sids:
                blocks = ",".join("{" + self._stats_json(sid, single=False) + "}" for sid in sids)
                head += f',"streams":[{blocks}]'
            body = ("{" + head + "}").encode()
            return _response("HTTP/1.0 200 OK", "application/json;charset=utf-8", body)
        blocks = "".join(
            f'<STREAM id="{sid}"><CURRENTLISTENERS>{len(self._listeners(sid))}'
            f"</CURRENTLISTENERS><STREAMPATH>{_xml(self.stream_path(sid))}</STREAMPATH></STREAM>"
            for sid in sids
        )
        xml = (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes" ?><SHOUTCASTSERVER>'
            f"<STREAMSTATS><TOTALSTREAMS>{len(sids)}</TOTALSTREAMS>"
            f"<CURRENTLISTENERS>{total}</CURRENTLISTENERS>"
            f"<VERSION>{_xml(self._version())}</VERSION>{blocks}</STREAMSTATS></SHOUTCASTSERVER>"
        )
        return _response("HTTP/1.0 200 OK", "text/xml", xml.encode())

    def _version(self) -> str:
        return f"{self.version} ({PLATFORM})"

    def _admin_page(self, sid: int) -> bytes:
        return _response(
            "HTTP/1.1 200 OK",
            "text/html;charset=utf-8",
            self._page(f"Stream {sid} Administrator"),
        )

    def _page(self, title: str) -> bytes:
        return (
            '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Shoutcast Administrator'
            f'</title></head><body><div class="logo">Shoutcast {_xml(title)}</div>'
            f"Shoutcast Server v{_xml(self.version)}/{PLATFORM}</body></html>"
        ).encode()


class Dnas1Emulator(_Emulator):
    """A DNAS 1.9 server: one stream (use sid 1), everything in admin.cgi?mode=viewxml."""

    def __init__(
        self,
        password: str = DNAS1_PASSWORD,
        version: str = "1.9.8",
        *,
        first_uid: int = 11575,
        uptime: float = 3600.0,
    ) -> None:
        super().__init__(first_uid=first_uid, uptime=uptime)
        self.password = password
        self.version = version
        self._stream_hits = first_uid - 1

    def _check_sid(self, sid: int) -> None:
        if sid != 1:
            raise ValueError("DNAS 1 serves one stream: sid 1")

    def add_listener(
        self,
        sid: int,
        ip: str,
        user_agent: str,
        referer: str = "",
        xff: str = "",
        *,
        connected: float = 0.0,
    ) -> int:
        uid = super().add_listener(sid, ip, user_agent, referer, xff, connected=connected)
        self._stream_hits += 1
        return uid

    def restart(self) -> None:
        super().restart()
        self._stream_hits = 0

    def answer(
        self,
        path: str,
        query: dict[str, str],
        basic_user: str | None,
        basic_password: str,
        user_agent: str,
    ) -> bytes:
        if "mozilla" not in user_agent.lower():
            return self._stream()
        if path == "/admin.cgi":
            if query.get("pass", "") != self.password or not self.password:
                return UNAUTHORIZED
            if query.get("mode") == "viewxml":
                return _response("HTTP/1.0 200 OK", "text/xml", self._status_xml())
            return _response("HTTP/1.0 200 OK", "text/html", self._page())
        if path in ("/", "/index.html"):
            return _response("HTTP/1.0 200 OK", "text/html", self._page())
        return NOT_FOUND

    def _stream(self) -> bytes:
        return (
            "ICY 200 OK\r\n"
            'icy-notice1:<BR>This stream requires <a href="http://www.winamp.com/">Winamp</a><BR>'
            f"\r\nicy-notice2:SHOUTcast Distributed Network Audio Server/Linux v{self.version}"
            "<BR>\r\nicy-name:Test Radio\r\nicy-genre:Misc\r\nicy-pub:0\r\nicy-br:128\r\n\r\n"
        ).encode("latin-1") + bytes(417)

    def _status_xml(self) -> bytes:
        now = int(time.time())
        clients = self._listeners(1)
        listeners = "".join(
            "<LISTENER>"
            f"<HOSTNAME>{_xml(client.ip)}</HOSTNAME>"
            f"<USERAGENT>{_xml(client.user_agent)}</USERAGENT>"
            "<UNDERRUNS>0</UNDERRUNS>"
            f"<CONNECTTIME>{now - int(client.connected_at)}</CONNECTTIME>"
            "<POINTER>0</POINTER>"
            f"<UID>{client.uid}</UID>"
            "</LISTENER>"
            for client in clients
        )
        return (
            '<?xml version="1.0" standalone="yes" ?><SHOUTCASTSERVER>'
            f"<CURRENTLISTENERS>{len(clients)}</CURRENTLISTENERS>"
            f"<PEAKLISTENERS>{len(clients)}</PEAKLISTENERS><MAXLISTENERS>64</MAXLISTENERS>"
            f"<REPORTEDLISTENERS>{len(clients)}</REPORTEDLISTENERS><AVERAGETIME>0</AVERAGETIME>"
            "<SERVERGENRE>Misc</SERVERGENRE><SERVERURL>http://radio.example/</SERVERURL>"
            "<SERVERTITLE>Test Radio</SERVERTITLE><SONGTITLE>Some Song</SONGTITLE>"
            "<SONGURL></SONGURL><IRC></IRC><ICQ></ICQ><AIM></AIM><WEBHITS>1</WEBHITS>"
            f"<STREAMHITS>{self._stream_hits}</STREAMHITS><STREAMSTATUS>1</STREAMSTATUS>"
            f"<BITRATE>128</BITRATE><CONTENT>audio/mpeg</CONTENT>"
            f"<VERSION>{_xml(self.version)}</VERSION>"
            f"<WEBDATA><INDEX>0</INDEX><LISTEN>0</LISTEN><ADMIN>0</ADMIN><VIEWXML>0</VIEWXML>"
            "</WEBDATA>"
            f"<LISTENERS>{listeners}</LISTENERS>"
            "<SONGHISTORY><SONG><PLAYEDAT>1205868797</PLAYEDAT><TITLE>Some Song</TITLE></SONG>"
            "</SONGHISTORY></SHOUTCASTSERVER>"
        ).encode()

    def _page(self) -> bytes:
        return (
            "<html><head><title>SHOUTcast Administrator</title></head><body>"
            f"SHOUTcast D.N.A.S. Status v{_xml(self.version)}</body></html>"
        ).encode()


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


def _sid(query: dict[str, str]) -> int | None:
    """DNAS treats a missing, unreadable or non-positive sid as no sid."""
    sid = _int(query.get("sid", "-1"))
    return sid if sid > 0 else None
