"""[privacy]: anonymised addresses, dropped players, rotating salts, and `forget`."""

from __future__ import annotations

import json
from calendar import timegm
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from click.testing import CliRunner

from audimeter.addresses import anonymize_address, mask_address, parse_address
from audimeter.cli import main
from audimeter.config import ConfigError, parse_config
from audimeter.events import EndReason, Session, SessionEnded, SessionKeptAlive, SessionStarted
from audimeter.importer import Counts, plan_lines
from audimeter.inbox import Inbox, inbox_path
from audimeter.matomo.mapping import RequestMapper, SiteMapping, visitor_id
from audimeter.observations import Listener, ListenerLeft, ListenerList, MountPolled
from audimeter.policy import ListenerPolicy
from audimeter.privacy import (
    AddressMatcher,
    SaltBook,
    first_day_of_period,
    forget,
    period_of,
)
from audimeter.sessionizer import (
    MountRecord,
    SessionClosed,
    Sessionizer,
    SessionOpened,
    SessionRemembered,
)
from audimeter.store import Forgotten, Stamped, Store, StoreBusy, StoreError

SOURCE = {"name": "main", "kind": "icecast", "url": "http://127.0.0.1:8000", "password": "pw"}
VLC = "VLC/3.0.18 LibVLC/3.0.18"


def utc(text: str) -> int:
    """Unix time of "YYYY-MM-DD HH:MM:SS" in UTC."""
    date, clock = text.split()
    y, mo, d = (int(x) for x in date.split("-"))
    h, mi, s = (int(x) for x in clock.split(":"))
    return timegm((y, mo, d, h, mi, s, 0, 0, 0))


# -- configuration --------------------------------------------------------------------------------


def test_privacy_defaults_change_nothing() -> None:
    privacy = parse_config({"sources": [SOURCE]}).privacy
    assert (privacy.ip, privacy.user_agent, privacy.salt_rotation) == ("full", "keep", "never")


def test_privacy_options_are_read() -> None:
    privacy = parse_config(
        {
            "sources": [SOURCE],
            "privacy": {"ip": "anonymize", "user_agent": "drop", "salt_rotation": "weekly"},
        }
    ).privacy
    assert (privacy.ip, privacy.user_agent, privacy.salt_rotation) == (
        "anonymize",
        "drop",
        "weekly",
    )


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"ip": "hash"}, "privacy.ip: Input should be 'full', 'anonymize' or 'none'"),
        ({"user_agent": "strip"}, "privacy.user_agent: Input should be 'keep' or 'drop'"),
        ({"salt_rotation": "hourly"}, "privacy.salt_rotation: Input should be"),
        ({"ips": "none"}, "privacy.ips: not a known key (check its spelling)"),
    ],
)
def test_privacy_mistakes_are_named(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_config({"sources": [SOURCE], "privacy": table})


def test_no_address_warns_that_matomo_records_audimeters_own() -> None:
    matomo = {"url": "https://matomo.example.org/", "site_id": 1, "token_auth": "t"}
    quiet = parse_config({"sources": [SOURCE], "matomo": matomo, "privacy": {"ip": "anonymize"}})
    assert quiet.warnings() == []
    loud = parse_config({"sources": [SOURCE], "matomo": matomo, "privacy": {"ip": "none"}})
    assert [w for w in loud.warnings() if w.startswith('privacy.ip = "none"')] != []


# -- addresses ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "anonymized"),
    [
        ("203.0.113.57", "203.0.113.0"),
        ("203.0.113.0", "203.0.113.0"),
        ("198.51.100.255", "198.51.100.0"),
        (" 192.0.2.1 ", "192.0.2.0"),
        ("127.0.0.11", "127.0.0.0"),
        ("2001:db8:abcd:12::7", "2001:db8:abcd::"),
        ("2001:0DB8:ABCD:0012:0000:0000:0000:0007", "2001:db8:abcd::"),
        ("[2001:db8:abcd:ffff:ffff:ffff:ffff:ffff]", "2001:db8:abcd::"),
        ("2001:db8::1", "2001:db8::"),
        ("fe80::1%eth0", "fe80::"),
        ("::1", "::"),
        ("::ffff:203.0.113.57", "203.0.113.0"),  # IPv4-mapped: the IPv4 address's /24
        ("::FFFF:cb00:7139", "203.0.113.0"),  # the same, written in hex
        ("2002:cb00:7139::1", "203.0.113.0"),  # 6to4: its /48 would hold the whole IPv4 address
        ("", ""),
        ("unknown", ""),
        ("203.0.113", ""),
        ("203.0.113.57:4711", ""),
    ],
)
def test_anonymize_address(address: str, anonymized: str) -> None:
    assert anonymize_address(address) == anonymized
    assert mask_address(address, "anonymize") == anonymized


