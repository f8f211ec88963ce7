"""The URL-authentication receiver over real HTTP, and behind a real Icecast 2.4."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import io
import logging
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from audimeter.config import WebhookConfig, parse_config
from audimeter.inbox import Inbox, inbox_path
from audimeter.observations import ListenerJoined, ListenerLeft
from audimeter.runner import run
from audimeter.webhook import WebhookError, WebhookReceiver, decode, decode_form
from audimeter.webhookprocess import ReceiverCounts, ReceiverProcess
from tests.support.fixtures import ICECAST_25, url_auth_requests
from tests.support.icecast import IcecastServer, Listener, SourceClient, free_port, listclients

USERNAME = "icecast"
PASSWORD = "s3cret-Webhook-pw"
NOW = 1_800_000_000
SOURCE = "main"
ADD_FORM = (
    "action=listener_add&server=127%2e0%2e0%2e1&port=8000&client=31"
    "&mount=%2flive%2emp3%3futm_source%3dweb&user=&pass=&ip=192%2e0%2e2%2e7"
    "&agent=VLC%2f3%2e0%2e18&ClientHeader.referer=https%3a%2f%2fradio%2eexample%2eorg%2f"
)
ADD_OBSERVATION = ListenerJoined(
    source=SOURCE,
    at=NOW,
    mount="/live.mp3",
    client_id="31",
    ip="192.0.2.7",
    user_agent="VLC/3.0.18",
    referrer="https://radio.example.org/",
    query="utm_source=web",
)
FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


GOOD_AUTH = basic(USERNAME, PASSWORD)


def webhook_config(max_body: int = 65_536, port: int = 0) -> WebhookConfig:
    """Port 0 (any free port) is for tests only: the configuration file refuses it."""
    return WebhookConfig.model_construct(
        listen=f"127.0.0.1:{port}",
        username=USERNAME,
        password=SecretStr(PASSWORD),
        max_body=max_body,
    )


class Hook:
    """A receiver (answering from its own thread) and the URL Icecast posts to."""

    def __init__(self, receiver: WebhookReceiver) -> None:
        self.receiver = receiver

    def start(self) -> None:
        self.receiver.start()

    def stop(self) -> None:
        self.receiver.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.receiver.port}/icecast/{SOURCE}"


class Recording:
    """Stands in for the inbox file: its `append` is `record`."""

    def __init__(self, record: Callable[..., None]) -> None:
        self.append = record


class Notified:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Inbox]:
    """The receiver's connection to the inbox file next to the state file."""
    store = Inbox.open(inbox_path(tmp_path / "state.db"))
    yield store
    store.close()


@pytest.fixture
def reader(tmp_path: Path, store: Inbox) -> Iterator[Inbox]:
    """A second connection to the inbox file, as the daemon's would be."""
    reader = Inbox.open(inbox_path(tmp_path / "state.db"))
    yield reader
    reader.close()


@pytest.fixture
def notified() -> Notified:
    return Notified()


@pytest.fixture
def make_receiver(store: Inbox, notified: Notified) -> Iterator[Callable[..., Hook]]:
    started: list[Hook] = []

    def make(config: WebhookConfig | None = None, target: Inbox | None = None) -> Hook:
        receiver = WebhookReceiver(
            config or webhook_config(),
            [SOURCE, "other"],
            (target or store).append,
            notified,
            lambda: NOW,
        )
        hook = Hook(receiver)
        started.append(hook)
        hook.start()
        return hook

    yield make
    for hook in started:
        hook.stop()


@pytest.fixture
def receiver(make_receiver: Callable[..., Hook]) -> Hook:
    return make_receiver()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5, trust_env=False) as client:
        yield client


def inbox(store: Inbox) -> list[ListenerJoined | ListenerLeft]:
    return [decode(payload) for _, payload in store.after(0, 1000)]


def assert_accepted(response: httpx.Response) -> None:
    assert response.status_code == 200
    assert response.headers["icecast-auth-user"] == "1"
    assert response.headers["x-icecast-auth-result"] == "ok"
    assert len(response.content) < 16


def assert_refused(response: httpx.Response, status: int) -> None:
    assert response.status_code == status
    assert "icecast-auth-user" not in response.headers
    assert "x-icecast-auth-result" not in response.headers


# -- over HTTP ------------------------------------------------------------------------------------


