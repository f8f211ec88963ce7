"""Live scenarios on the real Matomo: real Icecast, real listeners, the real `audimeter run`.

One run of about 90 s plays every scenario at once, on three Icecast servers: a short listener, one
longer than `visit_length` (on a second site), a NAT pair, an exact end from the access log, an
Icecast restart under a listener, audimeter stopped by SIGTERM and by SIGKILL and restarted under
a listener, and Matomo down while listeners come and go. audimeter posts to the recording stand-in
as a tee in front of the real Matomo, so each scenario is read back twice: from Matomo's own API
(what a station sees) and from the stand-in's visit model, which must agree with it.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.audimeter import AudimeterProcess, wait_for
from tests.support.icecast import IcecastServer, Listener, SourceClient
from tests.support.matomo import RecordingMatomo, TrackedRequest, VisitModel
from tests.support.matomolab import MatomoLab

POLL = 1
KEEPALIVE = 20
VLC = "VLC/3.0.18 LibVLC/3.0.18"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)
#: Matomo's device detector on each player: browserName, deviceType, operatingSystem.
DEVICES = {
    VLC: ("VLC", "Unknown", "Unknown"),
    FIREFOX: ("Firefox", "Desktop", "GNU/Linux"),
    IPHONE: ("Mobile Safari", "Smartphone", "iOS 17.1"),
}
LONG_MOUNT = "/long.mp3"


@dataclass
class Session:
    """One listening session as the test made it: the truth Matomo must show."""

    ip: str
    ua: str
    site: int
    connected: float
    left: float = 0.0
    exact: bool = False


@dataclass
class Outcome:
    sessions: dict[str, Session]
    visits: list[dict[str, Any]]
    recorded: list[TrackedRequest]
    visit_length: int
    counted_while_listening: dict[str, list[int]] = field(default_factory=dict)
    counted_after_leaving: dict[str, int] = field(default_factory=dict)

    def visit_of(self, name: str) -> dict[str, Any]:
        """The Matomo visit of session `name`: same site and address, the nearest start."""
        session = self.sessions[name]
        twins = [
            n for n, s in self.sessions.items() if (s.ip, s.site) == (session.ip, session.site)
        ]
        twins.sort(key=lambda n: (self.sessions[n].connected, n))
        visits = [
            v for v in self.visits if (v["visitIp"], int(v["idSite"])) == (session.ip, session.site)
        ]
        assert len(visits) == len(twins), (name, visits)
        return visits[twins.index(name)]


class Stage:
    """The scenario's clock, listeners and servers; every change notes the true time."""

    def __init__(self, lab: MatomoLab, tee: RecordingMatomo, config: Path) -> None:
        self.lab = lab
        self.tee = tee
        self.audimeter = AudimeterProcess(config)
        self.sessions: dict[str, Session] = {}
        self.listeners: dict[str, Listener] = {}
        self.counted: dict[str, list[int]] = {}
        self.t0 = time.monotonic()

    def at(self, offset: float) -> None:
        """Wait until `offset` seconds after the start (at once if already past)."""
        time.sleep(max(0.0, self.t0 + offset - time.monotonic()))

    def join(
        self,
        name: str,
        server: IcecastServer,
        ip: str,
        ua: str,
        *,
        mount: str = "/live.mp3",
        site: int = 1,
        exact: bool = False,
    ) -> None:
        listener = Listener(server, mount, bind=ip, user_agent=ua)
        listener.connect()
        self.sessions[name] = Session(ip, ua, site, time.time(), exact=exact)
        self.listeners[name] = listener
        assert listener.wait_for_bytes(1000)

    def leave(self, name: str) -> None:
        self.listeners.pop(name).close()
        self.sessions[name].left = time.time()

    def cut(self, name: str, by: Callable[[], None]) -> None:
        """`by` drops `name` from the server: the session ends as it begins."""
        self.sessions[name].left = time.time()
        by()
        self.listeners.pop(name).close()

    def delivered(self, name: str, after: float) -> bool:
        """Whether Matomo holds an action of `name` at or after `after` (unix time)."""
        ip = self.sessions[name].ip
        return any(
            r.params.get("cip") == ip and int(r.params["cdt"]) >= int(after)
            for r in self.tee.requests
        )

    def count(self, name: str) -> None:
        """Live.getCounters for `name`'s address alone, as the real-time widget shows it."""
        counters = self.lab.counters(
            self.sessions[name].site, last_minutes=1, segment=f"visitIp=={self.sessions[name].ip}"
        )
        self.counted.setdefault(name, []).append(counters["visits"])

    def quiet(self) -> None:
        """Wait for a moment with no batch in flight, so a kill duplicates nothing."""

        def still() -> bool:
            batches = self.tee.batches
            return not batches or time.time() - batches[-1].received_at > 1.0

        wait_for(still, 10, "a second without deliveries")

    def restart_audimeter(self, sig: int) -> None:
        code, _ = self.audimeter.stop(sig)
        assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
        time.sleep(3)
        self.audimeter.start()

    def close(self) -> None:
        for listener in self.listeners.values():
            listener.close()


