"""Operating `audimeter run`: /metrics and the Grafana dashboard's queries, /healthz flipping with
Icecast and Matomo, and systemd's notify protocol, all against the real daemon and Icecast."""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.audimeter import AudimeterProcess, wait_for
from tests.support.icecast import IcecastServer, Listener, SourceClient, free_port
from tests.support.matomo import RecordingMatomo
from tests.support.prometheus import scrape

from .conftest import MOUNT
from .test_core import write_config

pytestmark = pytest.mark.icecast

DASHBOARD = Path(__file__).parents[2] / "contrib" / "grafana" / "audimeter.json"
OPERATIONS = Path(__file__).parents[2] / "docs" / "operations.md"
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__range": "1h",
    "$__interval": "1m",
    "$source": ".*",
}


def healthz(port: int) -> tuple[int, dict[str, object]]:
    """The status and JSON body of /healthz; (0, {}) while nothing listens yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)
    except urllib.error.URLError:
        return 0, {}


def healthy(port: int) -> bool:
    return healthz(port)[0] == 200


def problem(port: int, start: str) -> bool:
    status, body = healthz(port)
    problems = body.get("problems", [])
    assert isinstance(problems, list)
    return status == 503 and any(str(p).startswith(start) for p in problems)


def status_problems(config: Path) -> tuple[int, list[str]]:
    """`audimeter status --format json`: its exit status and the problems it names."""
    done = subprocess.run(
        [sys.executable, "-m", "audimeter", "status", "--config", str(config), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    problems: list[str] = json.loads(done.stdout)["problems"]
    return done.returncode, problems


def status_flags(config: Path, start: str) -> bool:
    code, problems = status_problems(config)
    return code == 1 and any(p.startswith(start) for p in problems)


def value(port: int, name: str, **labels: str) -> float:
    """The sum of the samples `name` with `labels`; -1 while nothing listens yet."""
    try:
        samples = scrape(port)
    except urllib.error.URLError:
        return -1
    return sum(
        v for key, v in samples.get(name, {}).items() if all(item in key for item in labels.items())
    )


def post_form(url: str, form: bytes, password: str) -> int:
    """Icecast's URL-authentication POST, as user `icecast`; the HTTP status."""
    return httpx.post(url, content=form, auth=("icecast", password), timeout=5).status_code


def dashboard_expressions() -> list[str]:
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, item in node.items():
                if key in ("expr", "definition") and isinstance(item, str):
                    found.append(item)
                else:
                    walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(DASHBOARD.read_text()))
    expressions = []
    for expr in found:
        for variable, replacement in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, replacement)
        # label_values(metric, label) is Grafana's, not PromQL: its metric is what counts.
        expressions.append(re.sub(r"label_values\((\w+), \w+\)", r"\1", expr))
    return expressions


@pytest.fixture
def metrics_config(tmp_path: Path, icecast: IcecastServer, matomo: RecordingMatomo) -> Path:
    extra = (
        f'[metrics]\nlisten = "127.0.0.1:{free_port()}"\n'
        "[health]\ndelivery_lag = 2\n"
        f'[webhook]\nlisten = "127.0.0.1:{free_port()}"\npassword = "hook"\n'
    )
    return write_config(
        tmp_path,
        icecast,
        matomo,
        extra,
        outage_grace=2,
        access_log=f'"{icecast.access_log_path}"',
    )


def metrics_port(config: Path) -> int:
    match = re.search(r'\[metrics\]\nlisten = "127.0.0.1:(\d+)"', config.read_text())
    assert match
    return int(match[1])


