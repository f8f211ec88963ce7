"""Case 4: the streaming server restarted, or unreachable for less and for more than the grace."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.support.audimeter import wait_for
from tests.support.faults import (
    PLAYERS,
    Audience,
    Daemon,
    SeenListener,
    check_delivery,
    write_config,
)
from tests.support.icecast import IcecastServer, Listener, SourceClient
from tests.support.matomo import RecordingMatomo
from tests.support.shoutcast import Dnas2Emulator

from .conftest import Figures

POLL = 0.5
GRACE = 3
MOUNT = "/live.mp3"


def starts(matomo: RecordingMatomo) -> int:
    return sum(1 for r in matomo.requests if r.params.get("new_visit") == "1")


def ends(matomo: RecordingMatomo) -> int:
    return sum(1 for r in matomo.requests if r.params.get("e_a") == "end")


@pytest.mark.icecast
def test_icecast_restart_ends_the_sessions_and_reconnects_start_new_ones(
    tmp_path: Path, figures: Figures
) -> None:
    """A real Icecast 2.4 is restarted under two listeners; they connect again afterwards.

    A restart drops every connection and restarts Icecast's client ids: each session ends at
    its last sighting before the restart, and the listener connecting again is a new session
    (a new visit), never a continuation of the old one nor counted twice. Lost: nothing.
    Duplicates: none.
    """
    if shutil.which("icecast2") is None:
        pytest.skip("icecast2 is not installed (Debian package icecast2)")
    with (
        IcecastServer(tmp_path / "icecast") as icecast,
        SourceClient(icecast, MOUNT, name="Test Radio") as source,
        RecordingMatomo() as matomo,
    ):
        config = write_config(
            tmp_path,
            source_url=icecast.url,
            matomo_url=matomo.url,
            kind="icecast",
            username=icecast.admin_auth[0],
            password=icecast.admin_auth[1],
            poll_interval=POLL,
        )
        who = [("127.0.0.71", PLAYERS[0]), ("127.0.0.72", PLAYERS[1])]
        seen: list[SeenListener] = []
        with Daemon(config) as daemon:
            before = [Listener(icecast, MOUNT, bind=ip, user_agent=ua) for ip, ua in who]
            connected = time.time()
            for listener in before:
                listener.connect()
            wait_for(lambda: starts(matomo) == 2, 10, "both starts")
            time.sleep(1.5)
            restarted = time.time()
            icecast.restart()
            for listener in before:
                listener.close()
            seen += [SeenListener(ip, ua, connected, restarted) for ip, ua in who]
            source.reconnect()
            after = [Listener(icecast, MOUNT, bind=ip, user_agent=ua) for ip, ua in who]
            reconnected = time.time()
            for listener in after:
                listener.connect()
            wait_for(lambda: starts(matomo) == 4, 10, "the new sessions' starts")
            time.sleep(1)
            left = time.time()
            for listener in after:
                listener.close()
            seen += [SeenListener(ip, ua, reconnected, left) for ip, ua in who]
            wait_for(lambda: ends(matomo) == 4, 10, "every end")
    report = check_delivery(seen, matomo.requests)
    assert report.duplicates == 0
    assert len(matomo.model(10).visits()) == 4
    assert "Traceback" not in daemon.logs()
    figures(f"{report.line()}; 2 listeners before and after the restart, 4 visits")


def outage(tmp_path: Path, seconds: float) -> tuple[Audience, RecordingMatomo, float, float]:
    """One listener, and the server hanging (no answer: polls time out) for `seconds`."""
    with Dnas2Emulator(streams={1: "/stream"}) as dnas, RecordingMatomo() as matomo:
        config = write_config(
            tmp_path,
            source_url=dnas.url,
            matomo_url=matomo.url,
            poll_interval=POLL,
            source_timeout=0.5,
            outage_grace=GRACE,
        )
        audience = Audience(dnas)
        with Daemon(config) as daemon:
            uid = audience.join(PLAYERS[0])
            wait_for(lambda: matomo.requests, 10, "the start")
            time.sleep(2)
            hung = time.time()
            dnas.hang(60)
            time.sleep(seconds)
            dnas.hang(0)
            answering = time.time()
            wait_for(lambda: "answering again" in daemon.logs(), 5, "the source back")
            time.sleep(2)
            audience.leave(uid)
            wait_for(lambda: ends(matomo) >= 1, 10, "an end")
            time.sleep(1)
        assert "Traceback" not in daemon.logs()
    return audience, matomo, hung, answering


def test_server_unreachable_for_less_than_the_grace(tmp_path: Path, figures: Figures) -> None:
    """The server does not answer for 1 s, less than `outage_grace = 3` (with the polls that
    time out on either side, audimeter sees none for at most 2 s).

    Its listeners are unknown meanwhile, not gone: the listener still there afterwards simply
    continues: one session, one visit, its keep-alives unbroken. Lost: nothing. Duplicates:
    none.
    """
    audience, matomo, hung, answering = outage(tmp_path, 1.0)
    report = check_delivery(audience.seen, matomo.requests)
    assert report.duplicates == 0
    assert (report.sessions, len(matomo.model(10).visits())) == (1, 1)
    figures(f"{report.line()}; server silent {answering - hung:.1f} s (grace {GRACE} s), 1 visit")


def test_server_unreachable_for_more_than_the_grace(tmp_path: Path, figures: Figures) -> None:
    """The server does not answer for 6 s, more than `outage_grace = 3`.

    Once the grace has passed, the session ends at the last time its listener was seen; the
    listener, still there when the server answers again, starts a new session (a new visit)
    that begins exactly where the first one ended: no overlap, no gap counted twice. Lost:
    nothing. Duplicates: none.
    """
    audience, matomo, hung, answering = outage(tmp_path, 6)
    (listener,) = audience.seen
    assert listener.left is not None
    # Two sessions as audimeter must see them: up to the outage, and from it on.
    expected = [
        SeenListener(listener.ip, listener.user_agent, listener.connected, hung),
        SeenListener(listener.ip, listener.user_agent, hung, listener.left),
    ]
    report = check_delivery(expected, matomo.requests)
    assert report.duplicates == 0
    first_end = next(r.params for r in matomo.requests if r.params.get("e_a") == "end")
    first_end_at = int(first_end["cdt"]) + 1
    second_start = [r.params for r in matomo.requests if r.params.get("new_visit") == "1"][1]
    assert int(second_start["cdt"]) == first_end_at
    assert len(matomo.model(10).visits()) == 2
    figures(
        f"{report.line()}; server silent {answering - hung:.1f} s (grace {GRACE} s): "
        f"2 sessions, the second starting at the first one's end ({first_end_at})"
    )


FALLBACK_MOUNT = "/alt.mp3"


def listings_answered(icecast: IcecastServer, status: int) -> int:
    """How many listener lists Icecast answered with `status` (its access log says)."""
    needle = f'"GET /admin/listclients HTTP/1.1" {status} '
    text = icecast.access_log_path.read_text(errors="replace")
    return text.count(needle)


@pytest.mark.icecast
def test_a_failing_mount_is_logged_once_per_change(tmp_path: Path) -> None:
    """A real Icecast 2.4 keeps a mount with a fallback in /admin/stats after its source left,
    but answers HTTP 400 for its listeners: audimeter skips that mount at every poll and says so
    once when the failure starts, once when the mount answers again, and once when it fails
    again; the other mount is polled as usual throughout."""
    if shutil.which("icecast2") is None:
        pytest.skip("icecast2 is not installed (Debian package icecast2)")
    fallback = (
        f'<mount type="normal"><mount-name>{FALLBACK_MOUNT}</mount-name>'
        f"<fallback-mount>{MOUNT}</fallback-mount></mount>"
    )
    with (
        IcecastServer(tmp_path / "icecast", extra_mounts=[fallback]) as icecast,
        SourceClient(icecast, MOUNT),
        RecordingMatomo() as matomo,
    ):
        config = write_config(
            tmp_path,
            source_url=icecast.url,
            matomo_url=matomo.url,
            kind="icecast",
            username=icecast.admin_auth[0],
            password=icecast.admin_auth[1],
            poll_interval=POLL,
        )
        skipped = f"source sc: mount {FALLBACK_MOUNT} skipped until it answers: "
        back = f"source sc: mount {FALLBACK_MOUNT} answers again"
        with Daemon(config) as daemon:
            with SourceClient(icecast, FALLBACK_MOUNT):
                wait_for(lambda: listings_answered(icecast, 200) >= 4, 10, "two polls")
            # The source left; the mount stays in the stats, its listing fails.
            failing_since = listings_answered(icecast, 400)
            wait_for(lambda: skipped in daemon.logs(), 10, "the warning")
            wait_for(
                lambda: listings_answered(icecast, 400) >= failing_since + 8,
                15,
                "eight failing polls",
            )
            assert daemon.logs().count(skipped) == 1
            assert "HTTP 400" in daemon.logs()
            with SourceClient(icecast, FALLBACK_MOUNT):
                wait_for(lambda: back in daemon.logs(), 10, "the recovery")
            wait_for(lambda: daemon.logs().count(skipped) == 2, 10, "the failure again")
            again = listings_answered(icecast, 400)
            wait_for(
                lambda: listings_answered(icecast, 400) >= again + 6,
                15,
                "six more failing polls",
            )
            logs = daemon.logs()
        assert (logs.count(skipped), logs.count(back)) == (2, 1)
        assert logs.count(f"mount {MOUNT}") == 0  # the healthy mount: nothing to say
        assert "Traceback" not in logs
