"""The stand-in's visit model against the real Matomo, rule by rule.

Each case is a short request sequence of one visitor, sent through the stand-in as a tee to the
real Matomo; the model's visits of what was recorded must equal the visits Matomo shows (count,
visitor, start, last action, duration, actions). The live scenarios (test_live.py) check the same
agreement on what audimeter really sends; these cases pin the rules at their edges.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

import httpx

from tests.support.matomo import RecordingMatomo, VisitModel
from tests.support.matomolab import MatomoLab

PAGEVIEW = {"url": "http://radio.example.org/live.mp3", "action_name": "main /live.mp3"}
PING = {"ping": "1"}


def event(action: str) -> dict[str, str]:
    return {"e_c": "Listening", "e_a": action, "e_n": "main /live.mp3", "e_v": "10"}


# name -> (offset in seconds, extra parameters) of one visitor's requests, sent in this order
CASES: dict[str, list[tuple[int, dict[str, str]]]] = {
    "gap just under visit_length joins": [(0, PAGEVIEW), (59, event("end"))],
    "gap of visit_length opens a new visit": [(0, PAGEVIEW), (60, event("end"))],
    "pings raise the length only": [(0, PAGEVIEW), (30, PING), (50, PING)],
    "an older event lowers the length": [(0, PAGEVIEW), (50, PING), (40, event("end"))],
    "an event older than the first action": [(10, PAGEVIEW), (0, event("end"))],
    "new_visit=1 mid-visit": [(0, PAGEVIEW), (10, {**PAGEVIEW, "new_visit": "1"}), (20, PING)],
    "a ping before any action is dropped": [(0, PING), (5, PAGEVIEW)],
    "actions in one second": [(0, PAGEVIEW), (0, event("end"))],
    "an event opens a visit": [(0, event("keep-alive")), (20, event("end"))],
    "a bare request is a pageview": [(0, PAGEVIEW), (10, {})],
    "an event without e_a is a pageview": [(0, PAGEVIEW), (10, {"e_c": "Listening"})],
    "uid outranks cid": [(0, {**PAGEVIEW, "uid": "listener-1"}), (10, event("end"))],
    "without cid, the fingerprint joins a live visit": [(0, PAGEVIEW), (10, {"cid": ""})],
}


def shown(visit: Any) -> tuple[str, int, int, int, int]:
    return (
        visit["visitorId"],
        int(visit["firstActionTimestamp"]),
        int(visit["lastActionTimestamp"]),
        int(visit["visitDuration"]),
        int(visit["actions"]),
    )


def test_visit_model_matches_the_real_matomo_case_by_case(real_matomo: MatomoLab) -> None:
    lab = real_matomo
    # An hour ago, so no cdt lies in the future; each case 100 s apart, on its own address.
    base = int(time.time()) - 3600
    sent: dict[str, str] = {}
    with RecordingMatomo(forward_to=lab.url) as tee, httpx.Client() as http:
        for n, (name, steps) in enumerate(CASES.items()):
            ip, cid = f"127.0.1.{n + 1}", f"{n + 1:016x}"
            requests = []
            for offset, extra in steps:
                params = {"idsite": "1", "rec": "1", "cid": cid, "cip": ip, "ua": "VLC/3.0.18"}
                params |= {"cdt": str(base + 100 * n + offset), **extra}
                requests.append("?" + urlencode({k: v for k, v in params.items() if v}))
            answer = http.post(
                tee.tracking_url, json={"requests": requests, "token_auth": lab.token}
            )
            assert answer.json()["invalid"] == 0, name
            sent[ip] = name
        model = VisitModel(tee.requests, visit_length=lab.visit_length)
    real: dict[str, list[tuple[str, int, int, int, int]]] = {name: [] for name in CASES}
    for visit in lab.visits(date="last2"):
        real[sent[visit["visitIp"]]].append(shown(visit))
    modelled: dict[str, list[tuple[str, int, int, int, int]]] = {name: [] for name in CASES}
    for v in model.visits():
        modelled[sent[v.ip or ""]].append(
            (v.visitor_id, v.first_action, v.last_action, v.total_time, len(v.actions))
        )
    assert {k: sorted(v) for k, v in modelled.items()} == {k: sorted(v) for k, v in real.items()}
