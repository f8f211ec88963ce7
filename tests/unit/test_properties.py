"""Properties, checked with generated input.

* Parsers: a listener list rendered the way each server writes it parses back to itself
  (Icecast 2.4, 2.5 and KH listclients; DNAS 2 JSON and XML; DNAS 1 status).
* Sessionizer: over generated histories of a server (listeners joining, staying and leaving,
  polls at increasing, repeated or decreasing times, outages, restarts, mounts coming and going,
  exact-end notices), every session starts once and ends once, in time order, its events add up
  to its length, and a sessionizer rebuilt from what the store keeps carries on exactly as an
  uninterrupted one.
* Access logs: a log line written as Icecast 2.4, 2.5 or KH writes it (dots, \\xNN escapes, a cut
  at 150 bytes; players that are not UTF-8 missing from the listing) ends the session of the
  listener it logs, and no other.

Runs are derandomized, so every run (and CI) checks the same examples.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from audimeter.events import Event, Session, SessionEnded, SessionKeptAlive, SessionStarted
from audimeter.matomo.mapping import RequestMapper, SiteMapping
from audimeter.observations import (
    Listener,
    ListenerJoined,
    ListenerLeft,
    ListenerList,
    MountPolled,
    Observation,
    SourceSeen,
    Tick,
    decode_all,
)
from audimeter.sessionizer import (
    Sessionizer,
)
from audimeter.sources.accesslog import parse_icecast_line
from audimeter.sources.icecast import parse_listclients
from audimeter.sources.shoutcast import (
    MAX_CONNECT_TIME,
    parse_dnas1_status,
    parse_dnas2_listeners_json,
    parse_dnas2_listeners_xml,
)
from audimeter.store import Store

PARSERS = settings(max_examples=100, deadline=None, derandomize=True, database=None)
HISTORIES = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- rendering as the servers do -----------------------------------------------------------------

XML_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""Characters XML 1.0 cannot carry, not even as character references."""


def xml_text(value: str) -> str:
    """`value` as XML character data, escaped as libxml2 escapes it (`\\r` too, or it would be
    read back as `\\n`)."""
    return (
        value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


def icecast_value(value: str) -> str:
    """What Icecast 2.4.4 (libxml2 2.9) lists for a header value: the value, or nothing when it
    holds a character XML cannot carry (seen on Debian's icecast2 with a control character)."""
    return "" if XML_ILLEGAL.search(value) else value


def json_string(value: str) -> str:
    """A JSON string's body as DNAS's escapeJSON writes it: `/` escaped as `\\/` too."""
    return json.dumps(value, ensure_ascii=False)[1:-1].replace("/", "\\/")


def legal(value: str) -> str:
    return XML_ILLEGAL.sub("", value)


# -- generated listeners -------------------------------------------------------------------------

addresses = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)
texts = st.text(max_size=30)
connect_times = st.one_of(st.integers(0, 600), st.integers(0, MAX_CONNECT_TIME))
mounts = st.text(
    st.characters(blacklist_categories=("Cs", "Cc")).filter(lambda c: not XML_ILLEGAL.match(c)),
    max_size=20,
).map(lambda name: "/" + name)


def listener_lists(ids: st.SearchStrategy[int]) -> st.SearchStrategy[list[Listener]]:
    listener = st.builds(
        Listener,
        client_id=ids.map(str),
        ip=addresses,
        user_agent=texts,
        connected=connect_times,
        referrer=texts,
        forwarded_for=st.one_of(st.just(""), addresses, st.lists(addresses).map(", ".join)),
    )
    return st.lists(listener, max_size=6, unique_by=lambda listener: listener.client_id)


@dataclass(frozen=True)
class IcecastDialect:
    name: str
    tags: tuple[str, str, str, str]
    """IP, user agent, connected, id."""
    referrer: str | None
    extra: str = ""


ICECAST_DIALECTS = [
    IcecastDialect("2.4", ("IP", "UserAgent", "Connected", "ID"), None),
    IcecastDialect(
        "2.5", ("ip", "useragent", "connected", "id"), "referer", "<protocol>http</protocol>"
    ),
    IcecastDialect("KH", ("IP", "UserAgent", "Connected", "ID"), "Referer", "<lag>0</lag>"),
]


