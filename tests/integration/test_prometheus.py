"""A real Prometheus (Debian's `prometheus`) scrapes `audimeter run` following a real Icecast
with listeners on two mounts: what its HTTP API answers matches the listeners and sessions."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.support.audimeter import AudimeterProcess, wait_for
from tests.support.icecast import IcecastServer, Listener, SourceClient, free_port
from tests.support.prometheus import Prometheus

from .conftest import MOUNT
from .test_core import write_config

pytestmark = pytest.mark.icecast

OTHER = "/other.mp3"


def sessions(stdout: str, event: str) -> Counter[str]:
    """Sessions per mount with an `event` in audimeter's JSON lines."""
    records = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return Counter(r["mount"] for r in records if r["event"] == event)


def test_prometheus_sees_the_listeners_per_mount_and_the_sessions(
    tmp_path: Path, icecast: IcecastServer, source: SourceClient
) -> None:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed (Debian package prometheus; CI installs it)")
    port = free_port()
    config = write_config(tmp_path, icecast, None, f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
    with (
        SourceClient(icecast, OTHER, name="Other"),
        AudimeterProcess(config) as audimeter,
        Prometheus(tmp_path / "prometheus", port) as prometheus,
        contextlib.ExitStack() as stack,
    ):
        live = [
            stack.enter_context(Listener(icecast, MOUNT, bind=f"127.0.0.{11 + i}"))
            for i in range(3)
        ]
        other = [
            stack.enter_context(Listener(icecast, OTHER, bind=f"127.0.0.{14 + i}"))
            for i in range(2)
        ]
        wanted = {MOUNT: 3.0, OTHER: 2.0}
        wait_for(
            lambda: prometheus.values("sum by (mount) (audimeter_listeners)", "mount") == wanted,
            20,
            "Prometheus to see 3 and 2 listeners",
        )
        live[0].close()
        other[1].close()
        wanted = {MOUNT: 2.0, OTHER: 1.0}
        wait_for(
            lambda: prometheus.values("sum by (mount) (audimeter_listeners)", "mount") == wanted,
            20,
            "Prometheus to see 2 and 1 listeners",
        )
        ended = "sum by (mount) (audimeter_sessions_ended_total)"
        wait_for(
            lambda: prometheus.values(ended, "mount") == {MOUNT: 1.0, OTHER: 1.0},
            20,
            "Prometheus to see one ended session per mount",
        )
        started = prometheus.values("sum by (mount) (audimeter_sessions_started_total)", "mount")
        reasons = prometheus.values("sum by (reason) (audimeter_sessions_ended_total)", "reason")
        up = prometheus.values("audimeter_source_up", "source")
        listened = prometheus.values("sum by (mount) (audimeter_listening_seconds_total)", "mount")
        stdout = audimeter.output()
    assert started == {MOUNT: 3.0, OTHER: 2.0}
    assert reasons == {"left": 2.0}
    assert up == {"main": 1.0}
    # The counters match the sessions audimeter wrote out.
    assert sessions(stdout, "start") == Counter({MOUNT: 3, OTHER: 2})
    assert sessions(stdout, "end") == Counter({MOUNT: 1, OTHER: 1})
    assert listened[MOUNT] > listened[OTHER] > 0
