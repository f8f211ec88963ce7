"""Case 1: Matomo unreachable for a long time, then back on the same port."""

from __future__ import annotations

import re
import time
from pathlib import Path

from tests.support.audimeter import wait_for
from tests.support.faults import (
    MATOMO_BACKLOG,
    PLAYERS,
    Audience,
    Daemon,
    PortGate,
    check_delivery,
    state_rows,
    write_config,
)
from tests.support.matomo import RecordingMatomo
from tests.support.shoutcast import Dnas2Emulator

from .conftest import Figures

OUTAGE = 20.0


def test_matomo_down_for_20_s_then_back_on_the_same_port(tmp_path: Path, figures: Figures) -> None:
    """Nothing listens on Matomo's port for 20 s while listeners join, listen and leave.

    audimeter keeps every request in the outbox and retries with its backoff (1 s doubling);
    once the port answers again, everything arrives, each visitor's requests in time order.
    Lost: nothing. Sent twice: nothing (no batch was in flight when the port shut: the gate
    completes exchanges in progress, as a stopping server does).

    A longer outage changes only the wait: the backoff stops growing at 60 s, so delivery
    resumes at most a minute after Matomo is back, with the same result. (Past
    `matomo.outbox_limit` queued requests, about a million, keep-alives stop being queued.)
    """
    with (
        Dnas2Emulator(streams={1: "/stream"}) as dnas,
        RecordingMatomo() as matomo,
        PortGate(int(matomo.url.rsplit(":", 1)[1].strip("/"))) as gate,
    ):
        config = write_config(tmp_path, source_url=dnas.url, matomo_url=gate.url)
        db = tmp_path / "state" / "audimeter.db"
        audience = Audience(dnas)
        with Daemon(config) as daemon:
            steady = [audience.join(PLAYERS[0]), audience.join(PLAYERS[1])]
            wait_for(lambda: len(matomo.requests) >= 2, 10, "the first two starts")
            wait_for(lambda: _outbox(db) == 0, 10, "an empty outbox")
            gate.shut()
            shut_at = time.time()
            received = len(matomo.batches)
            # While nothing answers: joins, leaves, and keep-alives of those listening.
            time.sleep(1)
            short = audience.join(PLAYERS[2])
            time.sleep(2)
            audience.leave(steady[0])
            time.sleep(2)
            late = audience.join(PLAYERS[3])
            time.sleep(3)
            audience.leave(short)
            time.sleep(OUTAGE - (time.time() - shut_at) - 4)
            audience.leave(late)
            time.sleep(OUTAGE - (time.time() - shut_at))
            queued = _outbox(db)
            gate.open()
            reopened_at = time.time()
            assert len(matomo.batches) == received, "Matomo was reached during the outage"
            failures = len(re.findall(r"cannot reach Matomo", daemon.logs()))
            assert failures >= 4, daemon.logs()
            # Delivery resumes at the next retry: at most the backoff reached (16 s here).
            wait_for(lambda: _outbox(db) == 0, 40, "the outbox to empty after the outage")
            delivered_after = time.time() - reopened_at
            audience.leave(steady[1])
            wait_for(lambda: _ends(matomo) == 4, 10, "the end of the last listener")
            wait_for(lambda: _outbox(db) == 0, 10, "an empty outbox")
    report = check_delivery(audience.seen, matomo.requests)
    assert report.duplicates == 0
    assert "Traceback" not in daemon.logs()
    figures(
        f"{report.line()}; Matomo down {OUTAGE:g} s, {failures} failed attempts, "
        f"{queued} requests queued meanwhile, all delivered {delivered_after:.1f} s after it came "
        "back"
    )


def _outbox(db: Path) -> int:
    rows = state_rows(
        db,
        MATOMO_BACKLOG,
    )
    return int(str(rows[0][0])) if rows else -1


def _ends(matomo: RecordingMatomo) -> int:
    return sum(1 for r in matomo.requests if r.params.get("e_a") == "end")