@st.composite
def icecast_listings(draw: st.DrawFn, dialect: IcecastDialect) -> tuple[str, list[Listener], bytes]:
    """(mount, the listeners as they parse back, the listclients answer)."""
    mount = draw(mounts)
    listeners = draw(listener_lists(st.integers(0, 2**64 - 1)))
    ip_tag, ua_tag, connected_tag, id_tag = dialect.tags
    parts = []
    expected = []
    for listener in listeners:
        ua = icecast_value(listener.user_agent)
        referrer = icecast_value(listener.referrer) if dialect.referrer else ""
        fields = [
            f"<{ip_tag}>{listener.ip}</{ip_tag}>",
            f"<{ua_tag}>{xml_text(ua)}</{ua_tag}>",
            f"<{connected_tag}>{listener.connected}</{connected_tag}>",
            f"<{id_tag}>{listener.client_id}</{id_tag}>",
            dialect.extra,
        ]
        if dialect.referrer:
            fields.insert(2, f"<{dialect.referrer}>{xml_text(referrer)}</{dialect.referrer}>")
        parts.append("<listener>" + "".join(fields) + "</listener>")
        expected.append(listener._replace(user_agent=ua, referrer=referrer, forwarded_for=""))
    body = (
        f'<?xml version="1.0"?>\n<icestats><source mount={quoteattr(mount)}>'
        f"<Listeners>{len(listeners)}</Listeners>{''.join(parts)}</source></icestats>\n"
    )
    return mount, expected, body.encode("utf-8")


@pytest.mark.parametrize("dialect", ICECAST_DIALECTS, ids=lambda d: d.name)
@PARSERS
@given(data=st.data())
def test_icecast_listclients_round_trip(dialect: IcecastDialect, data: st.DataObject) -> None:
    mount, expected, body = data.draw(icecast_listings(dialect))
    parsed_mount, table = parse_listclients(body)
    assert parsed_mount == mount
    assert list(table.client_ids) == [listener.client_id for listener in expected]
    assert decode_all(table) == expected


def dnas_uid(draw: st.DrawFn, uid: str, *, json_token: bool) -> str:
    """DNAS writes uids as numbers; its documentation shows zero-padded strings."""
    padded = "0" * draw(st.integers(0, 3)) + uid
    if json_token:
        return draw(st.sampled_from([uid, f'"{padded}"']))
    return padded


@st.composite
def dnas2_json_listings(draw: st.DrawFn) -> tuple[list[Listener], bytes]:
    listeners = draw(listener_lists(st.integers(0, 2**63)))
    entries = []
    for listener in listeners:
        connecttime = str(listener.connected)
        if draw(st.booleans()):
            connecttime = f'"{connecttime}"'
        entries.append(
            f'{{"hostname":"{json_string(listener.ip)}",'
            f'"useragent":"{json_string(listener.user_agent)}",'
            f'"connecttime":{connecttime},'
            f'"uid":{dnas_uid(draw, listener.client_id, json_token=True)},"type":33554496,'
            f'"referer":"{json_string(listener.referrer)}",'
            f'"xff":"{json_string(listener.forwarded_for)}","grid":1,"triggers":0}}'
        )
    return listeners, ("[" + ",".join(entries) + "]").encode("utf-8")


@PARSERS
@given(dnas2_json_listings())
def test_dnas2_json_round_trip(listing: tuple[list[Listener], bytes]) -> None:
    expected, body = listing
    assert decode_all(parse_dnas2_listeners_json(body)) == expected


def dnas_connecttime(draw: st.DrawFn, seconds: int, *, clock: bool) -> str:
    """Seconds, or (DNAS 1 builds) [h:]mm:ss."""
    if not clock or draw(st.booleans()):
        return str(seconds)
    hours, rest = divmod(seconds, 3600)
    if hours == 0 and draw(st.booleans()):
        return f"{rest // 60}:{rest % 60:02}"
    return f"{hours}:{rest // 60:02}:{rest % 60:02}"