def test_every_metric_the_dashboard_queries_is_served(
    metrics_config: Path, icecast: IcecastServer, source: SourceClient
) -> None:
    port = metrics_port(metrics_config)
    with AudimeterProcess(metrics_config), Listener(icecast, MOUNT, bind="127.0.0.11"):
        with Listener(icecast, MOUNT, bind="127.0.0.12"):
            wait_for(
                lambda: value(port, "audimeter_listeners", mount=MOUNT) == 2, 15, "2 listeners"
            )
        wait_for(
            lambda: value(port, "audimeter_sessions_ended_total", mount=MOUNT, reason="left") == 1,
            15,
            "one session ended",
        )
        # The receiver's counts come from its own process.
        match = re.search(r'\[webhook\]\nlisten = "127.0.0.1:(\d+)"', metrics_config.read_text())
        assert match
        hook = f"http://127.0.0.1:{match[1]}/icecast/main"
        join = b"action=listener_add&client=900&mount=%2flive&ip=192%2e0%2e2%2e9&agent=x"
        for password, status in (("hook", 200), ("wrong", 401)):
            assert post_form(hook, join, password) == status
        for outcome in ("recorded", "refused"):
            wait_for(
                lambda: value(port, "audimeter_webhook_requests_total", outcome=outcome) == 1,  # noqa: B023
                5,
                f"one {outcome} URL-authentication request",
            )
        samples = scrape(port)
    assert samples["audimeter_sessions_started_total"] == {
        (("mount", MOUNT), ("source", "main")): 2.0
    }
    assert samples["audimeter_session_duration_seconds_count"] == {(("source", "main"),): 1.0}
    assert samples["audimeter_source_up"] == {(("source", "main"),): 1.0}
    assert samples["audimeter_build_info"] == {(("version", "0.1.0"),): 1.0}
    assert samples["audimeter_listening_seconds_total"][(("mount", MOUNT), ("source", "main"))] > 0
    assert samples["audimeter_output_delivered_events_total"][(("output", "matomo"),)] >= 3
    assert (
        samples["audimeter_access_log_lines_total"][(("outcome", "listener"), ("source", "main"))]
        == 1.0
    )

    expressions = dashboard_expressions()
    assert len(expressions) >= 15
    named = {name for expr in expressions for name in re.findall(r"\baudimeter_\w+", expr)}
    missing = sorted(name for name in named if name not in samples)
    assert not missing, f"the dashboard queries metrics /metrics does not serve: {missing}"
    assert {"audimeter_listeners", "audimeter_listening_seconds_total"} <= named
    # And the operations guide describes every metric served.
    guide = OPERATIONS.read_text()
    families = {re.sub(r"_(total|bucket|count|sum|created)$", "", name) for name in samples}
    undocumented = sorted(
        f for f in families if f.startswith("audimeter_") and f"`{f}" not in guide
    )
    assert not undocumented


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus)")
def test_the_dashboard_queries_are_promql(tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query{i}", "expr": expr}
                    for i, expr in enumerate(dashboard_expressions())
                ],
            }
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    checked = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_healthz_and_status_flip_with_matomo_and_with_icecast(
    metrics_config: Path, icecast: IcecastServer, source: SourceClient, matomo: RecordingMatomo
) -> None:
    """/healthz (live) and `audimeter status`'s exit status (from the state file) agree."""
    port = metrics_port(metrics_config)
    with AudimeterProcess(metrics_config):
        wait_for(lambda: healthy(port), 15, "healthy")
        assert healthz(port) == (200, {"status": "ok"})
        wait_for(lambda: status_problems(metrics_config) == (0, []), 15, "status healthy")

        matomo.fail_with(503)
        with Listener(icecast, MOUNT, bind="127.0.0.13"):
            wait_for(lambda: problem(port, "output matomo: oldest pending event is"), 15, "503")
            assert value(port, "audimeter_output_oldest_pending_age_seconds") > 2
            wait_for(
                lambda: status_flags(metrics_config, "output matomo: oldest pending event is"),
                15,
                "status unhealthy with Matomo down",
            )
            matomo.recover()
            wait_for(lambda: healthy(port), 20, "healthy after Matomo recovered")
            wait_for(lambda: status_problems(metrics_config) == (0, []), 15, "status healthy")
        assert value(port, "audimeter_output_errors_total", output="matomo") >= 1

        icecast.stop()
        wait_for(
            lambda: problem(port, "source main: no good poll for"), 15, "503 with Icecast down"
        )
        _, body = healthz(port)
        assert "unreachable" in json.dumps(body)
        assert value(port, "audimeter_source_up") == 0
        assert value(port, "audimeter_poll_errors_total", kind="unreachable") >= 1
        wait_for(
            lambda: status_flags(metrics_config, "source main: no good poll for"),
            15,
            "status unhealthy with Icecast down",
        )
        icecast.start()
        wait_for(lambda: healthy(port), 15, "healthy after Icecast returned")
        wait_for(lambda: status_problems(metrics_config) == (0, []), 15, "status healthy again")


