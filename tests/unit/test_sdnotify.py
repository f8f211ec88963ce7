"""systemd's notify protocol over a real AF_UNIX datagram socket, path and abstract."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from audimeter.sdnotify import STATUS_INTERVAL, Heartbeat, Notifier


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    sock.settimeout(2)
    yield str(path), sock
    sock.close()


def fields(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


def nothing_waiting(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(4096)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(2)
    return False


def test_no_notify_socket_no_notifier() -> None:
    assert Notifier.from_environment({}) is None
    assert Notifier.from_environment({"NOTIFY_SOCKET": "relative"}) is None


def test_watchdog_half_the_interval_and_only_for_this_process() -> None:
    env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000"}
    notifier = Notifier.from_environment(env)
    assert notifier is not None
    assert notifier.watchdog == 15.0
    mine = Notifier.from_environment({**env, "WATCHDOG_PID": str(os.getpid())})
    assert mine is not None
    assert mine.watchdog == 15.0
    other = Notifier.from_environment({**env, "WATCHDOG_PID": "1"})
    assert other is not None
    assert other.watchdog is None


def test_abstract_namespace_socket() -> None:
    name = f"audimeter-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "@" + name})
        assert notifier is not None
        notifier.send(READY="1", STATUS="ok")
        assert fields(sock) == {"READY": "1", "STATUS": "ok"}
        notifier.close()
    finally:
        sock.close()


def test_heartbeat_ready_once_watchdog_and_status(receiver: tuple[str, socket.socket]) -> None:
    path, sock = receiver
    now = [100.0]
    ready = [False]
    notifier = Notifier(path, watchdog=10.0)
    beat = Heartbeat(notifier, lambda: ready[0], lambda: f"at {now[0]:g}", clock=lambda: now[0])
    beat()
    assert fields(sock) == {"WATCHDOG": "1", "STATUS": "at 100"}
    now[0] += 1
    beat()
    assert nothing_waiting(sock)
    ready[0] = True
    now[0] += 1
    beat()
    assert fields(sock) == {"READY": "1", "STATUS": "at 102"}
    now[0] += STATUS_INTERVAL
    beat()
    assert fields(sock) == {"STATUS": "at 107"}
    now[0] += 10
    beat()
    assert fields(sock) == {"WATCHDOG": "1", "STATUS": "at 117"}
    beat.stopping()
    assert fields(sock) == {"STOPPING": "1", "STATUS": "stopping"}
    notifier.close()


def test_a_vanished_socket_is_logged_once_and_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(str(tmp_path / "nobody"))
    notifier.send(READY="1")
    notifier.send(WATCHDOG="1")
    assert [r.message for r in caplog.records if "systemd" in r.message] == [
        f"systemd: cannot notify {tmp_path / 'nobody'} ([Errno 2] No such file or directory)"
    ]
    notifier.close()