def dnas_xml_listeners(
    draw: st.DrawFn, listeners: Sequence[Listener], *, dnas1: bool
) -> tuple[list[Listener], str]:
    gap = draw(st.sampled_from(["", "\n", "\n        "]))
    expected = []
    parts = []
    for listener in listeners:
        fixed = listener._replace(
            user_agent=legal(listener.user_agent),
            referrer="" if dnas1 else legal(listener.referrer),
            forwarded_for="" if dnas1 else listener.forwarded_for,
        )
        fields = [
            ("HOSTNAME", xml_text(fixed.ip)),
            ("USERAGENT", xml_text(fixed.user_agent)),
            ("CONNECTTIME", dnas_connecttime(draw, fixed.connected, clock=dnas1)),
            ("UID", dnas_uid(draw, fixed.client_id, json_token=False)),
        ]
        if dnas1:
            fields[2:2] = [("UNDERRUNS", "0")]
            fields.append(("POINTER", "0"))
        else:
            fields += [
                ("TYPE", "2052"),
                ("REFERER", xml_text(fixed.referrer)),
                ("XFF", xml_text(fixed.forwarded_for)),
                ("GRID", fixed.client_id),
                ("TRIGGERS", "0"),
            ]
        inner = "".join(f"{gap}<{tag}>{value}</{tag}>" for tag, value in fields)
        parts.append(f"{gap}<LISTENER>{inner}{gap}</LISTENER>")
        expected.append(fixed)
    return expected, "".join(parts)


@st.composite
def dnas2_xml_listings(draw: st.DrawFn) -> tuple[list[Listener], bytes]:
    listeners = draw(listener_lists(st.integers(0, 2**63)))
    expected, inner = dnas_xml_listeners(draw, listeners, dnas1=False)
    body = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes" ?>'
        f"<SHOUTCASTSERVER><LISTENERS>{inner}</LISTENERS></SHOUTCASTSERVER>"
    )
    return expected, body.encode("utf-8")


@PARSERS
@given(dnas2_xml_listings())
def test_dnas2_xml_round_trip(listing: tuple[list[Listener], bytes]) -> None:
    expected, body = listing
    assert decode_all(parse_dnas2_listeners_xml(body)) == expected


@st.composite
def dnas1_statuses(draw: st.DrawFn) -> tuple[list[Listener], bytes]:
    listeners = draw(listener_lists(st.integers(0, 2**63)))
    expected, inner = dnas_xml_listeners(draw, listeners, dnas1=True)
    body = (
        '<?xml version="1.0" encoding="utf-8"?>\n<SHOUTCASTSERVER>\n'
        f"    <CURRENTLISTENERS>{len(listeners)}</CURRENTLISTENERS>\n"
        "    <SERVERTITLE>Fake Radio &amp; Co</SERVERTITLE>\n    <VERSION>1.9.8</VERSION>\n"
        f"    <LISTENERS>{inner}</LISTENERS>\n    <SONGHISTORY/>\n</SHOUTCASTSERVER>\n"
    )
    return expected, body.encode("utf-8")


@PARSERS
@given(dnas1_statuses())
def test_dnas1_status_round_trip(listing: tuple[list[Listener], bytes]) -> None:
    expected, body = listing
    status = parse_dnas1_status(body)
    assert (status.version, status.current_listeners) == ("1.9.8", len(expected))
    assert decode_all(status.listeners) == expected


# -- generated histories ---------------------------------------------------------------------------

SOURCE = "main"
ADDRESSES = ("10.0.0.1", "10.0.0.2", "2001:db8::7")
PLAYERS = ("VLC/3.0", "Firefox/120", "Bot/1.0")
"""The admit below leaves out Bot/1.0; two players and three addresses make look-alikes."""


def admit(source: str, listener: Listener) -> Listener | None:
    return None if listener.user_agent.startswith("Bot/") else listener


@dataclass(frozen=True)
class Options:
    keepalive_interval: int
    outage_grace: int
    catchup_gap: int | None
    min_session: int
    exact_wait: int | None
    """Seconds a missing session waits for its exact end; None: no exact ends."""
    admit: bool

    def sessionizer(self, store: Store | None = None) -> Sessionizer:
        """A new sessionizer, or one that resumes from what `store` kept."""
        return Sessionizer(
            keepalive_interval=self.keepalive_interval,
            outage_grace=self.outage_grace,
            catchup_gap=self.catchup_gap,
            min_session=self.min_session,
            admit=admit if self.admit else None,
            exact_ends=None if self.exact_wait is None else {SOURCE: self.exact_wait},
            mounts=store.load_mounts() if store else (),
            sessions=store.load_sessions() if store else (),
            gone=store.load_gone() if store else None,
            remembered=store.load_remembered() if store else (),
            instances=store.load_instances() if store else None,
        )


@dataclass(frozen=True)
class Connection:
    client_id: str
    ip: str
    user_agent: str
    since: int
    """Server time of the connect."""


class Listing(ListenerList):
    """A ListenerList that shows its listeners in a falsifying example."""

    def __repr__(self) -> str:
        return f"Listing({decode_all(self)!r})"


