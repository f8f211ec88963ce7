"""Matomo sink throughput against a local recording server.

Target: the Matomo sink delivers at least 5,000 tracking requests per second.

A recording stand-in for Matomo's bulk tracking API runs in its own process on 127.0.0.1 and
counts what it receives (bench_import.py and others use it too: its tallies, a checksum of the
requests, its own CPU). For each batch size, a fresh state file gets an outbox of 50,000
keep-alive requests made by `RequestMapper`; `MatomoSink.flush_once()` then runs until the
outbox is empty, and the time that takes gives the rate.

    .venv/bin/python benchmarks/bench_matomo_sink.py [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import random
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, cast

import httpx
from bench_poll import USER_AGENTS, random_ip

from audimeter.events import Session, SessionKeptAlive
from audimeter.matomo.mapping import RequestMapper, SiteMapping
from audimeter.matomo.sink import MatomoSink
from audimeter.store import Store

TOKEN = "0123456789abcdef0123456789abcdef"
TARGET_PER_SECOND = 5_000.0
BATCH_SIZES = (100, 200, 1000)
LISTENERS = 5_000
SOURCE = "bench"
INSTANCE = "2026-11-26T12:44:04+0000"
T0 = 1_795_000_000
DRAIN_LIMIT = 45.0
"""Seconds a run may take; what is left in the outbox then makes the run fail."""


# -- the recording Matomo (runs in a child process) ------------------------------------------


_MASK = (1 << 64) - 1


def checksum(requests: Iterable[str], start: int = 0) -> int:
    """An order-free checksum of `requests` (added to `start`): the sum of their 64-bit BLAKE2b
    digests, modulo 2**64. Equal counts and checksums tell that every request arrived exactly
    once, without the recorder keeping any."""
    total = start
    blake2b = hashlib.blake2b
    for request in requests:
        total += int.from_bytes(blake2b(request.encode(), digest_size=8).digest())
    return total & _MASK


@dataclass(slots=True)
class Tally:
    requests: int = 0
    posts: int = 0
    refused: int = 0
    """Requests that were not query strings: Matomo would count them as invalid."""
    checksum: int = 0
    """`checksum` of the requests taken."""
    cpu: float = 0.0
    """CPU seconds the recorder's process has used, reported apart from what it measures."""


class RecordingMatomoServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, token: str) -> None:
        super().__init__(("127.0.0.1", 0), MatomoHandler)
        self.token = token
        self.tally = Tally()
        self.lock = threading.Lock()


class MatomoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the web server in front of a real Matomo
    # Headers and body leave in separate writes: with Nagle's algorithm on, the body would wait
    # for the client's delayed ACK (40 ms on Linux) and that wait would be all we measure.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up waiting: no one to answer

    def do_POST(self) -> None:
        server = cast(RecordingMatomoServer, self.server)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if len(body) < length:
            # The client went away mid-request (a daemon stopped while sending): it sends the
            # batch again later, and there is no one to answer now.
            self.close_connection = True
            return
        if self.path.partition("?")[0] != "/matomo.php":
            self._answer(404, {"status": "error", "message": "not found"})
            return
        try:
            data = json.loads(body)
            requests = data["requests"]
            token = data.get("token_auth")
        except (ValueError, KeyError, TypeError):
            self._answer(400, {"status": "error", "message": "not bulk tracking JSON"})
            return
        if token != server.token:
            self._answer(401, {"status": "error", "message": "token_auth refused"})
            return
        good = [r for r in requests if isinstance(r, str) and r.startswith("?")]
        invalid = len(requests) - len(good)
        total = checksum(good)
        with server.lock:
            server.tally.requests += len(requests)
            server.tally.posts += 1
            server.tally.refused += invalid
            server.tally.checksum = (server.tally.checksum + total) & _MASK
        self._answer(200, {"status": "success", "tracked": len(requests) - invalid, "invalid": 0})

    def do_GET(self) -> None:
        server = cast(RecordingMatomoServer, self.server)
        if self.path != "/bench/tally":
            self._answer(404, {"status": "error", "message": "not found"})
            return
        with server.lock:
            tally = server.tally
            self._answer(
                200,
                {
                    "requests": tally.requests,
                    "posts": tally.posts,
                    "refused": tally.refused,
                    "checksum": tally.checksum,
                    "cpu": time.process_time(),
                },
            )


def serve_matomo(conn: Connection, token: str) -> None:
    """Child process: serve until terminated; the port goes back through `conn`."""
    server = RecordingMatomoServer(token)
    conn.send(server.server_address[1])
    conn.close()
    server.serve_forever(poll_interval=0.5)


