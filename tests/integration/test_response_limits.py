"""Server answers that are too big, not XML, or never come: `fetch` and the Icecast poller.

Each test runs a stdlib HTTP server on 127.0.0.1 (a free port, in a thread) whose answers are
generated as they are sent: nothing of the 100 MB is stored.
"""

from __future__ import annotations

import asyncio
import threading
import time
import tracemalloc
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar, cast

import httpx
import pytest

from audimeter.clients import source_client
from audimeter.config import SourceConfig
from audimeter.sources import SourceError
from audimeter.sources.factory import make_poller
from audimeter.sources.http import MAX_RESPONSE_BYTES, FetchError, fetch
from audimeter.sources.icecast import IcecastPoller

pytestmark = pytest.mark.timeout(60)

HUNDRED_MB = 100_000_000
CHUNK = 64 * 1024
LOGIN_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Login</title></head><body>"
    b'<form method="post"><input type="password" name=password></form></body></html>\n'
)
T = TypeVar("T")


# -- the server ----------------------------------------------------------------------------------


@dataclass
class Stream:
    """What one generated answer did: bytes written before the client left, and when it ended."""

    sent: int = 0
    finished: threading.Event = field(default_factory=threading.Event)
    client_left: bool = False


Route = Callable[["Handler"], None]


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, routes: dict[str, Route]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.routes = routes
        self.streams: list[Stream] = []
        self.release = threading.Event()
        """Set at the end of a test: handlers that hold a connection let it go."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def owner(self) -> Server:
        return cast(Server, self.server)

    def do_GET(self) -> None:
        route = self.owner.routes.get(self.path.partition("?")[0])
        if route is None:
            self.send_error(404)
            return
        route(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[Callable[[dict[str, Route]], Server]]:
    servers: list[Server] = []

    def start(routes: dict[str, Route]) -> Server:
        server = Server(routes)
        threading.Thread(target=server.serve_forever, name="limits-server", daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.release.set()
        server.shutdown()
        server.server_close()


def streamed(
    total: int = HUNDRED_MB, *, chunked: bool = False, gzip: bool = False
) -> Callable[[Handler], None]:
    """An /admin/stats answer of `total` bytes (before compression), generated chunk by chunk."""

    def route(handler: Handler) -> None:
        stream = Stream()
        handler.owner.streams.append(stream)
        handler.send_response(200)
        handler.send_header("Content-Type", "text/xml")
        if gzip:
            handler.send_header("Content-Encoding", "gzip")
        if chunked or gzip:
            handler.send_header("Transfer-Encoding", "chunked")
        else:
            handler.send_header("Content-Length", str(total))
        handler.end_headers()
        compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
        piece = b"<icestats>" + b"<server_id>Icecast</server_id>" * (CHUNK // 30)
        produced = 0
        try:
            while produced < total:
                data = piece[: total - produced]
                produced += len(data)
                if gzip:
                    data = compressor.compress(data)
                    if produced >= total:
                        data += compressor.flush()
                    if not data:
                        continue
                if chunked or gzip:
                    data = b"%x\r\n%s\r\n" % (len(data), data)
                handler.wfile.write(data)
                stream.sent += len(data)
            if chunked or gzip:
                handler.wfile.write(b"0\r\n\r\n")
        except OSError:  # BrokenPipeError, ConnectionResetError: the client hung up
            stream.client_left = True
        finally:
            handler.close_connection = True
            stream.finished.set()

    return route


def fixed(body: bytes, status: int = 200) -> Route:
    def route(handler: Handler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "text/html; charset=utf-8")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return route


def silent(handler: Handler) -> None:
    """Reads the request, then answers nothing until the test is over."""
    handler.owner.release.wait(30)
    handler.close_connection = True


def headers_only(handler: Handler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "text/xml")
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    handler.wfile.flush()
    handler.owner.release.wait(30)
    handler.close_connection = True


def dribble(handler: Handler) -> None:
    """A valid answer, one byte every 0.2 s: each read is quick, the whole takes minutes."""
    body = b'<?xml version="1.0"?>\n<icestats>' + b" " * 1000 + b"</icestats>"
    handler.send_response(200)
    handler.send_header("Content-Type", "text/xml")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    try:
        for byte in body:
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            if handler.owner.release.wait(0.2):
                break
    except OSError:
        pass
    handler.close_connection = True


def cut_short(handler: Handler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    handler.wfile.write(b"<icestats>")
    handler.close_connection = True


# -- helpers -------------------------------------------------------------------------------------


def run(scenario: Callable[[httpx.AsyncClient], Awaitable[T]], timeout: float = 10) -> T:
    async def main() -> T:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            return await scenario(client)

    return asyncio.run(main())


def icecast_source(url: str, timeout: float = 10) -> SourceConfig:
    return SourceConfig.model_validate(
        {"name": "radio", "kind": "icecast", "url": url, "password": "hackme", "timeout": timeout}
    )


def describe(config: SourceConfig) -> None:
    """IcecastPoller.describe() with the HTTP client audimeter run builds for the source."""

    async def main() -> None:
        async with source_client(config) as client:
            await IcecastPoller(config, client).describe()

    asyncio.run(main())


def finished(server: Server) -> Stream:
    [stream] = server.streams
    assert stream.finished.wait(10), "the server was still sending 10 s after the error"
    return stream


# -- the size cap --------------------------------------------------------------------------------

CAP = 1024 * 1024


@pytest.mark.parametrize(
    "route",
    [streamed(), streamed(chunked=True), streamed(gzip=True)],
    ids=["content-length", "chunked", "gzip"],
)
def test_fetch_stops_reading_at_its_cap(
    serve: Callable[[dict[str, Route]], Server], route: Route
) -> None:
    server = serve({"/admin/stats": route})
    tracemalloc.start()
    try:
        with pytest.raises(FetchError) as caught:
            run(
                lambda client: fetch(
                    client, server.url + "/admin/stats", what="source radio", max_bytes=CAP
                )
            )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(caught.value) == f"source radio: response larger than {CAP} bytes, ignored"
    assert caught.value.status == 200
    stream = finished(server)
    assert stream.client_left
    assert stream.sent < 32 * CAP, "the client read far past its cap"
    assert peak < 16 * CAP, f"{peak} bytes allocated at the peak for a {CAP}-byte cap"


def test_fetch_default_cap_on_a_100_mb_answer(serve: Callable[[dict[str, Route]], Server]) -> None:
    server = serve({"/admin/stats": streamed()})
    tracemalloc.start()
    try:
        with pytest.raises(FetchError, match=f"response larger than {MAX_RESPONSE_BYTES} bytes"):
            run(lambda client: fetch(client, server.url + "/admin/stats", what="stats"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    stream = finished(server)
    assert stream.client_left
    assert MAX_RESPONSE_BYTES < stream.sent < HUNDRED_MB - 16 * CAP
    assert peak < HUNDRED_MB


def test_icecast_describe_on_a_100_mb_answer(serve: Callable[[dict[str, Route]], Server]) -> None:
    server = serve({"/admin/stats": streamed()})
    with pytest.raises(SourceError) as caught:
        describe(icecast_source(server.url))
    assert str(caught.value) == (
        f"source radio ({server.url}/admin/stats): response larger than "
        f"{MAX_RESPONSE_BYTES} bytes, ignored"
    )
    stream = finished(server)
    assert stream.client_left
    assert stream.sent < HUNDRED_MB - 16 * CAP


# -- answers that are not Icecast XML ------------------------------------------------------------


def test_icecast_describe_on_an_html_login_page(
    serve: Callable[[dict[str, Route]], Server],
) -> None:
    server = serve({"/admin/stats": fixed(LOGIN_PAGE)})
    with pytest.raises(SourceError) as caught:
        describe(icecast_source(server.url))
    message = str(caught.value)
    assert message.startswith(f"source radio ({server.url}/admin/stats): not Icecast XML (")
    assert message.endswith("; is this an Icecast server?")
    assert "hackme" not in message


def test_icecast_describe_on_a_login_redirect(serve: Callable[[dict[str, Route]], Server]) -> None:
    server = serve({"/admin/stats": fixed(LOGIN_PAGE, status=302)})
    with pytest.raises(FetchError) as caught:
        describe(icecast_source(server.url))
    assert caught.value.refused
    assert str(caught.value) == f"source radio ({server.url}/admin/stats): HTTP 302 Found"


def test_an_answer_cut_short_is_a_source_error(serve: Callable[[dict[str, Route]], Server]) -> None:
    server = serve({"/admin/stats": cut_short})
    with pytest.raises(SourceError, match=r"/admin/stats\): RemoteProtocolError$"):
        describe(icecast_source(server.url))


# -- answers that never come ---------------------------------------------------------------------


@pytest.mark.parametrize("route", [silent, headers_only], ids=["no answer", "no body"])
def test_no_answer_is_a_timeout_within_the_configured_timeout(
    serve: Callable[[dict[str, Route]], Server], route: Route
) -> None:
    server = serve({"/admin/stats": route})
    config = icecast_source(server.url, timeout=1)
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        describe(config)
    elapsed = time.monotonic() - started
    assert str(caught.value) == (
        f"source radio ({server.url}/admin/stats): did not answer within 1 s (the timeout)"
    )
    assert 0.9 <= elapsed < 2.5


@pytest.mark.parametrize("kind", ["icecast", "shoutcast1"])
def test_a_dribbled_answer_is_a_timeout_within_the_configured_timeout(
    serve: Callable[[dict[str, Route]], Server], kind: str
) -> None:
    """Each read is quick, the whole answer is not. DNAS 1 sends the password as pass= in the
    query, which the message must not show."""
    server = serve({"/admin/stats": dribble, "/admin.cgi": dribble})
    config = SourceConfig.model_validate(
        {"name": "radio", "kind": kind, "url": server.url, "password": "hackme", "timeout": 1}
    )

    async def main() -> None:
        async with source_client(config) as client:
            await asyncio.wait_for(make_poller(config, client).describe(), 3)

    started = time.monotonic()
    with pytest.raises(SourceError, match="timeout") as caught:
        asyncio.run(main())
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert message.startswith(f"source radio ({server.url}/admin")
    assert message.endswith("): did not answer within 1 s (the timeout)")
    assert "hackme" not in message
    assert "pass=" not in message
    assert 0.9 <= elapsed < 2.5