@dataclass
class Server:
    """The streaming server the observations describe, on audimeter's host.

    One clock for all: polls, ticks, notices and the server's own Connected and log times. It
    may step back (NTP); Connected is then negative for a while, which the sessionizer clamps.
    """

    now: int = 1_800_000_000
    generation: int = 0
    next_id: int = 1
    connections: int = 0
    live: set[str] = field(default_factory=set)
    listening: dict[str, dict[str, Connection]] = field(default_factory=dict)
    pending: list[Observation] = field(default_factory=list)
    """Exact-end notices not yet delivered (a log not yet read)."""

    @property
    def instance(self) -> str:
        return f"started:{self.generation}"


@dataclass(frozen=True)
class History:
    options: Options
    observations: list[Observation]


MOUNTS = ("/a", "/b")
STEPS = (
    "wait",
    "wait",
    "join",
    "join",
    "join",
    "leave",
    "leave",
    "poll",
    "poll",
    "poll",
    "tick",
    "deliver",
    "restart",
    "mount down",
    "mount up",
    "clock back",
)


@st.composite
def histories(
    draw: st.DrawFn,
    *,
    exact: bool,
    prompt: bool = False,
    clock_steps: bool = True,
    mounts_vanish: bool = True,
    lookalikes: bool = True,
    outages: bool = True,
) -> History:
    """A server's life as observations, ending with everybody gone and time passed.

    `exact`: exact-end notices (URL authentication by client id, access-log lines by look).
    `prompt`: notices arrive before the next poll (the log is read every second, polls come
    every few seconds). `clock_steps`: the clock may step back. `mounts_vanish`: mounts may go
    away and the server may restart. `lookalikes`: listeners may share an address and a player.
    `outages`: silences may outlast the outage grace.
    """
    options = Options(
        keepalive_interval=draw(st.sampled_from([30, 60, 120])),
        outage_grace=draw(st.sampled_from([0, 30, 120, 600])) if outages else 10**9,
        catchup_gap=draw(st.sampled_from([None, 299, 1799])),
        min_session=draw(st.sampled_from([0, 0, 60])),
        exact_wait=draw(st.sampled_from([0, 15, 120])) if exact else None,
        admit=draw(st.booleans()),
    )
    server = Server()
    server.live = set(MOUNTS[: draw(st.integers(1, 2))])
    observations: list[Observation] = []
    emit = observations.append

    def deliver(count: int | None = None) -> None:
        count = len(server.pending) if count is None else count
        observations.extend(server.pending[:count])
        del server.pending[:count]

    def disconnect(mount: str, client_id: str) -> None:
        connection = server.listening[mount].pop(client_id)
        if not exact or not draw(st.booleans()):
            return
        by_id = draw(st.booleans())
        notice = ListenerLeft(
            SOURCE,
            server.now,
            mount,
            server.now - connection.since,
            client_id=connection.client_id if by_id else "",
            ip=connection.ip,
            user_agent=connection.user_agent,
        )
        if draw(st.booleans()):
            emit(notice)
        else:
            server.pending.append(notice)

    def poll_mount(mount: str) -> None:
        listing = [
            Listener(c.client_id, c.ip, c.user_agent, server.now - c.since)
            for c in server.listening.get(mount, {}).values()
        ]
        emit(MountPolled(SOURCE, server.now, server.instance, mount, Listing(listing)))

    def poll() -> None:
        if prompt:
            deliver()
        if draw(st.integers(0, 4)):
            emit(SourceSeen(SOURCE, server.now, server.instance, frozenset(server.live)))
        for mount in sorted(server.live):
            if draw(st.integers(0, 5)):  # else this mount's listing failed
                poll_mount(mount)

    for _ in range(draw(st.integers(1, 60))):
        step = draw(st.sampled_from(STEPS))
        if step == "wait":
            server.now += draw(
                st.one_of(
                    st.sampled_from([0, 1, 10, 59, 60, 61, 119, 120, 121, 600, 1800, 4000]),
                    st.integers(0, 400),
                )
            )
        elif step == "join" and server.live:
            mount = draw(st.sampled_from(sorted(server.live)))
            server.connections += 1
            number = server.connections
            ip = (
                draw(st.sampled_from(ADDRESSES))
                if lookalikes
                else f"10.1.{number // 250}.{number % 250 + 1}"
            )
            connection = Connection(
                str(server.next_id), ip, draw(st.sampled_from(PLAYERS)), server.now
            )
            server.next_id += 1
            server.listening.setdefault(mount, {})[connection.client_id] = connection
            if exact and draw(st.booleans()):
                emit(
                    ListenerJoined(
                        SOURCE,
                        server.now,
                        mount,
                        connection.client_id,
                        connection.ip,
                        connection.user_agent,
                    )
                )
        elif step == "leave":
            choices = sorted((m, c) for m, cs in server.listening.items() for c in cs)
            if choices:
                disconnect(*draw(st.sampled_from(choices)))
        elif step == "poll":
            poll()
        elif step == "tick":
            if prompt:
                deliver()
            emit(Tick(server.now))
        elif step == "deliver" and server.pending:
            deliver(draw(st.integers(1, len(server.pending))))
        elif step == "restart" and mounts_vanish:
            for mount, connections in server.listening.items():
                for client_id in list(connections):
                    disconnect(mount, client_id)
            server.generation += 1
            server.next_id = 1
        elif step == "mount down" and mounts_vanish and server.live:
            mount = draw(st.sampled_from(sorted(server.live)))
            for client_id in list(server.listening.get(mount, {})):
                disconnect(mount, client_id)
            server.live.discard(mount)
        elif step == "mount up":
            server.live.add(draw(st.sampled_from(MOUNTS)))
        elif step == "clock back" and clock_steps:
            server.now -= draw(st.integers(1, 90))

    # Everybody leaves; the notices arrive; a last poll finds nobody; time passes.
    for mount, connections in server.listening.items():
        for client_id in list(connections):
            disconnect(mount, client_id)
    deliver()
    server.now += 1
    emit(SourceSeen(SOURCE, server.now, server.instance, frozenset(server.live)))
    for mount in sorted(server.live):
        poll_mount(mount)
    emit(Tick(server.now + 10**6))
    return History(options, observations)