def start_server(target: Any, *args: object) -> tuple[BaseProcess, int]:
    """Start `target(conn, *args)` in a fresh process and wait for the port it listens on."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=target, args=(child, *args), daemon=True)
    process.start()
    child.close()
    if not parent.poll(30):
        process.terminate()
        raise RuntimeError(f"{getattr(target, '__name__', target)} did not start")
    port = int(parent.recv())
    parent.close()
    return process, port


def stop_server(process: BaseProcess) -> None:
    process.terminate()
    process.join(5)
    if process.is_alive():
        process.kill()
        process.join()


def matomo_tally(base_url: str) -> Tally:
    answer = httpx.get(base_url + "/bench/tally", timeout=10).json()
    return Tally(
        int(answer["requests"]),
        int(answer["posts"]),
        int(answer["refused"]),
        int(answer["checksum"]),
        float(answer["cpu"]),
    )


# -- the benchmark ---------------------------------------------------------------------------


def keepalive_requests(mapper: RequestMapper, count: int, rng: random.Random) -> list[str]:
    """`count` query strings: keep-alives of `LISTENERS` sessions, in time order."""
    weights = [w for w, _ in USER_AGENTS]
    agents = rng.choices([ua for _, ua in USER_AGENTS], weights=weights, k=LISTENERS)
    sessions = [
        Session(
            source=SOURCE,
            instance=INSTANCE,
            mount=rng.choice(("/live.mp3", "/live.aac", "/classic.mp3", "/jazz.ogg")),
            client_id=str(1000 + i),
            ip=random_ip(rng),
            user_agent=agent,
            referrer="",
            started_at=T0 - rng.randrange(4 * 3600),
            slot=0,
        )
        for i, agent in enumerate(agents)
    ]
    out: list[str] = []
    tick = 0
    while len(out) < count:
        tick += 1
        for session in sessions[: count - len(out)]:
            at = session.started_at + 120 * tick
            out.append(mapper.query_string(SessionKeptAlive(session, at, at - 120)))
    return out


def fill_outbox(path: Path, count: int, rng: random.Random) -> Store:
    store = Store.open(path)
    mapper = RequestMapper(
        store.salt(),
        {SOURCE: SiteMapping(site_id=1, stream_base_url="https://radio.example")},
        default_site_id=1,
    )
    store.queue_requests(keepalive_requests(mapper, count, rng))
    return store


async def drain(store: Store, url: str, batch_size: int) -> tuple[float, float, int]:
    """Run the sink until the outbox is empty: wall seconds, CPU seconds, failed batches."""
    async with httpx.AsyncClient(timeout=30) as client:
        sink = MatomoSink(store, client, tracking_url=url, token_auth=TOKEN, batch_size=batch_size)
        started = time.perf_counter()
        cpu = time.process_time()
        deadline = started + DRAIN_LIMIT
        while time.perf_counter() < deadline and await sink.flush_once():
            pass
        return (
            time.perf_counter() - started,
            time.process_time() - cpu,
            sink.stats.failures,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    count: int = args.requests
    rng = random.Random(args.seed)

    process, port = start_server(serve_matomo, TOKEN)
    base_url = f"http://127.0.0.1:{port}"
    try:
        with tempfile.TemporaryDirectory(prefix="audimeter-bench-") as tmp:
            for batch_size in BATCH_SIZES:
                store = fill_outbox(Path(tmp) / f"state-{batch_size}.db", count, rng)
                try:
                    queued = store.matomo_pending()
                    payload = sum(len(r.payload or "") for r in store.journal_batch(0, 1000)) / 1000
                    before = matomo_tally(base_url)
                    elapsed, cpu, failures = asyncio.run(
                        drain(store, base_url + "/matomo.php", batch_size)
                    )
                    after = matomo_tally(base_url)
                    left = store.matomo_pending()
                finally:
                    store.close()
                received = after.requests - before.requests
                rate = (queued - left) / elapsed
                print(
                    f"batch_size {batch_size}: {queued} requests (~{payload:.0f} chars each) in "
                    f"{elapsed:.2f} s = {rate:.0f} requests/s; {after.posts - before.posts} "
                    f"POSTs; sink CPU {cpu:.2f} s ({cpu / queued * 1e6:.0f} us/request); "
                    f"{failures} failed batches; {left} left in the outbox"
                )
                counted = received == count and left == 0 and after.refused == before.refused
                print(
                    f"  server counted {received} requests "
                    f"({'exactly' if received == count else 'NOT'} {count})"
                )
                ok = counted and rate >= TARGET_PER_SECOND
                print(
                    f"{'PASS' if ok else 'FAIL'}: batch_size {batch_size}, {rate:.0f} requests/s "
                    f"(target >= {TARGET_PER_SECOND:.0f}, all {count} delivered: {counted})"
                )
    finally:
        stop_server(process)


if __name__ == "__main__":
    main()
