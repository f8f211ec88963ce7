"""The journal's outputs on the real daemon: Matomo and a JSON-lines file side by side, the file
reopened on SIGHUP (logrotate), and one history row per finished session."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.support.audimeter import AudimeterProcess, wait_for
from tests.support.icecast import IcecastServer, Listener, SourceClient
from tests.support.matomo import RecordingMatomo

from .conftest import MOUNT
from .test_core import VLC, write_config

pytestmark = pytest.mark.icecast


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_json_lines_beside_matomo_reopened_on_sighup_and_history_of_each_session(
    tmp_path: Path, icecast: IcecastServer, source: SourceClient, matomo: RecordingMatomo
) -> None:
    lines = tmp_path / "sessions.jsonl"
    rotated = tmp_path / "sessions.jsonl.1"
    config = write_config(tmp_path, icecast, matomo, f'[jsonl]\npath = "{lines}"\n')
    with AudimeterProcess(config) as daemon:
        with Listener(icecast, MOUNT, bind="127.0.0.21", user_agent=VLC):
            wait_for(lambda: records(lines), 10, "the first start in the file")
        wait_for(lambda: any(r["event"] == "end" for r in records(lines)), 15, "the first end")
        lines.rename(rotated)  # what logrotate does, then it sends SIGHUP
        daemon.send(signal.SIGHUP)
        with Listener(icecast, MOUNT, bind="127.0.0.22", user_agent=VLC):
            wait_for(lambda: records(lines), 10, "a start in the new file")
        wait_for(lambda: any(r["event"] == "end" for r in records(lines)), 15, "the second end")
        wait_for(lambda: sum(r.params.get("e_a") == "end" for r in matomo.requests) >= 2, 10, "")
        assert daemon.running
    first, second = records(rotated), records(lines)
    assert (first[0]["event"], first[-1]["event"]) == ("start", "end")
    assert {r["ip"] for r in first} == {"127.0.0.21"}
    assert {r["ip"] for r in second} == {"127.0.0.22"}
    seqs = [r["seq"] for r in first + second]
    assert seqs == sorted(set(seqs))  # in order, nothing twice
    # The same visitor ids as Matomo's, for the same events.
    cids = {r.params["cid"] for r in matomo.requests}
    assert {r["visitor_id"] for r in first + second} == cids
    history = sqlite3.connect(tmp_path / "state.db").execute(
        "SELECT visitor_id, seconds, reason, user_agent FROM history ORDER BY id"
    )
    rows = history.fetchall()
    assert [row[0] for row in rows] == [first[0]["visitor_id"], second[0]["visitor_id"]]
    assert all(row[2] == "left" and row[3] == VLC for row in rows)