# -- invariants ----------------------------------------------------------------------------------

MAPPER = RequestMapper("salt", {SOURCE: SiteMapping(1, "http://radio.example:8000")}, 1)


def run(history: History) -> list[Event]:
    sessionizer = history.options.sessionizer()
    return [e for o in history.observations for e in sessionizer.observe(o)]


def sessions_of(events: Sequence[Event]) -> list[list[Event]]:
    """The events of each session, in order. A session is its `Session` value; two look-alike
    listeners whose ends come from an access log before any poll saw them get equal values (the
    id `log:<start>:<address>`), so a value's events may hold several sessions one after another.
    """
    open_: dict[Session, list[Event]] = {}
    done: list[list[Event]] = []
    for event in events:
        if isinstance(event, SessionStarted) and event.session in open_:
            kinds = [type(e).__name__ for e in open_[event.session]]
            raise AssertionError(f"started again before it ended: {event.session}: {kinds}")
        if isinstance(event, SessionStarted):
            open_[event.session] = [event]
            continue
        own = open_.get(event.session)
        assert own is not None, f"{type(event).__name__} without a start: {event}"
        own.append(event)
        if isinstance(event, SessionEnded):
            done.append(open_.pop(event.session))
    assert not open_, f"never ended: {list(open_)}"
    return done


def check_sessions(events: Sequence[Event]) -> None:
    for own in sessions_of(events):
        session = own[0].session
        end = own[-1]
        assert isinstance(end, SessionEnded)
        times = [event.at for event in own]
        assert min(times) >= session.started_at, f"{session}: {times}"
        assert times == sorted(times), f"{session}: {times}"
        assert end.duration >= 0
        steps = [e for e in own if isinstance(e, SessionKeptAlive | SessionEnded)]
        assert sum(e.at - e.previous_at for e in steps) == end.duration, f"{session}: {own}"


def check_requests(events: Sequence[Event]) -> None:
    """Per visitor id and session, Matomo gets its requests in time order."""
    dated: dict[tuple[str, tuple[str, str, str, str], int], list[int]] = {}
    for event in events:
        params = MAPPER.params(event)
        key = (params["cid"], event.session.key, event.session.started_at)
        dated.setdefault(key, []).append(int(params["cdt"]))
    for key, cdts in dated.items():
        assert cdts == sorted(cdts), f"{key}: {cdts}"


@HISTORIES
@given(histories(exact=False))
def test_sessions_from_polls_alone(history: History) -> None:
    events = run(history)
    check_sessions(events)
    check_requests(events)


@HISTORIES
@given(histories(exact=True))
def test_sessions_with_exact_ends(history: History) -> None:
    events = run(history)
    check_sessions(events)
    check_requests(events)


