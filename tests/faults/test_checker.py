"""The fault suite's oracle, `check_delivery`, fails on each kind of loss it exists to catch."""

from __future__ import annotations

import pytest

from tests.support.faults import SeenListener, check_delivery

T = 1_800_000_000
IP, UA = "127.0.0.2", "VLC/3.0.18 LibVLC/3.0.18"


def request(cdt: int, **params: str) -> dict[str, str]:
    base = {"idsite": "1", "rec": "1", "cid": "0123456789abcdef", "cip": IP, "ua": UA}
    return {**base, "url": "http://x/stream", "cdt": str(cdt), **params}


def start(at: int) -> dict[str, str]:
    return request(at, new_visit="1", action_name="sc /stream")


def event(action: str, cdt: int, e_v: int) -> dict[str, str]:
    return request(cdt, e_c="Listening", e_a=action, e_n="sc /stream", e_v=str(e_v))


# A 10 s session with keep-alives every 4 s: start at T, keep-alives at T+4, T+8, end at T+10.
SESSION = [start(T), event("keep-alive", T + 3, 4), event("keep-alive", T + 7, 4)]
SESSION += [event("end", T + 9, 2)]
LISTENER = SeenListener(IP, UA, connected=T + 0.4, left=T + 10.3)


def test_a_whole_session_passes_and_duplicates_are_counted() -> None:
    report = check_delivery([LISTENER], [*SESSION[:2], *SESSION[:2], *SESSION[2:]])
    assert (report.sessions, report.received, report.duplicates, report.duplicated) == (1, 6, 2, 2)


@pytest.mark.parametrize(
    ("requests", "problem"),
    [
        (SESSION[1:], "outside any session"),  # the start lost
        ([SESSION[0], SESSION[1], SESSION[3]], "a request was lost"),  # a keep-alive lost
        (SESSION[:3], "its end never arrived"),  # the end lost
        ([SESSION[0], SESSION[2], SESSION[1], SESSION[3]], "arrived after"),  # out of order
        ([*SESSION, start(T + 1)], "2 started in Matomo"),  # counted twice
        ([*SESSION, event("end", T + 10, 1)], "outside any session"),  # ended twice
        ([SESSION[0], event("end", T - 1, -1)], "arrived after"),  # a negative duration
    ],
)
def test_each_kind_of_loss_fails(requests: list[dict[str, str]], problem: str) -> None:
    with pytest.raises(AssertionError, match=problem):
        check_delivery([LISTENER], requests)


def test_times_are_compared_with_what_the_test_saw() -> None:
    with pytest.raises(AssertionError, match="started at"):
        check_delivery([SeenListener(IP, UA, T + 30, T + 40)], SESSION)
    with pytest.raises(AssertionError, match="ended at"):
        check_delivery([SeenListener(IP, UA, T, T + 30)], SESSION)
    with pytest.raises(AssertionError, match="still connected"):
        check_delivery([SeenListener(IP, UA, T)], SESSION)
    check_delivery([SeenListener(IP, UA, T + 30, T + 40)], SESSION, check_times=False)


def test_sessions_of_one_visitor_never_overlap() -> None:
    second = [start(T + 8), event("end", T + 11, 4)]
    listeners = [LISTENER, SeenListener(IP, UA, T + 8, T + 12)]
    with pytest.raises(AssertionError, match="before the previous one ended"):
        check_delivery(listeners, [*SESSION, *second])