def test_mask_address_modes() -> None:
    assert mask_address("203.0.113.57", "full") == "203.0.113.57"
    assert mask_address("not an address", "full") == "not an address"  # full: as reported
    assert mask_address("203.0.113.57", "none") == ""
    assert mask_address("2001:db8::1", "none") == ""


# -- the policy: filters and proxies see the full listener, the session keeps what is allowed ----


def listener(ip: str = "203.0.113.57", ua: str = VLC, xff: str = "") -> Listener:
    return Listener("1", ip, ua, 0, "https://ref.example/", xff)


def test_anonymize_and_drop_after_the_filters() -> None:
    policy = ListenerPolicy(ip="anonymize", user_agent="drop")
    assert policy("main", listener()) == Listener("1", "203.0.113.0", "", 0, "https://ref.example/")
    assert policy("main", listener("2001:db8:abcd:12::7")) == listener("2001:db8:abcd::", "")


def test_none_keeps_no_address() -> None:
    policy = ListenerPolicy(ip="none")
    assert policy("main", listener()) == listener("", VLC)


def test_defaults_keep_the_listener_as_is() -> None:
    assert ListenerPolicy()("main", listener(xff="198.51.100.1")) == listener(xff="198.51.100.1")


def test_address_filter_sees_the_full_address() -> None:
    policy = ListenerPolicy(
        exclude_addresses=[ip_network("203.0.113.57/32")], ip="anonymize", user_agent="drop"
    )
    assert policy("main", listener("203.0.113.57")) is None  # its /24 is not excluded: still out
    assert policy("main", listener("203.0.113.58")) == listener("203.0.113.0", "")
    nothing = ListenerPolicy(exclude_addresses=[ip_network("203.0.113.57/32")], ip="none")
    assert nothing("main", listener("203.0.113.57")) is None


def test_user_agent_filter_sees_the_full_user_agent() -> None:
    policy = ListenerPolicy(exclude_user_agents=[r"^curl/"], user_agent="drop")
    assert policy("main", listener(ua="curl/8.4.0")) is None
    assert policy("main", listener(ua=VLC)) == listener(ua="")
    empty = ListenerPolicy(exclude_user_agents=[r"^$"], user_agent="drop")  # no player named
    assert empty("main", listener(ua="")) is None
    assert empty("main", listener(ua=VLC)) == listener(ua="")


def test_proxies_are_resolved_before_anonymisation() -> None:
    proxies = {"main": [ip_network("10.0.0.0/8")]}
    policy = ListenerPolicy(trusted_proxies=proxies, ip="anonymize")
    behind = listener("10.0.0.2", xff="198.51.100.77, 10.0.0.3")
    # The client's own network, not the proxy's; the header (full addresses) is not kept.
    assert policy("main", behind) == listener("198.51.100.0")
    excluded = ListenerPolicy(
        trusted_proxies=proxies,
        exclude_addresses=[ip_network("198.51.100.77/32")],
        ip="anonymize",
    )
    assert excluded("main", behind) is None  # the filter saw the resolved, full address


def test_policy_from_config_applies_privacy() -> None:
    config = parse_config(
        {"sources": [SOURCE], "privacy": {"ip": "anonymize", "user_agent": "drop"}}
    )
    policy = ListenerPolicy.from_config(config)
    assert policy("main", listener()) == listener("203.0.113.0", "")
    assert policy("main", listener(ua="curl/8.4.0")) is None  # the default filters still apply


def test_look_alikes_within_one_network_stay_apart() -> None:
    """Two listeners of one /24 with one player, at the same time, are anonymised alike: the
    slot (taken after anonymisation) still makes them two visitors."""
    sessionizer = Sessionizer(
        keepalive_interval=120, outage_grace=60, admit=ListenerPolicy(ip="anonymize")
    )
    table = ListenerList(
        [Listener("1", "203.0.113.5", VLC, 0), Listener("2", "203.0.113.6", VLC, 0)]
    )
    events = sessionizer.observe(MountPolled("main", 100, "i", "/live", table))
    first, second = (e.session for e in events)
    assert (first.ip, second.ip) == ("203.0.113.0", "203.0.113.0")
    assert (first.slot, second.slot) == (0, 1)
    assert visitor_id("salt", first) != visitor_id("salt", second)