def test_a_taken_metrics_port_is_one_line(tmp_path: Path, icecast: IcecastServer) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, icecast, None, f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
        audimeter = AudimeterProcess(config).start()
        wait_for(lambda: not audimeter.running, 15, "audimeter to exit")
        code, _ = audimeter.stop()
    assert code == 1
    assert f"metrics: cannot listen on 127.0.0.1:{port}: another program listens there" in (
        audimeter.logs()
    )
    assert "Traceback" not in audimeter.logs()


# -- systemd ------------------------------------------------------------------------------------


def receive(sock: socket.socket, seconds: float) -> list[tuple[float, dict[str, str]]]:
    """The notifications of the first `seconds` after READY=1 (which must come within 20 s)."""
    messages: list[tuple[float, dict[str, str]]] = []
    until = time.monotonic() + 20
    while (left := until - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(4096).decode()
        except TimeoutError:
            break
        fields = dict(line.split("=", 1) for line in data.split("\n"))
        messages.append((time.monotonic(), fields))
        if fields.get("READY") == "1":
            until = time.monotonic() + seconds
    return messages


def queued(sock: socket.socket) -> list[dict[str, str]]:
    """The notifications waiting in the socket."""
    sock.setblocking(False)
    found = []
    with contextlib.suppress(BlockingIOError):
        while True:
            found.append(dict(line.split("=", 1) for line in sock.recv(4096).decode().split("\n")))
    return found


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, dict[str, str]]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    yield sock, {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"}
    sock.close()


def test_systemd_ready_after_the_first_poll_then_watchdog_and_status(
    tmp_path: Path,
    icecast: IcecastServer,
    source: SourceClient,
    notify_socket: tuple[socket.socket, dict[str, str]],
) -> None:
    sock, env = notify_socket
    config = write_config(tmp_path, icecast, None)
    with Listener(icecast, MOUNT, bind="127.0.0.14"):
        audimeter = AudimeterProcess(config, env=env).start()
        messages = receive(sock, 4)
        code, _ = audimeter.stop()
        stopping = queued(sock)
    assert code == 0
    readies = [(at, m) for at, m in messages if m.get("READY") == "1"]
    assert len(readies) == 1, messages
    ready_at, ready = readies[0]
    # The first poll is done (and found the listener) before READY.
    assert ready["STATUS"] == "1/1 source(s) answering, 1 listener(s), 1 event(s) pending delivery"
    pings = [at for at, m in messages if m.get("WATCHDOG") == "1" and at >= ready_at]
    # Every second (half of WATCHDOG_USEC) at the first main-loop round after it is due: the
    # loop goes round at least once a second.
    assert len(pings) >= 3, messages
    assert max(b - a for a, b in itertools.pairwise(pings)) < 2.0
    assert {"STOPPING": "1", "STATUS": "stopping"} in stopping


def test_systemd_ready_also_when_the_first_poll_fails(
    tmp_path: Path, notify_socket: tuple[socket.socket, dict[str, str]]
) -> None:
    sock, env = notify_socket
    config = tmp_path / "audimeter.toml"
    config.write_text(
        f'[state]\npath = "{tmp_path / "state.db"}"\n[[sources]]\nname = "main"\n'
        f'kind = "icecast"\nurl = "http://127.0.0.1:{free_port()}"\npassword = "x"\n'
        "poll_interval = 0.5\n"
    )
    with AudimeterProcess(config, env=env) as audimeter:
        messages = receive(sock, 0)
        audimeter.send(signal.SIGTERM)
    ready = [m["STATUS"] for _, m in messages if m.get("READY") == "1"]
    assert ready == ["0/1 source(s) answering, 0 listener(s), 0 event(s) pending delivery"], (
        messages
    )