# -- resuming from the store ---------------------------------------------------------------------


def resumed(history: History, cut: int) -> list[list[Event]]:
    """The events of each observation, with audimeter restarted before observation `cut`."""
    first = history.options.sessionizer()
    store = Store.open(Path(":memory:"))
    out = []
    for observation in history.observations[:cut]:
        out.append(first.observe(observation))
        changes = first.take_changes()
        store.commit(changes, first.mount_records(), [], instances=first.instances())
    second = history.options.sessionizer(store)
    out += [second.observe(observation) for observation in history.observations[cut:]]
    store.close()
    return out


def events_per_observation(history: History) -> list[list[Event]]:
    sessionizer = history.options.sessionizer()
    return [sessionizer.observe(observation) for observation in history.observations]


def same_events(resumed: list[list[Event]], uninterrupted: list[list[Event]]) -> bool:
    """The same events, each session's in the same order. Sessions restored from the store may
    come in another order than they were opened in, and a gone session's wait for its exact end
    restarts from its last sighting (see test_a_late_exact_end_after_a_restart_is_not_counted_
    again), so the observation an event comes with may differ."""

    def flat(events: list[list[Event]]) -> list[Event]:
        return [event for own in events for event in own]

    def per_session(events: list[Event]) -> dict[Session, list[Event]]:
        out: dict[Session, list[Event]] = {}
        for event in events:
            out.setdefault(event.session, []).append(event)
        return out

    return per_session(flat(resumed)) == per_session(flat(uninterrupted))


@HISTORIES
@given(history=histories(exact=False), data=st.data())
def test_a_restart_changes_nothing(history: History, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(history.observations)), label="cut")
    assert same_events(resumed(history, cut), events_per_observation(history))


@HISTORIES
@given(history=histories(exact=True), data=st.data())
def test_a_restart_changes_nothing_with_exact_ends(history: History, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(history.observations)), label="cut")
    assert same_events(resumed(history, cut), events_per_observation(history))


def test_the_same_observations_give_the_same_events() -> None:
    @HISTORIES
    @given(histories(exact=True))
    def check(history: History) -> None:
        assert events_per_observation(history) == events_per_observation(history)

    check()


# -- examples the properties found, pinned -------------------------------------------------------

VLC = "VLC/3.0"
T0 = 1_800_000_000


def polled(at: int, *listeners: tuple[str, int], mount: str = "/a") -> MountPolled:
    """A poll at `at` listing (client id, connect time) pairs, all from one address and player."""
    listing = [Listener(cid, "10.0.0.1", VLC, at - since) for cid, since in listeners]
    return MountPolled(SOURCE, at, "started:0", mount, Listing(listing))


def left(at: int, since: int, client_id: str = "") -> ListenerLeft:
    """An exact end: from URL authentication with a client id, else from an access log line."""
    return ListenerLeft(
        SOURCE, at, "/a", at - since, client_id=client_id, ip="10.0.0.1", user_agent=VLC
    )


def exact(**options: int) -> Sessionizer:
    settings = {"keepalive_interval": 120, "outage_grace": 120, **options}
    return Sessionizer(exact_ends={SOURCE: 15}, **settings)  # type: ignore[arg-type]


def every(step: int, start: int, stop: int, *listeners: tuple[str, int]) -> list[Observation]:
    return [polled(at, *listeners) for at in range(start, stop + 1, step)]


def feed(sessionizer: Sessionizer, observations: Iterable[Observation]) -> list[Event]:
    return [e for o in observations for e in sessionizer.observe(o)]


def test_an_exact_end_of_a_session_held_back_by_min_session_starts_it_first() -> None:
    """Polled at 55 s, gone at 62 s: with min_session = 60 the exact end counts the session."""
    for client_id in ("1", ""):  # URL authentication, access log
        events = feed(
            exact(min_session=60),
            [
                polled(T0),
                polled(T0 + 10, ("1", T0 + 5)),
                polled(T0 + 60, ("1", T0 + 5)),
                left(T0 + 67, T0 + 5, client_id),
                polled(T0 + 70),
                Tick(T0 + 1000),
            ],
        )
        check_sessions(events)
        assert [(type(e).__name__, e.at) for e in events] == [
            ("SessionStarted", T0 + 5),
            ("SessionEnded", T0 + 67),
        ]