def test_an_access_log_line_ends_an_anonymised_session_once() -> None:
    sessionizer = Sessionizer(
        keepalive_interval=120,
        outage_grace=60,
        admit=ListenerPolicy(ip="anonymize", user_agent="drop"),
        exact_ends={"main": 15},
    )
    events = []
    for observation in (
        MountPolled("main", 100, "i", "/live", ListenerList([listener()._replace(connected=5)])),
        MountPolled("main", 110, "i", "/live", ListenerList([])),
        ListenerLeft("main", 107, "/live", 12, "", "203.0.113.57", VLC),
        MountPolled("main", 130, "i", "/live", ListenerList([])),
    ):
        events += sessionizer.observe(observation)
    assert [(type(e).__name__, e.session.client_id, e.at) for e in events] == [
        ("SessionStarted", "1", 95),
        ("SessionEnded", "1", 107),
    ]


def test_import_keeps_only_the_anonymised_address() -> None:
    config = parse_config(
        {"sources": [SOURCE], "privacy": {"ip": "anonymize", "user_agent": "drop"}}
    )
    lines = [
        f'{ip} - - [26/Nov/2026:12:44:05 +0000] "GET /live.mp3 HTTP/1.1" 200 4096 "-" "VLC/3.0" 30'
        for ip in ("203.0.113.9", "203.0.113.10")
    ]
    events = plan_lines(
        lines, config=config, source=config.sources[0], key="k" * 64, counts=Counts()
    )
    assert {(e.session.ip, e.session.user_agent) for e in events} == {("203.0.113.0", "")}


# -- the mapping ----------------------------------------------------------------------------------

SITES = {"main": SiteMapping(1, "http://radio.example:8000")}


def session(ip: str = "203.0.113.0", ua: str = VLC, started_at: int = 1000) -> Session:
    return Session("main", "i1", "/live.mp3", "7", ip, ua, "", started_at, 0)


@pytest.mark.parametrize(
    ("ip", "ua", "absent"),
    [
        ("203.0.113.0", VLC, set()),
        ("", VLC, {"cip"}),
        ("203.0.113.0", "", {"ua"}),
        ("", "", {"cip", "ua"}),
    ],
)
def test_mapping_omits_what_privacy_left_empty(ip: str, ua: str, absent: set[str]) -> None:
    mapper = RequestMapper("salt", SITES, 1)
    s = session(ip, ua)
    for event in (
        SessionStarted(s),
        SessionKeptAlive(s, 1120, 1000),
        SessionEnded(s, 1200, 1120, EndReason.LEFT),
    ):
        params = mapper.params(event)
        assert {"cip", "ua"} - params.keys() == absent
        assert all(value != "" for value in params.values())
        sent = dict(parse_qsl(mapper.query_string(event)[1:], keep_blank_values=True))
        assert {"cip", "ua"} - sent.keys() == absent
    if ip:
        assert mapper.params(SessionStarted(s))["cip"] == ip


def test_a_plain_salt_string_still_works() -> None:
    s = session()
    assert RequestMapper("salt", SITES, 1).params(SessionStarted(s))["cid"] == visitor_id("salt", s)


def test_every_request_of_a_session_uses_the_salt_of_its_start() -> None:
    asked: list[int] = []

    def salt_for(started_at: int) -> str:
        asked.append(started_at)
        return f"salt-{started_at // 86400}"

    mapper = RequestMapper(salt_for, SITES, 1)
    start = utc("2026-11-05 23:58:00")
    s = session(started_at=start)
    cids = {
        mapper.params(event)["cid"]
        for event in (
            SessionStarted(s),
            SessionKeptAlive(s, start + 120, start),  # after midnight
            SessionEnded(s, start + 7200, start + 7080, EndReason.LEFT),
        )
    }
    assert cids == {visitor_id(f"salt-{start // 86400}", s)}
    assert set(asked) == {start}
    later = session(started_at=start + 180)  # the same listener, back after midnight
    assert mapper.params(SessionStarted(later))["cid"] != cids.pop()