def test_an_accepted_join_is_in_the_inbox_when_icecast_gets_the_answer(
    receiver: Hook, client: httpx.Client, reader: Inbox, notified: Notified
) -> None:
    assert receiver.receiver.port != 0
    response = client.post(
        receiver.url, content=ADD_FORM, headers={**FORM_HEADERS, "Authorization": GOOD_AUTH}
    )
    assert_accepted(response)
    assert inbox(reader) == [ADD_OBSERVATION]
    assert notified.count == 1
    assert (receiver.receiver.received, receiver.receiver.recorded) == (1, 1)


def test_a_leave_and_a_mount_event(
    receiver: Hook, client: httpx.Client, reader: Inbox, notified: Notified
) -> None:
    headers = {**FORM_HEADERS, "Authorization": GOOD_AUTH}
    mount_add = "action=mount_add&mount=%2flive%2emp3&server=127%2e0%2e0%2e1&port=8000"
    assert_accepted(client.post(receiver.url, content=mount_add, headers=headers))
    assert inbox(reader) == []
    leave = (
        "action=listener_remove&server=127%2e0%2e0%2e1&port=8000&client=31&mount=%2flive%2emp3"
        "&user=&pass=&duration=42&ip=192%2e0%2e2%2e7&agent=VLC%2f3%2e0%2e18"
    )
    assert_accepted(client.post(receiver.url, content=leave, headers=headers))
    assert inbox(reader) == [
        ListenerLeft(SOURCE, NOW, "/live.mp3", 42, "31", "192.0.2.7", "VLC/3.0.18")
    ]
    assert notified.count == 1


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        basic(USERNAME, "wrong"),
        basic("someone", PASSWORD),
        basic(USERNAME, PASSWORD + "x"),
        basic("", ""),  # what Icecast sends without the username and password options
        f"Bearer {PASSWORD}",
        "Basic not!base64",
        "Basic",
    ],
    ids=["none", "password", "username", "longer", "empty", "bearer", "garbage", "no-token"],
)
def test_wrong_or_missing_credentials_are_refused(
    receiver: Hook,
    client: httpx.Client,
    reader: Inbox,
    notified: Notified,
    authorization: str | None,
) -> None:
    headers = dict(FORM_HEADERS)
    if authorization is not None:
        headers["Authorization"] = authorization
    for url in (receiver.url, receiver.url.replace(SOURCE, "unknown")):
        response = client.post(url, content=ADD_FORM, headers=headers)
        assert_refused(response, 401)
        assert response.headers["www-authenticate"].startswith("Basic ")
    assert inbox(reader) == []
    assert notified.count == 0
    assert receiver.receiver.received == 0


def test_an_unknown_source_is_not_found(
    receiver: Hook, client: httpx.Client, reader: Inbox
) -> None:
    response = client.post(
        receiver.url.replace(SOURCE, "nope"),
        content=ADD_FORM,
        headers={**FORM_HEADERS, "Authorization": GOOD_AUTH},
    )
    assert_refused(response, 404)
    assert inbox(reader) == []


def test_other_methods_and_paths(receiver: Hook, client: httpx.Client) -> None:
    headers = {"Authorization": GOOD_AUTH}
    assert_refused(client.get(receiver.url, headers=headers), 405)
    base = receiver.url.removesuffix(f"/icecast/{SOURCE}")
    assert_refused(client.post(base + "/listener_add", content=ADD_FORM, headers=headers), 404)


def test_an_oversized_body_is_refused(
    make_receiver: Callable[..., Hook], client: httpx.Client, reader: Inbox
) -> None:
    receiver = make_receiver(webhook_config(max_body=1024))
    headers = {**FORM_HEADERS, "Authorization": GOOD_AUTH}
    padded = ADD_FORM + "&ClientHeader.x-pad=" + "x" * 1024
    assert_refused(client.post(receiver.url, content=padded, headers=headers), 413)
    assert inbox(reader) == []
    assert_accepted(client.post(receiver.url, content=ADD_FORM, headers=headers))


def test_source_authentication_is_never_approved(
    receiver: Hook, client: httpx.Client, reader: Inbox
) -> None:
    form = "action=stream_auth&mount=%2flive&ip=127%2e0%2e0%2e1&server=x&port=8000&user=&pass="
    response = client.post(
        receiver.url, content=form, headers={**FORM_HEADERS, "Authorization": GOOD_AUTH}
    )
    assert_refused(response, 403)
    assert inbox(reader) == []


