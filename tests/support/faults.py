"""Fault injection for end-to-end tests: what a test saw, what Matomo got, and the tools between.

* :func:`check_delivery` is the oracle of the fault suite. Given the listening sessions a test
  created (:class:`SeenListener`: address, player, when the test connected and disconnected it)
  and the tracking requests Matomo received, it asserts that nothing was lost and nothing started
  or ended twice, that each visitor's requests arrived in time order, and returns how many
  requests arrived more than once (:class:`DeliveryReport`), for the test to bound.
* :class:`Audience` drives listeners on a SHOUTcast DNAS 2 emulator and records them as the
  test saw them.
* :class:`PortGate` is a loopback TCP port in front of a server that can be shut (connections
  refused) and opened again on the same port: a server that is down, then back.
* :class:`Daemon` is `audimeter run` as a child process, optionally under RLIMIT_FSIZE (writes
  past the limit fail, also for root), and :func:`traceback_free` checks how it stopped.
* :func:`state_rows`, :func:`dead_letters` read the state file the way an operator would, with
  SQLite, next to a running daemon; :func:`listings` counts the polls an emulator answered.
* :func:`write_config` writes an audimeter configuration for one source and a Matomo.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import selectors
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import parse_qsl

from audimeter.matomo.mapping import RequestMapper
from audimeter.store import Store
from tests.support.audimeter import AudimeterProcess
from tests.support.matomo import DEFAULT_TOKEN, TrackedRequest
from tests.support.shoutcast import DNAS2_ADMIN_PASSWORD, Dnas2Emulator

__all__ = [
    "MATOMO_BACKLOG",
    "PLAYERS",
    "Audience",
    "Daemon",
    "DeliveryReport",
    "PortGate",
    "SeenListener",
    "check_delivery",
    "dead_letters",
    "listings",
    "params_of",
    "state_rows",
    "traceback_free",
    "write_config",
]

LOOPBACK = "127.0.0.1"
PLAYERS = (
    "VLC/3.0.18 LibVLC/3.0.18",
    "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
    "Winamp/5.9",
    "iTunes/12.12 (Windows; Microsoft Windows 10 x64)",
)
"""Players of the listeners: none of them is left out by audimeter's default filters."""

# -- what the test saw -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeenListener:
    """One listening session as the test created it (wall-clock times of the test process)."""

    ip: str
    user_agent: str
    connected: float
    """When the test connected it (or, for a session that must start where another ended, that
    moment)."""
    left: float | None = None
    """When the test disconnected it; None while it is still connected (no end is expected)."""


@dataclass(slots=True)
class _Entry:
    uid: int
    ip: str
    user_agent: str
    connected: float
    left: float | None = None


class Audience:
    """Listeners on one stream of a DNAS 2 emulator, remembered as the test saw them."""

    def __init__(self, dnas: Dnas2Emulator, sid: int = 1, *, first_ip: int = 10) -> None:
        self._dnas = dnas
        self._sid = sid
        self._next = first_ip
        self._entries: list[_Entry] = []
        self._lock = threading.Lock()

    def join(self, user_agent: str, ip: str | None = None) -> int:
        """Connect a new listener (from a fresh loopback address unless `ip`); returns its uid."""
        with self._lock:
            if ip is None:
                n = self._next
                self._next += 1
                ip = f"127.0.{n // 250}.{n % 250 + 2}"
            connected = time.time()
            uid = self._dnas.add_listener(self._sid, ip, user_agent)
            self._entries.append(_Entry(uid, ip, user_agent, connected))
        return uid

    def leave(self, uid: int) -> None:
        with self._lock:
            entry = next(e for e in self._entries if e.uid == uid and e.left is None)
            self._dnas.remove_listener(uid)
            entry.left = time.time()

    def leave_all(self) -> None:
        for uid in self.connected():
            self.leave(uid)

    def connected(self) -> list[int]:
        with self._lock:
            return [e.uid for e in self._entries if e.left is None]

    def who(self, uid: int) -> tuple[str, str]:
        """The address and player of a listener."""
        with self._lock:
            entry = next(e for e in self._entries if e.uid == uid)
            return entry.ip, entry.user_agent

    @property
    def seen(self) -> list[SeenListener]:
        with self._lock:
            return [SeenListener(e.ip, e.user_agent, e.connected, e.left) for e in self._entries]