@pytest.mark.parametrize("gone_first", [False, True], ids=["still listed", "already gone"])
def test_an_exact_end_after_a_keepalive_fell_due_sends_it_first(gone_first: bool) -> None:
    """Last listed at 115 s, gone at 122 s: the keep-alive due at 120 s comes before the end."""
    history = every(10, T0 + 5, T0 + 115, ("1", T0))
    if gone_first:
        history += [polled(T0 + 125), left(T0 + 122, T0, "1")]
    else:
        history += [left(T0 + 122, T0, "1"), polled(T0 + 125)]
    events = feed(exact(), [*history, Tick(T0 + 1000)])
    check_sessions(events)
    assert [(type(e).__name__, e.at) for e in events][1:] == [
        ("SessionKeptAlive", T0 + 120),
        ("SessionEnded", T0 + 122),
    ]


@pytest.mark.parametrize(
    "then",
    [
        SourceSeen(SOURCE, T0 + 25, "started:0", frozenset()),
        SourceSeen(SOURCE, T0 + 25, "started:1", frozenset({"/a"})),
    ],
    ids=["mount removed", "server restarted"],
)
def test_a_session_waiting_for_its_exact_end_ends_with_its_mount(then: SourceSeen) -> None:
    sessionizer = exact()
    store = Store.open(Path(":memory:"))
    events = []
    history: list[Observation] = [
        polled(T0, ("1", T0 - 100)),
        polled(T0 + 20),
        then,
        Tick(T0 + 1000),
    ]
    for observation in history:
        events += sessionizer.observe(observation)
        store.commit(sessionizer.take_changes(), sessionizer.mount_records(), [])
    check_sessions(events)
    assert store.load_sessions() == []
    assert store.load_gone() == {}


def test_an_exact_end_before_the_last_sighting_ends_at_what_was_sent() -> None:
    """Listed at 120 s (a keep-alive went out for 120 s), the log says gone at 119 s: the
    listing was stamped when its answer came, or the clock stepped back."""
    history = [*every(10, T0, T0 + 120, ("1", T0)), left(T0 + 119, T0), polled(T0 + 130)]
    events = feed(exact(), [*history, Tick(T0 + 1000)])
    check_sessions(events)
    assert events[-1].at == T0 + 120


def test_a_log_line_of_an_unpolled_lookalike_does_not_end_a_listed_session() -> None:
    history = [
        *every(10, T0 + 10, T0 + 130, ("1", T0)),  # listener 2 came at T0 + 1 and left at T0 + 3
        left(T0 + 3, T0 + 1),
        *every(10, T0 + 140, T0 + 300, ("1", T0)),
        polled(T0 + 310),
        Tick(T0 + 1000),
    ]
    events = feed(exact(), history)
    check_sessions(events)
    ends = [e for e in events if isinstance(e, SessionEnded) and e.session.client_id == "1"]
    assert [e.at for e in ends] == [T0 + 300]


def test_listeners_still_there_after_an_outage_are_counted_again() -> None:
    history = [
        *every(10, T0, T0 + 100, ("1", T0)),
        *[Tick(at) for at in range(T0 + 101, T0 + 300)],
        *every(10, T0 + 300, T0 + 400, ("1", T0)),
    ]
    starts = [e.at for e in feed(exact(), history) if isinstance(e, SessionStarted)]
    assert starts == [T0, T0 + 100]


def busy(sessions: Sequence[list[Event]]) -> list[tuple[int, int]]:
    return sorted((own[0].session.started_at, own[-1].at) for own in sessions)


def test_a_listener_who_stayed_through_a_long_outage_is_not_counted_twice() -> None:
    history = [
        *every(10, T0, T0 + 100, ("1", T0)),
        *[Tick(at) for at in range(T0 + 101, T0 + 1300, 5)],
        *every(10, T0 + 1300, T0 + 1500, ("1", T0)),
        left(T0 + 1505, T0),
        polled(T0 + 1510),
        Tick(T0 + 3000),
    ]
    events = feed(exact(), history)
    check_sessions(events)
    spans = busy(sessions_of(events))
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans)), spans


@pytest.mark.parametrize(
    "then",
    [
        SourceSeen(SOURCE, T0 + 12, "started:0", frozenset()),
        SourceSeen(SOURCE, T0 + 12, "started:1", frozenset({"/a"})),
    ],
    ids=["mount removed", "server restarted"],
)
def test_an_exact_end_after_the_mount_went_is_not_counted_again(then: SourceSeen) -> None:
    history = [*every(10, T0, T0 + 10, ("1", T0 - 50)), then, left(T0 + 11, T0 - 50, "1")]
    events = feed(exact(), [*history, Tick(T0 + 1000)])
    check_sessions(events)
    assert len(sessions_of(events)) == 1