def test_answers_are_fast(
    receiver: Hook,
    client: httpx.Client,
    reader: Inbox,
    capsys: pytest.CaptureFixture[str],
) -> None:
    headers = {**FORM_HEADERS, "Authorization": GOOD_AUTH}
    client.post(receiver.url, content=ADD_FORM, headers=headers)  # connection set up
    latencies = []
    for _ in range(100):
        started = time.perf_counter()
        response = client.post(receiver.url, content=ADD_FORM, headers=headers)
        latencies.append((time.perf_counter() - started) * 1000)
        assert_accepted(response)
    median = statistics.median(latencies)
    slowest = max(latencies)
    with capsys.disabled():
        print(f"\nwebhook latency over 100 requests: median {median:.2f} ms, max {slowest:.2f} ms")
    assert median < 10
    assert slowest < 50
    assert len(reader.after(0, 1000)) == 101


def test_forms_that_come_during_a_slow_write_share_the_next_commit(
    make_receiver: Callable[..., Hook], store: Inbox, reader: Inbox, notified: Notified
) -> None:
    """A flush to disk that takes long (the disk busy with the daemon's commits) holds the
    requests that came meanwhile for one more commit, not one each; the answers wait for it."""
    slow = threading.Event()
    calls: list[tuple[str, ...]] = []

    def record(*payloads: str) -> None:
        calls.append(payloads)
        if len(calls) == 1:
            assert slow.wait(5)
        store.append(*payloads)

    receiver = make_receiver(target=Recording(record))
    headers = {**FORM_HEADERS, "Authorization": GOOD_AUTH}
    forms = [ADD_FORM.replace("client=31", f"client={n}") for n in range(1, 7)]
    answers: list[float] = []

    def post(form: str) -> None:
        with httpx.Client(timeout=10, trust_env=False) as client:
            assert_accepted(client.post(receiver.url, content=form, headers=headers))
        answers.append(time.monotonic())

    posts = [threading.Thread(target=post, args=(forms[0],))]
    posts[0].start()
    wait_until(lambda: len(calls) == 1)
    posts += [threading.Thread(target=post, args=(form,)) for form in forms[1:]]
    for thread in posts[1:]:
        thread.start()
    wait_until(lambda: receiver.receiver.received == len(forms))
    time.sleep(0.2)
    assert not answers  # none answered before its notice is on disk
    released = time.monotonic()
    slow.set()
    for thread in posts:
        thread.join(10)
    assert len(answers) == len(forms)
    assert min(answers) >= released
    assert [len(call) for call in calls] == [1, len(forms) - 1]
    assert sorted(o.client_id for o in inbox(reader)) == [str(n) for n in range(1, 7)]
    assert receiver.receiver.recorded == notified.count == len(forms)


def test_a_store_that_cannot_be_written_still_lets_listeners_in(
    make_receiver: Callable[..., Hook],
    tmp_path: Path,
    client: httpx.Client,
    notified: Notified,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = Inbox.open(tmp_path / "broken.inbox")
    broken.close()
    receiver = make_receiver(target=broken)
    caplog.set_level(logging.DEBUG)
    response = client.post(
        receiver.url, content=ADD_FORM, headers={**FORM_HEADERS, "Authorization": GOOD_AUTH}
    )
    assert_accepted(response)
    assert (receiver.receiver.received, receiver.receiver.recorded) == (1, 0)
    assert receiver.receiver.failed == 1
    assert notified.count == 0
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "not recorded" in errors[0].getMessage()
    assert PASSWORD not in caplog.text
    assert GOOD_AUTH.split()[1] not in caplog.text


def test_a_malformed_form_still_lets_the_listener_in(
    receiver: Hook,
    client: httpx.Client,
    reader: Inbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    form = "action=listener_remove&client=31&mount=%2flive%2emp3&user=u&pass=listener-pw"
    for body in (form, "\xff\xfe not a form", ""):
        response = client.post(
            receiver.url, content=body, headers={**FORM_HEADERS, "Authorization": GOOD_AUTH}
        )
        assert_accepted(response)
    assert inbox(reader) == []
    assert receiver.receiver.failed == 1  # the others are unknown actions: nothing to record
    assert "without duration" in caplog.text
    assert "listener-pw" not in caplog.text
    assert PASSWORD not in caplog.text


def state_files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.glob("state.db*"))}


