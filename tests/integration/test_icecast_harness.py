"""Smoke test of tests.support.icecast against a real Icecast 2.4 server."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.icecast import (
    IcecastServer,
    Listener,
    SourceClient,
    http_get,
    listclients,
    listmounts,
    server_stats,
)

if shutil.which("icecast2") is None:
    pytest.skip(
        "icecast2 binary not found (install the Debian package icecast2)",
        allow_module_level=True,
    )

pytestmark = pytest.mark.icecast

MOUNT = "/live.mp3"
AGENTS = {
    "127.0.0.11": "HarnessPlayer/1.0 (listener eleven)",
    "127.0.0.12": "HarnessPlayer/2.0 (listener twelve)",
    "127.0.0.13": "VLC/3.0.18 LibVLC/3.0.18",
}


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def clients_by_ip(server: IcecastServer) -> dict[str, dict[str, str]]:
    return {client["IP"]: client for client in listclients(server, MOUNT)}


def test_listeners_disconnects_and_restart(tmp_path: Path) -> None:
    listeners: list[Listener] = []

    def connect(ip: str, referer: str | None = None, query: str | None = None) -> Listener:
        agent = AGENTS.get(ip, "HarnessPlayer/9.9 (late)")
        listener = Listener(server, MOUNT, bind=ip, user_agent=agent, referer=referer, query=query)
        listeners.append(listener)
        listener.connect()
        return listener

    with IcecastServer(tmp_path / "icecast") as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        source = SourceClient(server, MOUNT, name="Harness smoke test")
        try:
            source.start()
            assert listmounts(server) == [MOUNT]

            # Three listeners; the first one a second earlier than the others.
            t0 = time.monotonic()
            first = connect("127.0.0.11", referer="https://example.org/player", query="x=1")
            time.sleep(1.1)
            connect("127.0.0.12")
            connect("127.0.0.13")
            for listener in listeners:
                assert listener.headers.get("content-type") == "audio/mpeg"
                assert listener.wait_for_bytes(4096), listener.bind

            clients = clients_by_ip(server)
            elapsed = time.monotonic() - t0
            assert set(clients) == set(AGENTS)
            assert {ip: c["UserAgent"] for ip, c in clients.items()} == AGENTS
            connected = {ip: int(c["Connected"]) for ip, c in clients.items()}
            assert connected["127.0.0.11"] >= 1
            assert all(0 <= value <= elapsed + 1 for value in connected.values())
            assert connected["127.0.0.12"] <= connected["127.0.0.11"]
            ids = {ip: int(c["ID"]) for ip, c in clients.items()}
            assert len(set(ids.values())) == 3

            # A closed listener disappears from listclients and reaches the access log.
            listeners[1].close()
            assert wait_until(lambda: set(clients_by_ip(server)) == {"127.0.0.11", "127.0.0.13"})
            assert wait_until(
                lambda: (
                    server.access_log_path.exists()
                    and f'"{AGENTS["127.0.0.12"]}"' in server.access_log_path.read_text()
                )
            )
            line = next(
                entry
                for entry in server.access_log_path.read_text().splitlines()
                if entry.startswith("127.0.0.12 ")
            )
            assert f"GET {MOUNT} HTTP/1.0" in line

            # Drive Icecast's connection counter up, so a reset is visible.
            for _ in range(30):
                http_get(server, "/status-json.xsl")
            connect("127.0.0.14")
            late_id = int(clients_by_ip(server)["127.0.0.14"]["ID"])
            assert late_id > 30

            start_before = server_stats(server)["server_start_iso8601"]
            server.restart()
            assert wait_until(lambda: not first.reading), "old listener not cut off"
            assert wait_until(lambda: not source.streaming), "old source not cut off"
            assert listmounts(server) == []

            source.reconnect()
            connect("127.0.0.11")
            clients = clients_by_ip(server)
            assert set(clients) == {"127.0.0.11"}
            new_id = int(clients["127.0.0.11"]["ID"])
            assert new_id < 20
            assert new_id < late_id
            assert server_stats(server)["server_start_iso8601"] != start_before
        finally:
            for listener in listeners:
                listener.close()
            source.stop()
    assert not server.running


def test_a_crash_while_starting_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """icecast2 that dies of SIGSEGV on its first start (as Debian's build now and then does on
    a loaded machine) is started again; one that fails otherwise is not."""
    marker = tmp_path / "crashed-once"
    wrapper = tmp_path / "icecast2-crashing-once"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ ! -e "{marker}" ]; then touch "{marker}"; kill -SEGV $$; fi\n'
        f'exec {shutil.which("icecast2")} "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setattr("tests.support.icecast.ICECAST_BINARY", str(wrapper))
    with IcecastServer(workdir=tmp_path / "crashing") as server:
        assert marker.exists()
        assert b"icestats" in http_get(server, "/status-json.xsl")

    failing = tmp_path / "icecast2-failing"
    failing.write_text(f'#!/bin/sh\necho started >> "{tmp_path}/starts"\nexit 3\n')
    failing.chmod(0o755)
    monkeypatch.setattr("tests.support.icecast.ICECAST_BINARY", str(failing))
    with pytest.raises(RuntimeError, match="exited with status 3"):
        IcecastServer(workdir=tmp_path / "failing").start()
    assert (tmp_path / "starts").read_text() == "started\n"