def listings(dnas: Dnas2Emulator) -> int:
    """How many listener listings the emulator has answered: a clock-free count of polls."""
    return sum(1 for r in dnas.requests if r.query.get("page") == "3")


# -- the oracle --------------------------------------------------------------------------------


Params = Mapping[str, str]


def params_of(requests: Iterable[TrackedRequest | Params]) -> list[dict[str, str]]:
    """Parameters of recorded requests (or of query strings' parameter mappings), in order."""
    return [dict(r.params) if isinstance(r, TrackedRequest) else dict(r) for r in requests]


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What `check_delivery` counted; it has already asserted that nothing was lost."""

    listeners: int
    sessions: int
    received: int
    """Requests received, repeats included."""
    distinct: int
    duplicates: int
    """Requests received again with exactly the same parameters (received - distinct)."""
    duplicated: int
    """Distinct requests that were received more than once."""

    def line(self) -> str:
        return (
            f"{self.listeners} listener session(s), {self.received} requests received, "
            f"{self.distinct} distinct, lost 0, {self.duplicates} duplicate(s) "
            f"of {self.duplicated} request(s)"
        )


@dataclass(slots=True)
class _Session:
    cid: str
    start: dict[str, str]
    events: list[dict[str, str]] = field(default_factory=list)
    end: dict[str, str] | None = None

    @property
    def started(self) -> int:
        return int(self.start["cdt"])

    def end_at(self) -> int | None:
        """The last moment the listener was seen, as the end event encodes it."""
        if self.end is None:
            return None
        return self.started + sum(int(e["e_v"]) for e in self.events)


def _key(params: Params) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(params.items()))


def check_delivery(
    listeners: Sequence[SeenListener],
    requests: Iterable[TrackedRequest | Params],
    *,
    start_slack: float = 2.5,
    end_slack: float = 3.0,
    check_times: bool = True,
) -> DeliveryReport:
    """Assert that the requests Matomo received account for exactly the listeners the test saw.

    For every listener: exactly one start (`new_visit=1`) near `connected` (within
    `start_slack` s) and, if it left, exactly one end, at a last sighting no later than `left`
    and at most `end_slack` s before it (a poll interval, plus any time audimeter could not see
    it). Nothing is lost in between: each event's `e_v` continues the chain from the start, so a
    keep-alive that never arrived breaks it, and no `e_v` is negative. Requests of one visitor
    (`cid`) arrive in non-decreasing `cdt` order and its sessions never overlap. Requests
    received again with identical parameters (a batch sent again) are counted, not failed: the
    checks above apply to the first copy of each; the count is returned.
    `check_times=False` leaves out the comparison with the test's clock (a clock step).
    """
    received = params_of(requests)
    seen_keys: set[tuple[tuple[str, str], ...]] = set()
    repeated: set[tuple[tuple[str, str], ...]] = set()
    distinct: list[dict[str, str]] = []
    for params in received:
        key = _key(params)
        if key in seen_keys:
            repeated.add(key)
            continue
        seen_keys.add(key)
        distinct.append(params)

    problems: list[str] = []
    by_cid: dict[str, list[_Session]] = {}
    last_cdt: dict[str, int] = {}
    for params in distinct:
        cid = params.get("cid", "")
        cdt = int(params["cdt"])
        if cdt < last_cdt.get(cid, cdt):
            problems.append(f"visitor {cid}: cdt {cdt} arrived after cdt {last_cdt[cid]}")
        last_cdt[cid] = max(cdt, last_cdt.get(cid, cdt))
        sessions = by_cid.setdefault(cid, [])
        if params.get("new_visit") == "1":
            if sessions and sessions[-1].end is None:
                problems.append(
                    f"visitor {cid} ({params.get('cip')}): a second start at {cdt} before the "
                    f"end of the session started at {sessions[-1].started}"
                )
            sessions.append(_Session(cid, params))
            continue
        if not sessions or sessions[-1].end is not None:
            problems.append(
                f"visitor {cid} ({params.get('cip')}): {params.get('e_a')} at {cdt} "
                "outside any session (its start was lost, or it came after the end)"
            )
            continue
        session = sessions[-1]
        session.events.append(params)
        if params.get("e_a") == "end":
            session.end = params

    for cid, sessions in by_cid.items():
        for session in sessions:
            problems += _chain_problems(session)
        for before, after in itertools.pairwise(sessions):
            end = before.end_at()
            if end is not None and after.started < end:
                problems.append(
                    f"visitor {cid}: a session starts at {after.started}, before the previous "
                    f"one ended at {end}"
                )

    # Pair sessions with listeners: per address and player, in start order.
    expected: dict[tuple[str, str], list[SeenListener]] = {}
    for listener in listeners:
        expected.setdefault((listener.ip, listener.user_agent), []).append(listener)
    actual: dict[tuple[str, str], list[_Session]] = {}
    for sessions in by_cid.values():
        for session in sessions:
            who = (session.start.get("cip", ""), session.start.get("ua", ""))
            actual.setdefault(who, []).append(session)
    for who in sorted(set(expected) | set(actual)):
        wanted = sorted(expected.get(who, []), key=lambda s: s.connected)
        got = sorted(actual.get(who, []), key=lambda s: s.started)
        if len(wanted) != len(got):
            problems.append(
                f"{who[0]} ({who[1]}): {len(wanted)} listening session(s) created, "
                f"{len(got)} started in Matomo (starts at {[s.started for s in got]}, "
                f"connected at {[round(w.connected, 1) for w in wanted]})"
            )
            continue
        for listener, session in zip(wanted, got, strict=True):
            problems += _match_problems(listener, session, start_slack, end_slack, check_times)

    assert not problems, "delivery check failed:\n  " + "\n  ".join(problems)
    duplicates = len(received) - len(distinct)
    return DeliveryReport(
        listeners=len(listeners),
        sessions=sum(len(s) for s in by_cid.values()),
        received=len(received),
        distinct=len(distinct),
        duplicates=duplicates,
        duplicated=len(repeated),
    )


def _chain_problems(session: _Session) -> list[str]:
    """Every event continues the session: same visitor data, `e_v` adding up, `cdt` = at - 1."""
    problems: list[str] = []
    start = session.started
    who = f"visitor {session.cid} ({session.start.get('cip')}) session at {start}"
    identity = ("idsite", "cip", "ua", "url")
    at = start
    for event in session.events:
        if any(event.get(k) != session.start.get(k) for k in identity):
            problems.append(f"{who}: an event with other visitor data: {event}")
        if event.get("e_c") != "Listening" or event.get("e_a") not in ("keep-alive", "end"):
            problems.append(f"{who}: not a keep-alive or end: {event}")
            continue
        e_v = int(event["e_v"])
        if e_v < 0:
            problems.append(f"{who}: negative e_v {e_v}")
        at += e_v
        if int(event["cdt"]) != max(start, at - 1):
            problems.append(
                f"{who}: {event['e_a']} at cdt {event['cdt']} does not follow on from the "
                f"previous request (expected {max(start, at - 1)}): a request was lost"
            )
            at = int(event["cdt"]) + 1
    return problems


def _match_problems(
    listener: SeenListener,
    session: _Session,
    start_slack: float,
    end_slack: float,
    check_times: bool,
) -> list[str]:
    who = f"{listener.ip} ({listener.user_agent}) connected at {listener.connected:.1f}"
    problems: list[str] = []
    start = session.started
    if check_times and abs(start - listener.connected) > start_slack:
        problems.append(f"{who}: started at {start}")
    end = session.end_at()
    if listener.left is None:
        if end is not None:
            problems.append(f"{who}: still connected, yet ended at {end}")
        return problems
    if end is None:
        problems.append(f"{who}: left at {listener.left:.1f}, but its end never arrived")
    elif check_times and not listener.left - end_slack <= end <= listener.left + 1:
        problems.append(f"{who}: left at {listener.left:.1f}, ended at {end}")
    return problems


# -- a port that can be shut ------------------------------------------------------------------


class _Link:
    """One client connection relayed to the target, until shut once its exchange is over."""

    def __init__(self, client: socket.socket, target: tuple[str, int]) -> None:
        self.client = client
        self.target = target
        self.shut = threading.Event()
        self.thread = threading.Thread(target=self._run, name="port-gate-link", daemon=True)

    def _run(self) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            self.client.close()
            return
        awaiting = False  # a request went up and its answer has not come back yet
        quiet_since = time.monotonic()
        with self.client, upstream, selectors.DefaultSelector() as sel:
            sel.register(self.client, selectors.EVENT_READ, upstream)
            sel.register(upstream, selectors.EVENT_READ, self.client)
            while True:
                now = time.monotonic()
                if self.shut.is_set() and (
                    (not awaiting and now - quiet_since > 0.1) or now - quiet_since > 10
                ):
                    return
                for key, _ in sel.select(0.02):
                    source = key.fileobj
                    assert isinstance(source, socket.socket)
                    try:
                        data = source.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    if source is self.client:
                        if self.shut.is_set() and not awaiting:
                            return  # a new request after the shutdown: refused by hanging up
                        awaiting = True
                    else:
                        awaiting = False
                    try:
                        key.data.sendall(data)
                    except OSError:
                        return
                    quiet_since = time.monotonic()


class PortGate:
    """A loopback port relaying to `target`, which can be shut and opened again on the same port.

    Shut, nothing listens on the port: connections are refused, as from a stopped server. An
    exchange in progress when the gate shuts is completed first, the way a server that stops
    answers the requests it has begun (a request cut off midway is what `Matomo.delay` and a
    client timeout test). Idle kept-alive connections are closed at once.
    """

    def __init__(self, target_port: int, port: int = 0) -> None:
        self._target = (LOOPBACK, target_port)
        self._port = port
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        self._links: list[_Link] = []
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._port}/"

    @property
    def is_open(self) -> bool:
        return self._listener is not None

    def open(self) -> None:
        if self._listener is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, self._port))
        sock.listen(64)
        sock.settimeout(0.05)
        self._port = sock.getsockname()[1]
        self._listener = sock
        self._accepting = threading.Thread(
            target=self._accept, args=(sock,), name="port-gate", daemon=True
        )
        self._accepting.start()

    def shut(self, timeout: float = 10.0) -> None:
        """Stop listening; finish exchanges in progress, close every connection, then return."""
        sock, self._listener = self._listener, None
        if sock is not None:
            sock.close()
        if self._accepting is not None:
            self._accepting.join(timeout=5)
            self._accepting = None
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.shut.set()
        for link in links:
            link.thread.join(timeout=timeout)

    def _accept(self, sock: socket.socket) -> None:
        while self._listener is sock:
            try:
                client, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            link = _Link(client, self._target)
            with self._lock:
                self._links.append(link)
            link.thread.start()

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shut(timeout=2)


# -- the state file ---------------------------------------------------------------------------


def state_rows(path: Path, sql: str, args: Sequence[object] = ()) -> list[tuple[object, ...]]:
    """Rows of a query on the state file, read next to a running daemon (WAL lets it)."""
    if not path.exists():
        return []
    db = sqlite3.connect(path, timeout=5)
    try:
        return list(db.execute(sql, tuple(args)))
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        db.close()


MATOMO_BACKLOG = (
    "SELECT (SELECT count(*) FROM journal"
    " WHERE seq > (SELECT seq FROM cursors WHERE output='matomo'))"
    " + (SELECT count(*) FROM parked)"
)
"""SQL: the events Matomo has not taken yet (the outbox of earlier versions)."""


def dead_letters(
    path: Path, mapper: RequestMapper | None = None
) -> list[tuple[dict[str, str], str]]:
    """The dead-letter table: each refused event's request parameters (as `mapper`, by default
    one of site 1, maps it) and Matomo's reason, by seq."""
    mapper = mapper or RequestMapper("", {}, 1)
    store = Store.open(path)
    try:
        letters = store.dead_letters()
    finally:
        store.close()
    return [
        (
            mapper.params(d.row.event, d.row.visitor_id)
            if d.row.event is not None
            else dict(parse_qsl((d.row.payload or "").lstrip("?"), keep_blank_values=True)),
            d.reason,
        )
        for d in letters
    ]


