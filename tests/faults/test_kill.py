"""Case 3: audimeter killed with SIGKILL at random moments while listeners come and go."""

from __future__ import annotations

import itertools
import json
import random
import signal
import threading
import time
from datetime import datetime
from pathlib import Path

from tests.support.audimeter import wait_for
from tests.support.faults import (
    MATOMO_BACKLOG,
    PLAYERS,
    Audience,
    Daemon,
    check_delivery,
    state_rows,
    write_config,
)
from tests.support.matomo import RecordingMatomo, TrackedRequest
from tests.support.shoutcast import Dnas2Emulator

from .conftest import Figures

SEED = 20261126
KILLS = 12
BATCH = 3
POLL = 0.5


def committed(db: Path) -> set[str]:
    """Client ids of the sessions the state file holds."""
    return {str(row[0]) for row in state_rows(db, "SELECT client_id FROM sessions")}


class Crowd(threading.Thread):
    """Listeners joining and leaving at random (seeded); one leaves only once the state file
    holds its session, since a listener no completed poll saw is unknown to audimeter."""

    def __init__(self, audience: Audience, db: Path, rng: random.Random) -> None:
        super().__init__(name="crowd", daemon=True)
        self.audience = audience
        self.db = db
        self.rng = rng
        self.stopped = threading.Event()
        self.returning: list[tuple[str, str]] = []
        self.polls: set[int] = set()
        """Times of committed polls seen in the state file (some missed: gaps only grow)."""

    def longest_blind_spell(self) -> int:
        """The longest time between two committed polls: how long a listener may go unseen."""
        times = sorted(self.polls)
        return max((b - a for a, b in itertools.pairwise(times)), default=0)

    def run(self) -> None:
        while not self.stopped.wait(self.rng.uniform(0.1, 0.5)):
            polled = state_rows(self.db, "SELECT max(last_seen) FROM mounts")
            if polled and polled[0][0] is not None:
                self.polls.add(int(str(polled[0][0])))
            here = self.audience.connected()
            if len(here) < 3 or (len(here) < 8 and self.rng.random() < 0.5):
                if self.returning and self.rng.random() < 0.3:
                    ip, player = self.returning.pop(self.rng.randrange(len(self.returning)))
                    self.audience.join(player, ip=ip)  # a returning listener
                else:
                    self.audience.join(self.rng.choice(PLAYERS))
                continue
            known = [uid for uid in here if str(uid) in committed(self.db)]
            if known:
                uid = self.rng.choice(known)
                self.audience.leave(uid)
                self.returning.append(self.audience.who(uid))


def _epoch(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def jsonl_events(path: Path) -> tuple[set[tuple[str, str, int]], int]:
    """(visitor, kind, time as Matomo's `cdt` gives it) of each JSON line, and how many lines
    repeat an earlier one's `seq` (a batch written again after a kill)."""
    events: set[tuple[str, str, int]] = set()
    seqs: set[int] = set()
    repeated = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["seq"] in seqs:
            repeated += 1
            continue
        seqs.add(record["seq"])
        kind = {"start": "start", "keepalive": "keep-alive", "end": "end"}[record["event"]]
        started, at = _epoch(record["started_at"]), _epoch(record["at"])
        events.add(
            (record["visitor_id"], kind, started if kind == "start" else max(started, at - 1))
        )
    return events, repeated


def matomo_events(requests: list[TrackedRequest]) -> set[tuple[str, str, int]]:
    return {(r.params["cid"], r.params.get("e_a", "start"), int(r.params["cdt"])) for r in requests}


def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path, figures: Figures) -> None:
    """audimeter, with two outputs (Matomo and a JSON-lines file), is killed (SIGKILL) 12 times,
    after runs of 0.3 to 3 s (seeded), and started again each time, while listeners join, leave
    and come back, and Matomo takes 0.15 s per batch (so that batches are often in flight when
    the kill comes).

    Lost: nothing: every listener has exactly one start and one end, its keep-alives complete,
    in time order; those who left while audimeter was down end at their last sighting. The
    JSON lines hold exactly the events Matomo received, each once by its `seq`.
    Duplicates: only the batch in flight at a kill can arrive again, so at most
    kills x batch_size at Matomo; the lines written again are counted and printed.
    """
    rng = random.Random(SEED)
    runs = [round(rng.uniform(0.3, 3.0), 2) for _ in range(KILLS)]
    with Dnas2Emulator(streams={1: "/stream"}) as dnas, RecordingMatomo() as matomo:
        matomo.delay(0.15)
        lines = tmp_path / "sessions.jsonl"
        config = write_config(
            tmp_path, source_url=dnas.url, matomo_url=matomo.url, batch_size=BATCH, jsonl=lines
        )
        db = tmp_path / "state" / "audimeter.db"
        audience = Audience(dnas)
        crowd = Crowd(audience, db, random.Random(SEED + 1))
        daemon = Daemon(config)
        crowd.start()
        try:
            for seconds in runs:
                daemon.start()
                time.sleep(seconds)
                daemon.stop(signal.SIGKILL)
            daemon.start()
            time.sleep(2)
        finally:
            crowd.stopped.set()
            crowd.join(timeout=5)
        try:
            wait_for(
                lambda: {str(u) for u in audience.connected()} <= committed(db),
                10,
                "every listener still there in the state file",
            )
            audience.leave_all()
            wait_for(
                lambda: (
                    state_rows(db, "SELECT count(*) FROM sessions")[0][0] == 0
                    and state_rows(
                        db,
                        MATOMO_BACKLOG,
                    )[0][0]
                    == 0
                    and len(jsonl_events(lines)[0]) >= len(matomo_events(matomo.requests))
                ),
                30,
                "every session ended and delivered to both outputs",
            )
            code, _ = daemon.stop()
        finally:
            if daemon.running:
                daemon.stop(signal.SIGKILL)
    logs = daemon.logs()
    assert code == 0
    assert "Traceback" not in logs, logs
    # One who left while audimeter was down ends at its last sighting, before that.
    blind = crowd.longest_blind_spell()
    report = check_delivery(audience.seen, matomo.requests, end_slack=blind + 1.5)
    assert report.duplicates <= KILLS * BATCH
    assert len(audience.seen) >= 15
    written, rewritten = jsonl_events(lines)
    assert written == matomo_events(matomo.requests)
    figures(
        f"{report.line()}; {KILLS} kills (seed {SEED}, runs {min(runs)}-{max(runs)} s), "
        f"duplicate bound {KILLS} x batch_size {BATCH} = {KILLS * BATCH}, "
        f"{logs.count('open session(s) resumed')} of {KILLS + 1} runs got as far as resuming, "
        f"longest time without a committed poll {blind} s; JSON lines: {len(written)} events, "
        f"{rewritten} line(s) written again"
    )