def test_icecast_25_admin_requests_are_let_in_and_leave_no_trace(
    receiver: Hook,
    client: httpx.Client,
    reader: Inbox,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Icecast 2.5 asks about each of audimeter's polls of a URL-auth mount, with the admin's
    password: every such request is let in (or the poll would fail), nothing of it is written
    to the state file or logged; the listeners' requests of the same run are recorded."""
    caplog.set_level(logging.DEBUG)
    headers = {**FORM_HEADERS, "Authorization": GOOD_AUTH}
    requests = url_auth_requests(ICECAST_25 / "url_auth_requests.log")
    admin = [r for r in requests if decode_form(r.body.encode())["mount"].startswith("/admin/")]
    assert len(admin) == 48
    before = state_files(tmp_path)
    for request in admin:
        assert_accepted(client.post(receiver.url, content=request.body, headers=headers))
    assert state_files(tmp_path) == before
    assert (receiver.receiver.received, receiver.receiver.recorded) == (48, 0)
    assert receiver.receiver.failed == 0
    assert "admpw-25" not in caplog.text
    assert "admpw" not in caplog.text

    for request in requests:
        if request not in admin:
            assert_accepted(client.post(receiver.url, content=request.body, headers=headers))
    assert [(o.client_id, type(o).__name__) for o in inbox(reader)] == [
        ("117", "ListenerJoined"),
        ("117", "ListenerLeft"),
        ("234", "ListenerJoined"),
        ("234", "ListenerLeft"),
    ]


@contextlib.contextmanager
def busy_port() -> Iterator[int]:
    """A loopback port that something else listens on."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield busy.getsockname()[1]


def test_a_busy_port_is_reported(store: Inbox) -> None:
    with busy_port() as port:
        config = WebhookConfig(listen=f"127.0.0.1:{port}", password=SecretStr(PASSWORD))
        receiver = WebhookReceiver(config, [SOURCE], store.append, lambda: None)
        with pytest.raises(WebhookError, match=f"127.0.0.1:{port}"):
            receiver.start()
        assert not [t for t in threading.enumerate() if t.name == "audimeter-webhook"]


def test_the_daemon_answers_icecast_while_its_main_loop_is_blocked(
    tmp_path: Path, client: httpx.Client, reader: Inbox
) -> None:
    """`audimeter run` answers from the receiver's own thread: a main loop busy for seconds
    (a long commit, a huge listing parsed) delays neither the answer nor the durable record;
    the notice is taken from the inbox once the loop is free again."""
    port = free_port()
    config = parse_config(
        {
            "state": {"path": str(tmp_path / "state.db")},
            "webhook": {
                "listen": f"127.0.0.1:{port}",
                "username": USERNAME,
                "password": PASSWORD,
            },
            # Nothing listens there: the poller only logs that it cannot reach the server.
            "sources": [
                {
                    "name": SOURCE,
                    "kind": "icecast",
                    "url": f"http://127.0.0.1:{free_port()}",
                    "password": "hackme",
                }
            ],
        }
    )
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    daemon = threading.Thread(
        target=loop.run_until_complete, args=(run(config, stop, io.StringIO()),)
    )
    daemon.start()
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "the receiver did not start"
            time.sleep(0.05)
        blocked = threading.Event()

        def block() -> None:
            blocked.set()
            time.sleep(3.0)  # the daemon's loop does nothing else meanwhile

        loop.call_soon_threadsafe(block)
        assert blocked.wait(5)
        started = time.monotonic()
        response = client.post(
            f"http://127.0.0.1:{port}/icecast/{SOURCE}",
            content=ADD_FORM,
            headers={**FORM_HEADERS, "Authorization": GOOD_AUTH},
        )
        answered = time.monotonic() - started
        assert_accepted(response)
        assert answered < 1.0
        assert [o.client_id for o in inbox(reader)] == ["31"]  # on disk when answered
        assert time.monotonic() - started < 3.0  # the loop was still blocked all along
        assert wait_for_empty_inbox(reader, timeout=10)  # the daemon woke and took it
    finally:
        loop.call_soon_threadsafe(stop.set)
        daemon.join(15)
        loop.close()
    assert not daemon.is_alive()


def wait_for_empty_inbox(store: Inbox, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while store.after(0, 1):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- behind a real Icecast 2.4 --------------------------------------------------------------------

HOOK_MOUNT = "/hook.mp3"
REFERER = "https://radio.example.org/player"
QUERY = "utm_source=x&utm_campaign=spring"
PLAYER = "TestPlayer/2.0 (webhook)"


def url_auth_mount(url: str, mount: str = HOOK_MOUNT) -> str:
    """The mount configuration docs/exact-ends.md recommends, pointing at `url`."""
    return f"""<mount type="normal">
    <mount-name>{mount}</mount-name>
    <authentication type="url">
      <option name="listener_add" value="{url}"/>
      <option name="listener_remove" value="{url}"/>
      <option name="username" value="{USERNAME}"/>
      <option name="password" value="{PASSWORD}"/>
      <option name="headers" value="referer,x-forwarded-for,user-agent"/>
      <option name="header_prefix" value="ClientHeader."/>
      <option name="mount_add" value="{url}"/>
      <option name="mount_remove" value="{url}"/>
    </authentication>
  </mount>"""


@pytest.fixture
def hook_receiver(make_receiver: Callable[..., Hook]) -> Hook:
    """A receiver on a fixed port, so that it can stop and start again where Icecast posts."""
    return make_receiver(webhook_config(port=free_port()))


@pytest.fixture
def icecast_with_hook(tmp_path: Path, hook_receiver: Hook) -> Iterator[IcecastServer]:
    if shutil.which("icecast2") is None:
        pytest.skip("icecast2 is not installed (Debian package icecast2)")
    mounts = [url_auth_mount(hook_receiver.url)]
    with IcecastServer(tmp_path / "icecast", extra_mounts=mounts) as server:
        yield server


def wait_for_rows(store: Inbox, count: int, timeout: float = 10.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        rows = inbox(store)
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


@pytest.mark.icecast
def test_icecast_reports_the_exact_join_and_leave(
    icecast_with_hook: IcecastServer, hook_receiver: Hook, reader: Inbox
) -> None:
    with SourceClient(icecast_with_hook, HOOK_MOUNT):
        assert inbox(reader) == []  # mount_add: acknowledged, nothing to record
        listener = Listener(
            icecast_with_hook,
            HOOK_MOUNT,
            bind="127.0.0.23",
            user_agent=PLAYER,
            referer=REFERER,
            query=QUERY,
        )
        with listener:
            # Icecast answers the listener only after the receiver answered Icecast.
            assert listener.wait_for_bytes(1)
            (client_id,) = [c["ID"] for c in listclients(icecast_with_hook, HOOK_MOUNT)]
            joined = ListenerJoined(
                source=SOURCE,
                at=NOW,
                mount=HOOK_MOUNT,
                client_id=client_id,
                ip="127.0.0.23",
                user_agent=PLAYER,
                referrer=REFERER,
                query=QUERY,
            )
            assert inbox(reader) == [joined]
            time.sleep(2.1)
        rows = wait_for_rows(reader, 2)
    assert len(rows) == 2
    leave = rows[1]
    assert isinstance(leave, ListenerLeft)
    assert 2 <= leave.duration <= 4
    # Icecast forwards headers with listener_add only: the leave has the URI but no referrer.
    assert leave == ListenerLeft(
        source=SOURCE,
        at=NOW,
        mount=HOOK_MOUNT,
        duration=leave.duration,
        client_id=client_id,
        ip="127.0.0.23",
        user_agent=PLAYER,
        query=QUERY,
    )


@pytest.mark.icecast
def test_icecast_refuses_new_listeners_while_the_receiver_is_down(
    icecast_with_hook: IcecastServer, hook_receiver: Hook, reader: Inbox
) -> None:
    """The known risk of URL authentication: audimeter down means the mount takes no listener."""
    with SourceClient(icecast_with_hook, HOOK_MOUNT):
        with Listener(icecast_with_hook, HOOK_MOUNT, bind="127.0.0.24", user_agent=PLAYER):
            pass
        assert len(wait_for_rows(reader, 2)) == 2
        hook_receiver.stop()
        started = time.monotonic()
        refused = Listener(icecast_with_hook, HOOK_MOUNT, bind="127.0.0.25", user_agent=PLAYER)
        with pytest.raises(ConnectionError, match="401"):
            refused.connect()
        assert time.monotonic() - started < 3  # at once, not after Icecast's 15 s timeout
        hook_receiver.start()
        with Listener(icecast_with_hook, HOOK_MOUNT, bind="127.0.0.26", user_agent=PLAYER):
            pass
    rows = wait_for_rows(reader, 4)
    assert [(type(row).__name__, row.ip) for row in rows] == [
        ("ListenerJoined", "127.0.0.24"),
        ("ListenerLeft", "127.0.0.24"),
        ("ListenerJoined", "127.0.0.26"),
        ("ListenerLeft", "127.0.0.26"),
    ]


# -- in a process of its own, as `audimeter run` runs it ------------------------------------------


WOKEN = threading.Semaphore(0)


@pytest.fixture
def process(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[ReceiverProcess]:
    """The receiver's process; it releases `WOKEN` for each wake of the daemon."""
    caplog.set_level(logging.DEBUG)  # before the start: the child takes the level then
    while WOKEN.acquire(blocking=False):
        pass
    Inbox.open(inbox_path(tmp_path / "state.db")).close()  # the daemon makes the file first
    receiver = ReceiverProcess(
        webhook_config(), [SOURCE], inbox_path(tmp_path / "state.db"), WOKEN.release
    )
    receiver.start()
    # The child's log lines of its start are the daemon's before `start` returns (the banner).
    assert "receiving Icecast URL authentication" in caplog.text
    yield receiver
    receiver.stop()


def wait_until(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.02)


def test_the_process_records_counts_wakes_and_logs_in_the_daemon(
    process: ReceiverProcess,
    tmp_path: Path,
    client: httpx.Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"http://127.0.0.1:{process.port}/icecast/{SOURCE}"
    headers = {**FORM_HEADERS, "Authorization": GOOD_AUTH}
    assert_accepted(client.post(url, content=ADD_FORM, headers=headers))
    reader = Inbox.open(inbox_path(tmp_path / "state.db"))
    (notice,) = [decode(payload) for _, payload in reader.after(0, 10)]
    reader.close()
    assert notice == dataclasses.replace(ADD_OBSERVATION, at=notice.at)  # the child's clock
    assert WOKEN.acquire(timeout=5)
    assert process.counts == ReceiverCounts(received=1, recorded=1)
    malformed = "action=listener_remove&client=31&mount=%2flive%2emp3&user=u&pass=listener-pw"
    assert_accepted(client.post(url, content=malformed, headers=headers))
    assert_refused(client.post(url, content=ADD_FORM, headers=FORM_HEADERS), 401)
    wait_until(lambda: process.counts == ReceiverCounts(2, 1, 1, 1))  # no wake: within 1 s
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [(r.name, "without duration" in r.getMessage()) for r in errors] == [
        ("audimeter.webhook", True)
    ]
    assert "listener-pw" not in caplog.text
    assert PASSWORD not in caplog.text


def test_the_process_outlives_signals_and_ends_with_stop(
    process: ReceiverProcess, client: httpx.Client
) -> None:
    """Ctrl-C and systemd's SIGTERM reach every process of the group; the daemon stops the
    receiver itself, after its own loop."""
    pid, port = process.pid, process.port
    assert pid is not None
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        os.kill(pid, signum)
    url = f"http://127.0.0.1:{port}/icecast/{SOURCE}"
    headers = {**FORM_HEADERS, "Authorization": GOOD_AUTH}
    assert_accepted(client.post(url, content=ADD_FORM, headers=headers))
    process.stop()
    process.check()  # a stop is no failure
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_a_process_that_dies_is_a_failure_of_the_daemon(process: ReceiverProcess) -> None:
    assert process.pid is not None
    os.kill(process.pid, signal.SIGKILL)
    assert WOKEN.acquire(timeout=5)
    with pytest.raises(WebhookError, match="receiver's process ended unexpectedly"):
        process.check()


def test_the_process_ends_with_the_daemon(tmp_path: Path) -> None:
    """A daemon killed (SIGKILL, a crash) leaves no receiver behind to hold its port."""
    port = free_port()
    script = (
        "import sys, pathlib, pydantic\n"
        "from audimeter.config import WebhookConfig\n"
        "from audimeter.webhookprocess import ReceiverProcess\n"
        f"config = WebhookConfig(listen='127.0.0.1:{port}', password=pydantic.SecretStr('x'))\n"
        f"receiver = ReceiverProcess(config, ['main'], pathlib.Path({str(tmp_path / 'i')!r}),"
        " lambda: None)\n"
        "receiver.start()\n"
        "print(receiver.pid, flush=True)\n"
        "sys.stdin.read()\n"
    )
    daemon = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert daemon.stdout is not None
    child = int(daemon.stdout.readline())
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) == 0
    daemon.kill()
    daemon.wait()

    def gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child, os.WNOHANG)  # not ours: reaped by init
        return False

    wait_until(gone)


def test_a_busy_port_stops_the_process_start(tmp_path: Path) -> None:
    with busy_port() as port:
        config = WebhookConfig(listen=f"127.0.0.1:{port}", password=SecretStr(PASSWORD))
        receiver = ReceiverProcess(config, [SOURCE], inbox_path(tmp_path / "s"), lambda: None)
        with pytest.raises(WebhookError, match=f"cannot listen on 127.0.0.1:{port}: another"):
            receiver.start()
    assert receiver.pid is None