def traceback_free(stderr: str) -> str:
    """The last log line of a daemon that stopped on an error; asserts there is no traceback."""
    assert "Traceback" not in stderr, f"a traceback instead of a one-line error:\n{stderr}"
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "no error message at all"
    return lines[-1]


# -- the daemon -------------------------------------------------------------------------------

# Runs the rest of argv with RLIMIT_FSIZE set to argv[1] bytes: writes beyond fail with EFBIG
# (Python ignores SIGXFSZ), also for root. A Python launcher instead of `preexec_fn`, which is
# unsafe in a test process full of server threads.
_FSIZE_LAUNCHER = (
    "import os, resource, sys; n = int(sys.argv[1]); "
    "resource.setrlimit(resource.RLIMIT_FSIZE, (n, n)); os.execv(sys.argv[2], sys.argv[2:])"
)


class Daemon(AudimeterProcess):
    """`audimeter run`, optionally with a limit on the size of files it writes."""

    def __init__(
        self, config: Path, env: dict[str, str] | None = None, *, file_size_limit: int | None = None
    ) -> None:
        super().__init__(config, env)
        self.file_size_limit = file_size_limit

    def start(self) -> Self:
        command = [sys.executable, "-m", "audimeter", "run", "--config", str(self.config)]
        if self.file_size_limit is not None:
            command = [sys.executable, "-c", _FSIZE_LAUNCHER, str(self.file_size_limit), *command]
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self._proc = subprocess.Popen(command, stdout=out, stderr=err, env=self.env)
        return self

    def exited(self, timeout: float) -> int:
        """Wait for the daemon to exit on its own; its exit status."""
        assert self._proc is not None
        try:
            code = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"audimeter still running after {timeout:g} s") from None
        self._proc = None
        return code

    def log_since(self, offset: int) -> str:
        return self.logs()[offset:]


