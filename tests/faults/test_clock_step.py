"""Case 6: the machine's clock steps back an hour under audimeter.

libfaketime (Debian package `faketime`) gives the daemon alone a wall clock that the test moves:
`FAKETIME_TIMESTAMP_FILE` holds the offset, re-read at every call (`FAKETIME_NO_CACHE`), and
`DONT_FAKE_MONOTONIC` leaves the monotonic clock alone, as a real clock step does (asyncio's
timers, httpx's timeouts and the backoff run on it). The servers and Matomo keep the true time.
"""

from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.audimeter import wait_for
from tests.support.faults import (
    PLAYERS,
    Audience,
    Daemon,
    SeenListener,
    check_delivery,
    listings,
    write_config,
)
from tests.support.matomo import RecordingMatomo, TrackedRequest, VisitModel
from tests.support.shoutcast import Dnas2Emulator

from .conftest import Figures

STEP = -3600
LIBFAKETIME = next(
    iter(
        sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
        + glob.glob("/usr/lib/faketime/libfaketime.so.1")
    ),
    None,
)

pytestmark = pytest.mark.skipif(
    LIBFAKETIME is None,
    reason="libfaketime is missing: install the Debian package faketime "
    "(apt-get install -y faketime) to test clock steps",
)


class Clock:
    """The daemon's wall clock: true time plus an offset the test sets."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "faketime.rc"
        self.set(0)

    def set(self, offset: int) -> None:
        staged = self.path.with_suffix(".new")
        staged.write_text(f"{offset:+d}\n")
        os.replace(staged, self.path)  # the daemon never reads a half-written file

    @property
    def env(self) -> dict[str, str]:
        assert LIBFAKETIME is not None
        return {
            "LD_PRELOAD": LIBFAKETIME,
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            "FAKETIME_NO_CACHE": "1",
            "DONT_FAKE_MONOTONIC": "1",
        }


def ended(matomo: RecordingMatomo) -> int:
    return sum(1 for r in matomo.requests if r.params.get("e_a") == "end")


def lengths(requests: list[TrackedRequest]) -> dict[str, int]:
    """Each listener's recorded listening time: the `e_v` of its events added up."""
    total: dict[str, int] = {}
    for r in requests:
        total[r.params["cip"]] = total.get(r.params["cip"], 0) + int(r.params.get("e_v", "0"))
    return total


@dataclass(frozen=True)
class Stepped:
    seen: list[SeenListener]
    requests: list[TrackedRequest]


@pytest.fixture(scope="module")
def stepped(tmp_path_factory: pytest.TempPathFactory) -> Stepped:
    """Listeners before, across and after a step of the daemon's clock back by an hour.

    One run, shared by the tests that look at it.
    """
    tmp_path = tmp_path_factory.mktemp("clock-step")
    with Dnas2Emulator(streams={1: "/stream"}) as dnas, RecordingMatomo() as matomo:
        clock = Clock(tmp_path)
        config = write_config(tmp_path, source_url=dnas.url, matomo_url=matomo.url)
        audience = Audience(dnas)
        with Daemon(config, env=clock.env) as daemon:
            across = audience.join(PLAYERS[0])
            before = audience.join(PLAYERS[1])
            leaves_after = audience.join(PLAYERS[2])
            wait_for(lambda: len(matomo.requests) >= 3, 10, "three starts")
            time.sleep(4.5)  # a keep-alive each
            audience.leave(before)
            wait_for(lambda: ended(matomo) == 1, 10, "the first end")
            clock.set(STEP)
            time.sleep(1)
            after = audience.join(PLAYERS[3])
            time.sleep(3)
            audience.leave(leaves_after)
            time.sleep(3)
            audience.leave(after)
            audience.leave(across)
            wait_for(lambda: ended(matomo) == 4, 10, "every end")
            time.sleep(1)
        assert "Traceback" not in daemon.logs()
    return Stepped(audience.seen, matomo.requests)


def test_clock_steps_back_an_hour_mid_run(stepped: Stepped, figures: Figures) -> None:
    """The daemon's clock jumps back one hour while four listeners come and go around it.

    Time never runs backwards inside a session: no negative duration (`e_v`), each visitor's
    requests in `cdt` order, exactly one start and one end per listener, one Matomo visit
    each. Lost: no session. Duplicates: none. (Times are not compared with the test's clock:
    while sessions are open, a mount keeps the time its listeners tell, not the stepped clock.)
    """
    report = check_delivery(stepped.seen, stepped.requests, check_times=False)
    assert report.duplicates == 0
    visits = VisitModel(stepped.requests, visit_length=10).visits()
    assert len(visits) == 4
    assert not any(v.out_of_order for v in visits)
    assert all(int(r.params.get("e_v", "0")) >= 0 for r in stepped.requests)
    true = {s.ip: round((s.left or 0) - s.connected) for s in stepped.seen}
    recorded = lengths(stepped.requests)
    figures(
        f"{report.line()}; listening s true/recorded per listener: "
        + ", ".join(f"{true[ip]}/{recorded[ip]}" for ip in true)
    )


def test_listening_time_stays_true_across_a_clock_step(stepped: Stepped) -> None:
    """Each listener's recorded time (its `e_v` added up) is its true time, within a poll: the
    listeners' connected times tell how much time passed while the clock is behind."""
    recorded = lengths(stepped.requests)
    for seen in stepped.seen:
        assert seen.left is not None
        assert abs(recorded[seen.ip] - (seen.left - seen.connected)) <= 2, (seen, recorded)


def test_clock_step_while_audimeter_is_down(tmp_path: Path) -> None:
    """audimeter stops; the clock steps back an hour; it starts again with everyone still there.

    As after any restart, listeners still connected continue their sessions: one visit each.
    The DNAS's start, read from its uptime, moved by the step; its listeners' starts moved by
    as much, which tells the step from a restart. Lost: nothing. Duplicates: none.
    """
    with Dnas2Emulator(streams={1: "/stream"}) as dnas, RecordingMatomo() as matomo:
        clock = Clock(tmp_path)
        config = write_config(tmp_path, source_url=dnas.url, matomo_url=matomo.url)
        audience = Audience(dnas)
        daemon = Daemon(config, env=clock.env)
        with daemon:
            for player in PLAYERS[:2]:
                audience.join(player)
            wait_for(lambda: len(matomo.requests) >= 2, 10, "two starts")
            time.sleep(1)
            assert daemon.stop()[0] == 0
            clock.set(STEP)
            polls = listings(dnas)
            daemon.start()
            wait_for(lambda: listings(dnas) >= polls + 2, 10, "two polls after the restart")
            time.sleep(1.5)
            audience.leave_all()
            wait_for(lambda: ended(matomo) >= 2, 10, "the ends")
    check_delivery(audience.seen, matomo.requests, check_times=False)