def play(
    stage: Stage,
    main: IcecastServer,
    logged: IcecastServer,
    bumpy: IcecastServer,
    bumpy_source: SourceClient,
) -> None:
    """The timeline; offsets in seconds from audimeter's start."""
    stage.at(1)
    stage.join("short", main, "127.0.0.21", VLC)
    stage.join("long", main, "127.0.0.22", FIREFOX, mount=LONG_MOUNT, site=2)
    stage.join("nat-1", main, "127.0.0.23", IPHONE)
    stage.join("nat-2", main, "127.0.0.23", IPHONE)
    stage.join("exact-end", logged, "127.0.0.24", VLC, exact=True)
    stage.join("before-icecast-restart", bumpy, "127.0.0.25", FIREFOX)
    stage.join("across-audimeter-restarts", main, "127.0.0.26", VLC)
    wait_for(lambda: stage.delivered("short", 0), 10, "the first start delivered")
    stage.count("short")
    stage.at(7)
    stage.leave("short")
    stage.at(9)
    stage.leave("exact-end")
    stage.at(12)
    stage.leave("nat-1")
    stage.leave("nat-2")
    stage.cut("before-icecast-restart", by=bumpy.restart)  # drops its listeners and source
    bumpy_source.reconnect()
    stage.join("after-icecast-restart", bumpy, "127.0.0.25", FIREFOX)
    stage.at(20)
    stage.leave("after-icecast-restart")
    stage.at(23)
    stage.quiet()
    stage.restart_audimeter(signal.SIGTERM)
    stage.at(32)
    stage.quiet()
    stage.restart_audimeter(signal.SIGKILL)
    stage.at(40)
    stage.lab.down()
    stage.at(42)
    stage.join("during-matomo-outage", main, "127.0.0.27", VLC)
    stage.at(47)
    stage.leave("across-audimeter-restarts")
    stage.at(50)
    stage.leave("during-matomo-outage")
    stage.join("across-matomo-outage", main, "127.0.0.28", FIREFOX)
    stage.at(58)
    stage.lab.restart()
    stage.at(63)
    stage.leave("across-matomo-outage")
    # Over visit_length and past the outage's backlog: still one online visit.
    wait_for(
        lambda: stage.delivered("long", time.time() - KEEPALIVE - 5), 40, "a recent keep-alive"
    )
    stage.count("long")
    stage.at(82)
    stage.leave("long")


def write_config(
    tmp: Path, tee: RecordingMatomo, lab: MatomoLab, servers: dict[str, IcecastServer]
) -> Path:
    lines = [
        "[state]",
        f'path = "{tmp / "state.db"}"',
        "[matomo]",
        f'url = "{tee.url}"',
        f"site_id = {lab.site_id}",
        f'token_auth = "{lab.token}"',
        f"keepalive_interval = {KEEPALIVE}",
        f"visit_length = {lab.visit_length}",
    ]
    for name, server in servers.items():
        user, password = server.admin_auth
        lines += [
            "[[sources]]",
            f'name = "{name}"',
            'kind = "icecast"',
            f'url = "{server.url}"',
            f'username = "{user}"',
            f'password = "{password}"',
            f"poll_interval = {POLL}",
        ]
        if name == "main":
            lines.append(f'sites = {{ "{LONG_MOUNT}" = {lab.site_id_2} }}')
        if name == "logged":
            lines.append(f'access_log = "{server.access_log_path}"')
    path = tmp / "audimeter.toml"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)  # it holds the token: audimeter warns otherwise
    return path


def ended(tee: RecordingMatomo) -> int:
    return sum(1 for r in tee.requests if r.params.get("e_a") == "end")