def test_a_late_exact_end_after_a_restart_is_not_counted_again() -> None:
    history = History(
        Options(120, 120, None, 0, 15, admit=False),
        [
            polled(T0, ("1", T0 - 50)),
            polled(T0 + 10),
            Tick(T0 + 40),  # the wait is over: ends at its last sighting
            left(T0 + 5, T0 - 50),  # the log line, late
            polled(T0 + 50),
            Tick(T0 + 1000),
        ],
    )
    assert same_events(resumed(history, 3), events_per_observation(history))


def test_a_restart_before_the_first_listing_keeps_the_server_instance() -> None:
    history = History(
        Options(120, 120, None, 0, 15, admit=False),
        [
            SourceSeen(SOURCE, T0, "started:0", frozenset({"/a"})),
            left(T0 + 5, T0 + 1),
            polled(T0 + 10),
            Tick(T0 + 1000),
        ],
    )
    assert same_events(resumed(history, 1), events_per_observation(history))


# -- access-log lines of each Icecast, matched to the listener the listing showed --------------


def logged_24(raw: bytes) -> bytes:
    """Icecast 2.4: controls, `!`, `"`, backslash, backquote and bytes outside ASCII as `.`."""
    return bytes(b if 0x20 <= b < 0x7F and b not in b'!"\\`' else ord(".") for b in raw)


def logged_25(raw: bytes) -> bytes:
    """Icecast 2.5: the same bytes as `\\xNN`."""
    return b"".join(
        bytes([b]) if 0x20 <= b < 0x7F and b not in b'!"\\`' else b"\\x%02x" % b for b in raw
    )


def logged_kh(raw: bytes) -> bytes:
    """Icecast-KH: raw, at most 150 bytes."""
    return raw[:150]


def listed(raw: bytes) -> str:
    """What KH and 2.5 list (2.4 too, for the UTF-8 players generated for it): the player, or
    nothing when it is not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return ""


LOG_DIALECTS = {"2.4": logged_24, "2.5": logged_25, "KH": logged_kh}
# Players a listing can hold (no controls but tab), up to well past KH's cut, some with quotes,
# backslashes and characters outside ASCII, as UTF-8 or (KH and 2.5) as Latin-1.
player_texts = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff").filter(
        lambda c: not XML_ILLEGAL.match(c)
    )
    | st.sampled_from('\t"\\!` '),
    min_size=1,
    max_size=200,
)
utf8_players = player_texts.map(lambda text: text.encode("utf-8"))
latin1_players = player_texts.filter(lambda t: max(t) <= "\xff" and max(t) >= "\x80").map(
    lambda text: text.encode("latin-1")
)


def log_line(ip: str, end: int, duration: int, agent: bytes) -> str:
    clf = datetime.fromtimestamp(end, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
    line = f'{ip} - - [{clf}] "GET /a HTTP/1.1" 200 4096 "-" "'.encode() + agent
    return (line + f'" {duration}'.encode()).decode("utf-8", "replace")


@pytest.mark.parametrize("server", LOG_DIALECTS)
@PARSERS
@given(data=st.data())
def test_a_log_line_ends_the_session_of_the_listener_it_logs(
    server: str, data: st.DataObject
) -> None:
    """Two listeners at one address, started together, listed as the server lists them; the log
    line of one, written as the server writes it and parsed, ends that one, at its exact end."""
    players = utf8_players if server == "2.4" else utf8_players | latin1_players
    mine, other = data.draw(players, label="mine"), data.draw(players, label="other")
    logged = LOG_DIALECTS[server]
    assume(logged(mine) != logged(other))  # the log cannot tell them apart
    listing = [
        Listener("1", "10.0.0.1", listed(mine), 5),
        Listener("2", "10.0.0.1", listed(other), 5),
    ]
    entry = parse_icecast_line(log_line("10.0.0.1", T0 + 7, 12, logged(mine)))
    assert entry is not None
    sessionizer = exact()
    feed(sessionizer, [MountPolled(SOURCE, T0, "started:0", "/a", Listing(listing))])
    notice = ListenerLeft(SOURCE, entry.end, "/a", entry.duration, "", entry.ip, entry.user_agent)
    (ended,) = sessionizer.observe(notice)
    assert isinstance(ended, SessionEnded)
    assert (ended.at, ended.session.user_agent) == (T0 + 7, listed(mine))
