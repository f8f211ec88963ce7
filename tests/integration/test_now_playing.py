"""The title on air, from a real Icecast whose source updates its metadata, through the real
`audimeter run`: plays in the state file, and the title in each keep-alive and end."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tests.support.audimeter import AudimeterProcess, wait_for
from tests.support.icecast import IcecastServer, Listener, SourceClient
from tests.support.matomo import RecordingMatomo

from .conftest import MOUNT
from .test_core import VLC, by_visitor, ended, write_config

pytestmark = pytest.mark.icecast


def plays(state: Path) -> list[tuple[str, str, int, int | None]]:
    """The plays recorded so far (none while audimeter has not made its state file yet)."""
    if not state.exists():
        return []
    db = sqlite3.connect(f"{state.as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        rows = db.execute("SELECT mount, title, started_at, ended_at FROM titles ORDER BY id")
        return list(rows)
    except sqlite3.OperationalError:  # created, not yet set up
        return []
    finally:
        db.close()


def test_titles_are_recorded_as_they_change_and_sent_as_a_dimension(
    tmp_path: Path, icecast: IcecastServer, source: SourceClient, matomo: RecordingMatomo
) -> None:
    state = tmp_path / "state.db"
    config = write_config(tmp_path, icecast, matomo, "now_playing_dimension = 4\n")
    # The [matomo] table is the last one write_config writes: the key lands in it.
    source.set_title(artist="First Artist", title="First Song")
    with AudimeterProcess(config):
        # The listener comes once the title is known: before audimeter's first poll, it is not.
        wait_for(lambda: len(plays(state)) == 1, 10, "the first title")
        with Listener(icecast, MOUNT, bind="127.0.0.51", user_agent=VLC):
            time.sleep(5)  # a keep-alive (every 4 s) under the first title
            source.set_title(artist="Second Artist", title="Second Song")
            wait_for(lambda: len(plays(state)) == 2, 10, "the second title")
            time.sleep(5)
            source.set_title(artist="First Artist", title="First Song")  # back: a new play
            wait_for(lambda: len(plays(state)) == 3, 10, "the first title again")
            time.sleep(1.5)
        wait_for(lambda: ended(matomo), 15, "the session to end")
    recorded = plays(state)
    titles = [title for _, title, _, _ in recorded]
    assert titles == [
        "First Artist - First Song",
        "Second Artist - Second Song",
        "First Artist - First Song",
    ]
    assert {mount for mount, _, _, _ in recorded} == {MOUNT}
    # Back to back, in order; the last one is still on air when audimeter stopped.
    assert recorded[0][3] == recorded[1][2]
    assert recorded[1][3] == recorded[2][2]
    assert recorded[2][3] is None
    (stream,) = by_visitor(matomo).values()
    assert "dimension4" not in stream[0]  # the start: a pageview, no title
    for request in stream[1:]:
        at = int(request["cdt"])
        # What was on air when the request is dated; nothing before audimeter's first poll.
        on_air = next((t for _, t, s, e in recorded if s <= at and (e is None or at < e)), "")
        assert request.get("dimension4", "") == on_air, (at, recorded)
    sent = [request["dimension4"] for request in stream[1:]]
    assert {"First Artist - First Song", "Second Artist - Second Song"} <= set(sent)
    assert stream[-1]["e_a"] == "end"
    assert stream[-1]["dimension4"] == "First Artist - First Song"