@pytest.fixture(scope="module")
def outcome(matomo_lab: MatomoLab, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    if shutil.which("icecast2") is None:
        pytest.skip("icecast2 is not installed (Debian package icecast2)")
    lab = matomo_lab
    lab.restart()
    lab.reset()
    tmp = tmp_path_factory.mktemp("live")
    with ExitStack() as stack:
        servers = {
            name: stack.enter_context(IcecastServer(tmp / name))
            for name in ("main", "logged", "bumpy")
        }
        for mount in ("/live.mp3", LONG_MOUNT):
            stack.enter_context(SourceClient(servers["main"], mount))
        stack.enter_context(SourceClient(servers["logged"]))
        bumpy_source = stack.enter_context(SourceClient(servers["bumpy"]))
        tee = stack.enter_context(RecordingMatomo(forward_to=lab.url))
        stage = Stage(lab, tee, write_config(tmp, tee, lab, servers))
        stack.callback(stage.close)
        stack.enter_context(stage.audimeter)
        try:
            play(stage, servers["main"], servers["logged"], servers["bumpy"], bumpy_source)
            total = len(stage.sessions)
            wait_for(lambda: ended(tee) >= total, 60, f"the ends of all {total} sessions")
        finally:
            # Matomo stays up for the tests after this one, whatever happened here.
            lab.restart()
        after = {
            name: lab.counters(s.site, last_minutes=1, segment=f"visitIp=={s.ip}")["visits"]
            for name, s in stage.sessions.items()
            if time.time() - s.left > 65
        }
        visits = lab.visits(lab.site_id) + lab.visits(lab.site_id_2)
        result = Outcome(
            stage.sessions, visits, tee.requests, lab.visit_length, stage.counted, after
        )
    # The figures, kept beside the run for reading when something disagrees.
    (tmp / "outcome.json").write_text(json.dumps(asdict(result), indent=1, default=str))
    return result


SESSIONS = [
    "short",
    "long",
    "nat-1",
    "nat-2",
    "exact-end",
    "before-icecast-restart",
    "after-icecast-restart",
    "across-audimeter-restarts",
    "during-matomo-outage",
    "across-matomo-outage",
]


def test_every_session_is_exactly_one_visit(outcome: Outcome) -> None:
    assert sorted(outcome.sessions) == sorted(SESSIONS)
    assert len(outcome.visits) == len(SESSIONS)
    assert len({v["idVisit"] for v in outcome.visits}) == len(SESSIONS)
    for name in SESSIONS:
        outcome.visit_of(name)


@pytest.mark.parametrize("name", SESSIONS)
def test_visit_shows_the_true_listener_start_and_length(outcome: Outcome, name: str) -> None:
    session = outcome.sessions[name]
    visit = outcome.visit_of(name)
    start = int(visit["firstActionTimestamp"])
    assert visit["visitIp"] == session.ip
    assert abs(start - session.connected) <= 3, (start, session.connected)
    truth = session.left - session.connected
    margin = 2 if session.exact else POLL + 3
    assert abs(int(visit["visitDuration"]) - truth) <= margin, (visit["visitDuration"], truth)
    # The visitor is the cid audimeter sent with the session's start (a NAT pair sent two).
    sent = {
        r.params["cid"]
        for r in outcome.recorded
        if r.params.get("cip") == session.ip
        and r.params.get("new_visit") == "1"
        and int(r.params["cdt"]) == start
    }
    assert visit["visitorId"] in sent
    device = (visit["browserName"], visit["deviceType"], visit["operatingSystem"])
    assert device == DEVICES[session.ua]
    assert {a["type"] for a in visit["actionDetails"]} == {"action", "event"}


def test_nat_pair_is_two_visitors(outcome: Outcome) -> None:
    first, second = outcome.visit_of("nat-1"), outcome.visit_of("nat-2")
    assert first["visitorId"] != second["visitorId"]


def test_icecast_restart_splits_the_session_into_two_visits_of_one_visitor(
    outcome: Outcome,
) -> None:
    before = outcome.visit_of("before-icecast-restart")
    after = outcome.visit_of("after-icecast-restart")
    assert before["visitorId"] == after["visitorId"]
    assert int(before["lastActionTimestamp"]) < int(after["firstActionTimestamp"])


def test_real_time_counter_shows_listeners_while_listening_and_not_after(
    outcome: Outcome,
) -> None:
    assert outcome.counted_while_listening == {"short": [1], "long": [1]}
    # Every session that ended over a minute before the end (lastMinutes=1) is gone.
    assert outcome.counted_after_leaving
    assert "short" in outcome.counted_after_leaving
    assert set(outcome.counted_after_leaving.values()) == {0}


def test_stand_in_visit_model_agrees_with_the_real_matomo(outcome: Outcome) -> None:
    model = VisitModel(outcome.recorded, visit_length=outcome.visit_length)
    modelled = sorted(
        (int(v.site_id), v.visitor_id, v.first_action, v.total_time, len(v.actions))
        for v in model.visits()
    )
    real = sorted(
        (
            int(v["idSite"]),
            v["visitorId"],
            int(v["firstActionTimestamp"]),
            int(v["visitDuration"]),
            int(v["actions"]),
        )
        for v in outcome.visits
    )
    assert modelled == real