# -- configuration ----------------------------------------------------------------------------


def write_config(
    directory: Path,
    *,
    source_url: str,
    matomo_url: str,
    state: Path | None = None,
    poll_interval: float = 0.5,
    source_timeout: float = 2.0,
    outage_grace: int = 30,
    keepalive_interval: int = 4,
    visit_length: int = 10,
    batch_size: int = 5,
    matomo_timeout: float = 5.0,
    kind: str = "shoutcast2",
    username: str = "admin",
    password: str = DNAS2_ADMIN_PASSWORD,
    name: str = "audimeter.toml",
    jsonl: Path | None = None,
) -> Path:
    """A configuration for one source (SHOUTcast 2 by default), a Matomo and, with `jsonl`, a
    JSON-lines file beside it; returns its path."""
    lines = [
        "[state]",
        f'path = "{state or directory / "state" / "audimeter.db"}"',
        "[matomo]",
        f'url = "{matomo_url}"',
        "site_id = 1",
        f'token_auth = "{DEFAULT_TOKEN}"',
        f"keepalive_interval = {keepalive_interval}",
        f"visit_length = {visit_length}",
        f"batch_size = {batch_size}",
        f"timeout = {matomo_timeout}",
        *(["[jsonl]", f'path = "{jsonl}"'] if jsonl is not None else []),
        "[[sources]]",
        'name = "sc"',
        f'kind = "{kind}"',
        f'url = "{source_url}"',
        f'username = "{username}"',
        f'password = "{password}"',
        f"poll_interval = {poll_interval}",
        f"timeout = {source_timeout}",
        f"outage_grace = {outage_grace}",
    ]
    path = directory / name
    path.write_text("\n".join(lines) + "\n")
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)  # audimeter warns about secrets others may read
    return path