# -- periods and salts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "rotation", "period"),
    [
        ("2026-11-05 23:59:59", "daily", "2026-11-05"),
        ("2026-11-06 00:00:00", "daily", "2026-11-06"),
        ("2026-11-08 23:59:59", "weekly", "2026-W45"),  # a Sunday
        ("2026-11-09 00:00:00", "weekly", "2026-W46"),  # weeks start on Monday
        ("2026-12-31 12:00:00", "weekly", "2026-W53"),  # ISO weeks: the year of the Thursday
        ("2027-01-03 23:59:59", "weekly", "2026-W53"),
        ("2027-01-04 00:00:00", "weekly", "2027-W01"),
        ("2026-11-30 23:59:59", "monthly", "2026-11"),
        ("2026-12-01 00:00:00", "monthly", "2026-12"),
        ("2026-12-31 23:59:59", "monthly", "2026-12"),
        ("2027-01-01 00:00:00", "monthly", "2027-01"),
        ("2026-11-05 12:00:00", "never", "never"),
    ],
)
def test_periods_are_utc(moment: str, rotation: Any, period: str) -> None:
    assert period_of(utc(moment), rotation) == period


@pytest.mark.parametrize(
    ("moment", "rotation", "first"),
    [
        ("2026-11-05 13:00:00", "daily", "2026-11-05"),
        ("2026-11-08 13:00:00", "weekly", "2026-11-02"),
        ("2026-11-09 00:00:00", "weekly", "2026-11-09"),
        ("2026-11-30 13:00:00", "monthly", "2026-11-01"),
    ],
)
def test_first_day_of_period(moment: str, rotation: Any, first: str) -> None:
    day = utc(moment) // 86400
    assert first_day_of_period(day, rotation) == utc(first + " 00:00:00") // 86400


def test_periods_of_absurd_times_do_not_fail() -> None:
    assert period_of(-5, "daily") == "1970-01-01"
    assert period_of(10**15, "monthly") == "9999-12"


class Clock:
    def __init__(self, now: str) -> None:
        self.now = utc(now)

    def set(self, now: str) -> None:
        self.now = utc(now)

    def __call__(self) -> float:
        return float(self.now)


def test_never_is_the_salt_kept_since_the_first_run(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "a.db")
    salts = SaltBook(store, "never")
    assert salts(0) == salts(utc("2026-11-05 12:00:00")) == store.salt()
    assert store.salt_periods() == []


def test_daily_salt_changes_at_utc_midnight_and_survives_a_restart(tmp_path: Path) -> None:
    clock = Clock("2026-11-05 23:59:00")
    store = Store.open(tmp_path / "a.db")
    salts = SaltBook(store, "daily", clock=clock)
    before = salts(utc("2026-11-05 23:59:59"))
    assert salts(utc("2026-11-05 00:00:00")) == before
    clock.set("2026-11-06 00:01:00")
    after = salts(utc("2026-11-06 00:00:00"))
    assert after != before
    assert salts(utc("2026-11-05 23:59:59")) == before  # a session that started yesterday
    assert before != store.salt()  # the fixed salt is another
    store.close()

    store = Store.open(tmp_path / "a.db")
    again = SaltBook(store, "daily", clock=clock)
    assert (again(utc("2026-11-05 23:00:00")), again(utc("2026-11-06 12:00:00"))) == (
        before,
        after,
    )
    assert store.salt_periods() == ["2026-11-05", "2026-11-06"]


def open_session(store: Store, started_at: str) -> Session:
    s = session(started_at=utc(started_at))
    store.commit([SessionOpened(s)], [MountRecord("main", "i1", "/live.mp3", s.started_at)], [])
    return s


