"""A site whose access the token loses while `audimeter run` runs holds up no other site.

The real daemon follows two mounts of a real Icecast, mapped to Matomo sites 1 and 2, with the
token of a user who may write to both. Access to site 2 is removed while listeners come and go:
site 1's visits keep arriving, the log names site 2 once, and once access is given back, site 2's
sessions arrive, each one visit with its true start and length.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.audimeter import AudimeterProcess, wait_for
from tests.support.icecast import IcecastServer, Listener, SourceClient
from tests.support.matomolab import MatomoLab, Token

POLL = 1
KEEPALIVE = 20  # below the kit's visit_standard_length of 60 s
ONE, TWO = "/one.mp3", "/two.mp3"


@pytest.fixture
def icecast(tmp_path: Path) -> Iterator[IcecastServer]:
    if shutil.which("icecast2") is None:
        pytest.skip("icecast2 is not installed (Debian package icecast2)")
    with (
        IcecastServer(tmp_path / "icecast") as server,
        SourceClient(server, ONE, name="One"),
        SourceClient(server, TWO, name="Two"),
    ):
        yield server


def write_config(tmp_path: Path, icecast: IcecastServer, lab: MatomoLab, token: Token) -> Path:
    path = tmp_path / "audimeter.toml"
    path.write_text(
        lab.config_head(tmp_path / "state.db", KEEPALIVE, token.token)
        + f"""
[[sources]]
name = "main"
kind = "icecast"
url = "{icecast.url}"
username = "{icecast.admin_auth[0]}"
password = "{icecast.admin_auth[1]}"
poll_interval = {POLL}
sites = {{ "{TWO}" = {lab.site_id_2} }}
"""
    )
    return path


@dataclass
class Listened:
    ip: str
    connected: float
    left: float = 0.0


def visit_of(visits: list[dict[str, Any]], listened: Listened) -> dict[str, Any]:
    (visit,) = [v for v in visits if v["visitIp"] == listened.ip]
    return visit


def ended(visits: list[dict[str, Any]], ip: str) -> bool:
    """Whether the visit from `ip` holds its session's end."""
    return any(
        action.get("eventAction") == "end"
        for visit in visits
        if visit["visitIp"] == ip
        for action in visit["actionDetails"]
    )


def check_visit(visit: dict[str, Any], listened: Listened) -> None:
    """One visit with the listener's true start and length."""
    assert abs(int(visit["firstActionTimestamp"]) - listened.connected) <= 3, visit
    length = listened.left - listened.connected
    assert abs(int(visit["visitDuration"]) - length) <= POLL + 3, (visit, length)


def test_a_site_refused_while_running_holds_up_nothing_and_is_delivered_when_back(
    tmp_path: Path, real_matomo: MatomoLab, icecast: IcecastServer
) -> None:
    lab = real_matomo
    token = lab.add_user("write", [lab.site_id, lab.site_id_2])
    config = write_config(tmp_path, icecast, lab, token)
    sessions: dict[str, Listened] = {}

    def site1() -> list[dict[str, Any]]:
        return lab.visits(lab.site_id)

    def site2() -> list[dict[str, Any]]:
        return lab.visits(lab.site_id_2)

    with AudimeterProcess(config) as daemon, ExitStack() as listeners:

        def join(mount: str, ip: str) -> Listener:
            listener = listeners.enter_context(Listener(icecast, mount, bind=ip))
            sessions[ip] = Listened(ip, time.time())
            assert listener.wait_for_bytes(1000)
            return listener

        def leave(listener: Listener) -> None:
            listener.close()
            sessions[listener.bind].left = time.time()

        long_one = join(ONE, "127.0.0.11")  # on site 1 from start to end
        before = join(TWO, "127.0.0.12")  # on site 2, starts before the refusal, ends during it
        wait_for(lambda: len(site1()) == 1 and len(site2()) == 1, 20, "both starts in Matomo")

        lab.set_access(token.login, "noaccess", [lab.site_id_2])
        time.sleep(3)
        leave(before)
        during = join(TWO, "127.0.0.13")  # a whole session on site 2 while it is refused
        meanwhile = join(ONE, "127.0.0.14")  # and one on site 1
        time.sleep(6)
        leave(during)
        leave(meanwhile)
        wait_for(
            lambda: ended(site1(), "127.0.0.14"), 15, "site 1's new visit while site 2 is refused"
        )
        check_visit(visit_of(site1(), sessions["127.0.0.14"]), sessions["127.0.0.14"])
        assert len(site2()) == 1  # only the start of the session before the refusal
        assert daemon.logs().count("matomo site 2 refuses the token") == 1
        parked = sqlite3.connect(tmp_path / "state.db").execute("SELECT count(*) FROM parked")
        assert parked.fetchone()[0] == 3  # the first session's end, the second's start and end

        lab.set_access(token.login, "write", [lab.site_id_2])
        wait_for(
            lambda: "matomo site 2 takes the token again" in daemon.logs(),
            70,
            "site 2's kept requests sent",
        )
        leave(long_one)
        wait_for(
            lambda: sum(int(v["actions"]) for v in site2()) == 4,
            15,
            "site 2's sessions in Matomo",
        )
        wait_for(lambda: ended(site1(), "127.0.0.11"), 15, "the end of site 1's long session")
        logs = daemon.logs()

    second = site2()
    assert len(second) == 2, second
    for ip in ("127.0.0.12", "127.0.0.13"):
        check_visit(visit_of(second, sessions[ip]), sessions[ip])
    first = site1()
    assert len(first) == 2, first
    for ip in ("127.0.0.11", "127.0.0.14"):
        check_visit(visit_of(first, sessions[ip]), sessions[ip])
    assert token.token not in logs
    state = sqlite3.connect(tmp_path / "state.db")
    assert state.execute("SELECT count(*) FROM parked").fetchone() == (0,)
    assert state.execute("SELECT count(*) FROM dead_letter").fetchone() == (0,)