def test_old_salts_are_deleted_unless_an_open_session_needs_them(tmp_path: Path) -> None:
    clock = Clock("2026-11-10 12:00:00")
    store = Store.open(tmp_path / "a.db")
    salts = SaltBook(store, "daily", clock=clock)
    long_listener = open_session(store, "2026-11-05 20:00:00")
    for day in ("05", "07", "09", "10"):
        salts(utc(f"2026-11-{day} 12:00:00"))
    assert store.salt_periods() == ["2026-11-05", "2026-11-07", "2026-11-09", "2026-11-10"]

    clock.set("2026-11-11 00:00:01")  # a new period: those used yesterday are kept once more
    salts(utc("2026-11-11 00:00:00"))
    assert store.salt_periods() == [
        "2026-11-05",
        "2026-11-07",
        "2026-11-09",
        "2026-11-10",
        "2026-11-11",
    ]
    clock.set("2026-11-12 00:00:01")
    salts(utc("2026-11-12 00:00:00"))
    # The current and the previous period, and the day the open session started.
    assert store.salt_periods() == ["2026-11-05", "2026-11-11", "2026-11-12"]
    assert salts(long_listener.started_at) == salts(utc("2026-11-05 01:00:00"))

    store.commit([SessionClosed(long_listener)], [], [])
    clock.set("2026-11-13 00:00:01")
    salts(utc("2026-11-13 00:00:00"))
    assert store.salt_periods() == ["2026-11-05", "2026-11-12", "2026-11-13"]  # used yesterday
    clock.set("2026-11-14 00:00:01")
    salts(utc("2026-11-14 00:00:00"))
    assert store.salt_periods() == ["2026-11-13", "2026-11-14"]


def test_a_salt_taken_just_before_a_cleanup_survives_it(tmp_path: Path) -> None:
    """A session first seen long after it started takes an old period's salt before it is
    stored; the clean-up that may come in between must not delete that salt."""
    clock = Clock("2026-11-10 23:59:59")
    store = Store.open(tmp_path / "a.db")
    salts = SaltBook(store, "daily", clock=clock)
    old = salts(utc("2026-11-02 08:00:00"))
    clock.set("2026-11-11 00:00:00")
    salts(utc("2026-11-11 00:00:00"))
    assert "2026-11-02" in store.salt_periods()
    assert salts(utc("2026-11-02 08:00:00")) == store.period_salt("2026-11-02") == old


def test_weekly_and_monthly_keep_the_previous_period(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "a.db")
    clock = Clock("2026-11-03 12:00:00")
    weekly = SaltBook(store, "weekly", clock=clock)
    for moment in ("2026-10-20 12:00:00", "2026-10-27 12:00:00", "2026-11-03 12:00:00"):
        weekly(utc(moment))
    clock.set("2026-11-10 12:00:00")
    weekly(utc("2026-11-10 12:00:00"))
    clock.set("2026-11-17 12:00:00")
    weekly(utc("2026-11-17 12:00:00"))
    assert store.salt_periods() == ["2026-W46", "2026-W47"]

    monthly = SaltBook(store, "monthly", clock=clock)  # the rotation changed: weekly salts go
    monthly(utc("2026-10-31 23:00:00"))
    assert store.salt_periods() == ["2026-10"]
    never = SaltBook(store, "never", clock=clock)
    never(0)
    assert store.salt_periods() == []


# -- forget ---------------------------------------------------------------------------------------

ONE = "203.0.113.9"
SIX = "2001:db8::1"


def event(ip: str) -> Stamped:
    return Stamped(SessionStarted(session(ip=ip)), visitor_id("salt", session(ip=ip)))


def filled_store(path: Path) -> None:
    store = Store.open(path)
    sessions = [
        Session("main", "i1", "/live.mp3", str(n), ip, VLC, "", 1000 + n, 0)
        for n, ip in enumerate([ONE, "198.51.100.7", SIX, "::ffff:203.0.113.9", ""])
    ]
    ended = [
        SessionRemembered(
            Session("main", "i1", "/live.mp3", f"e{n}", ip, VLC, "", 900, 0), 990, 980, True
        )
        for n, ip in enumerate([ONE, SIX])
    ]
    store.commit(
        [*(SessionOpened(s) for s in sessions), *ended],
        [MountRecord("main", "i1", "/live.mp3", 2000)],
        [event(ONE), event("198.51.100.7"), event(SIX), event(ONE), event("")],
    )
    store.commit([], [MountRecord("main", "i1", "/live.mp3", 2000)], [event(ONE)])
    (last,) = [row for row in store.journal_batch(0, 10) if row.seq == 6]
    store.dead_letter([last], "refused")
    store.close()
    inbox = Inbox.open(inbox_path(path))
    for ip, forwarded in ((ONE, ""), ("10.0.0.2", f"{ONE}, 10.0.0.2"), ("10.0.0.3", "")):
        inbox.append(json.dumps({"type": "joined", "ip": ip, "forwarded_for": forwarded}))
    inbox.close()


def test_forget_removes_every_row_with_the_address(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    filled_store(path)
    store = Store.open_exclusive(path)
    inbox = Inbox.open(inbox_path(path))
    report = forget(store, ip_address(ONE), inbox)
    assert report.forgotten == Forgotten(
        sessions=2, events=3, dead_letters=1, inbox=2, ended_sessions=1
    )
    assert len(inbox.after(0, 10)) == 1
    inbox.close()
    assert [entry.session.ip for entry in store.load_remembered()] == [SIX]
    assert {s.ip for s in store.load_sessions()} == {"198.51.100.7", SIX, ""}
    left = [row.event.session.ip for row in store.journal_batch(0, 10) if row.event]
    assert left == ["198.51.100.7", SIX, ""]
    assert store.dead_letters() == []
    store.close()
    for name in ("a.db", "a.db-wal", "a.db.inbox", "a.db.inbox-wal"):
        file = tmp_path / name
        assert not file.exists() or ONE.encode() not in file.read_bytes()


def test_forget_finds_an_ipv6_address_in_any_notation(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    filled_store(path)
    store = Store.open_exclusive(path)
    report = forget(store, parse_address("2001:DB8:0:0:0:0:0:1") or ip_address("0.0.0.0"))
    store.close()
    assert report.forgotten == Forgotten(
        sessions=1, events=1, dead_letters=0, inbox=0, ended_sessions=1
    )
    assert report.lines() == [
        "open sessions: 1 removed (their end will never be sent to Matomo)",
        "ended sessions kept to recognise late notices: 1 removed",
        "journaled events: 1 removed (no output will ever send them)",
        "dead letters: 0 removed",
        "finished sessions in the history: 0 removed",
        "webhook notices: 0 removed",
    ]


def test_address_matcher_reads_addresses_and_notices() -> None:
    matches = AddressMatcher(ip_address(SIX))
    assert matches("2001:0db8::0001")
    assert not matches("2001:db8::2")
    assert matches.notice(json.dumps({"ip": "10.0.0.1", "forwarded_for": "2001:db8::1, 10.0.0.1"}))
    assert not matches.notice("not json")
    assert not matches.notice("[1]")


def test_forget_refuses_a_state_file_in_use(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    running = Store.open(path)
    with pytest.raises(StoreBusy, match="in use by another process"):
        Store.open_exclusive(path, timeout=0.1)
    running.close()
    Store.open_exclusive(path).close()


def test_open_exclusive_never_creates_a_state_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot be opened"):
        Store.open_exclusive(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()


def write_config(tmp_path: Path, privacy: str = "") -> Path:
    path = tmp_path / "audimeter.toml"
    path.write_text(
        f'[state]\npath = "{tmp_path / "a.db"}"\n{privacy}\n'
        '[[sources]]\nname = "main"\nkind = "icecast"\nurl = "http://127.0.0.1:8000"\n'
        'password = "pw"\n'
    )
    path.chmod(0o600)
    return path


def test_forget_command(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[privacy]\nip = "anonymize"')
    filled_store(tmp_path / "a.db")
    result = CliRunner().invoke(main, ["forget", "--config", str(config), "--ip", ONE])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:7] == [
        f"forgot {ONE} in {tmp_path / 'a.db'}:",
        "open sessions: 2 removed (their end will never be sent to Matomo)",
        "ended sessions kept to recognise late notices: 1 removed",
        "journaled events: 3 removed (no output will ever send them)",
        "dead letters: 1 removed",
        "finished sessions in the history: 0 removed",
        "webhook notices: 2 removed",
    ]
    assert "203.0.113.0" in lines[7]  # what audimeter keeps of it with ip = "anonymize"
    assert "GDPR Tools" in lines[-1]


@pytest.mark.parametrize("text", ["203.0.113", "radio.example", "", "2001:db8::g"])
def test_forget_command_refuses_what_is_not_an_address(tmp_path: Path, text: str) -> None:
    result = CliRunner().invoke(
        main, ["forget", "--config", str(write_config(tmp_path)), "--ip", text]
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"audimeter: {text!r} is not an IPv4 or IPv6 address"
    ]


def test_forget_command_without_a_state_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["forget", "--config", str(write_config(tmp_path)), "--ip", ONE]
    )
    assert result.exit_code == 0
    assert (
        result.output.splitlines()[0]
        == f"nothing to remove: there is no state file {tmp_path / 'a.db'}"
    )
    assert not (tmp_path / "a.db").exists()
