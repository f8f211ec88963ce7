"""The sessionizer: turns observations of streaming servers into listening sessions.

Theory of operation
-------------------
A *session* is one listener connection, keyed by (source, server instance, mount, client id).
Servers hand out client ids from a counter that restarts with the process, so the instance (the
server's start time) is part of the key.

The sessionizer is a pure state machine: `observe(observation)` returns the events that follow
from it, and nothing else changes the state. It never reads a clock and does no I/O, so the same
observations always give the same events; time arrives inside the observations.

* `MountPolled` is the complete listener list of one mount at time `at`. A listener not seen before
  starts a session at `at - connected` (never before the mount's previous poll: whoever was there
  then was listed then). A session whose listener is missing ends at the mount's previous poll,
  the last moment it was known to be connected. A listener still there gets a keep-alive for every
  multiple of `keepalive_interval` after its start that has passed since the previous poll, so a
  listener first seen hours into a session gets the keep-alives of those hours at once. Those that
  lie in the past are thinned out to one every `catchup_gap` seconds (rounded down to a multiple of
  the interval): they only need to keep the visit whole, not the listener online.
  The title on air that a poll may carry is not the sessionizer's: `audimeter.nowplaying` turns
  it into plays.
* `SourceSeen` names the server instance and its live mounts. A new instance means the server
  restarted: every session of the old one ends. A mount no longer listed ends its sessions.
* `Tick` lets time pass. A failed poll is no observation at all: the sessions it would have
  confirmed are in an unknown state, and end (at their last sighting) only once `at` is more than
  the source's outage grace after that sighting (or after `resumed_at`, when audimeter was
  stopped meanwhile).
* Time never runs backwards inside a session. A poll dated before the mount's previous one (the
  clock stepped back) is dated by its listeners instead: a known one's start plus the seconds
  it has been connected. A mount with nobody open follows the clock back.

Exact ends. A server may also say when a connection ended (`ListenerLeft`, from Icecast's URL
authentication or its access log). For a source listed in `exact_ends`, a session missing from
a poll does not end at once: it is *gone*, its slot is free, and it waits up to that many seconds
for its notice, which ends it at the exact time; otherwise it ends at its last sighting. Which
session a notice is about, how long ended sessions are remembered and why: see
`audimeter.exactends`. A notice about no known session (one shorter than a poll interval)
replays the whole session at once. `ListenerJoined` (URL authentication) starts a session at the
moment it connected, with the query string it asked for, on a mount already polled; a poll then
finds it like any other.

Two options shape what counts. `admit` sees each new listener once and may leave it out (a relay,
a monitor) or correct it (its address behind a proxy); a listener left out stays out while it is
listed. With `min_session`, a session is held back until it has lasted that long, then started
with its real start time; one that ends sooner produces no event at all. Whether a session has
been counted follows from its start and last sighting, so it needs no state either.

Per mount, the state is the time of its last successful poll (`last_seen`) and the open sessions.
Each open session was present at that poll, so its last sighting and the keep-alives already
emitted follow from `last_seen` and need no state of their own; this keeps what must be stored
per poll down to one row per mount. `take_changes` tells the store which sessions opened, went
missing, closed, and were remembered or forgotten; the constructor takes all of it back.

A poll of a large mount lists mostly the same listeners as the one before, and few of them have
anything due. So each mount keeps an agenda (derived, never stored) of when each open session
next needs a poll, and a poll looks only at the listeners that are new or due (after a restart,
the first poll looks at every one).
"""

from __future__ import annotations

import heapq
import itertools
import statistics
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from audimeter.events import (
    EndReason,
    Event,
    Session,
    SessionEnded,
    SessionKeptAlive,
    SessionStarted,
)
from audimeter.exactends import (
    RECENT_SECONDS,
    Gone,
    Memory,
    exact_end,
    find_session,
)
from audimeter.exactends import (
    SessionRemembered as SessionRemembered,  # a state change for the store, named here too
)
from audimeter.observations import (
    Listener,
    ListenerJoined,
    ListenerLeft,
    ListenerTable,
    MountPolled,
    Observation,
    SourceSeen,
    Tick,
    plausible,
)
from audimeter.slots import SlotPool

Admit = Callable[[str, Listener], Listener | None]


@dataclass(frozen=True, slots=True)
class MountRecord:
    """What must be stored per mount to resume after a restart."""

    source: str
    instance: str
    mount: str
    last_seen: int


@dataclass(frozen=True, slots=True)
class SessionOpened:
    """A session the store must keep, counted yet or not."""

    session: Session


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """A session the store can forget."""

    session: Session


@dataclass(frozen=True, slots=True)
class SessionGone:
    """A session missing from a poll, waiting for its exact end since its `last_seen`."""

    session: Session
    last_seen: int


@dataclass(frozen=True, slots=True)
class SessionForgotten:
    """A remembered session the store can drop."""

    session: Session


StateChange = SessionOpened | SessionClosed | SessionGone | SessionRemembered | SessionForgotten


class _Agenda:
    """When the open sessions of a mount next need a poll: a keep-alive falls due, or they have
    lasted `min_session`. A poll looks at the listeners that are new or due; the rest, nearly
    all of them, it passes over without a look. An entry may outlive its session: looking at a
    listener that needs nothing does nothing, so only a missing entry would be wrong, and every
    session gets one when it is opened and each time it is looked at."""

    __slots__ = ("_ids", "_times")

    def __init__(self) -> None:
        self._ids: dict[int, set[str]] = {}
        self._times: list[int] = []
        """A heap of the times in `_ids`."""

    def add(self, client_id: str, at: int) -> None:
        ids = self._ids.get(at)
        if ids is None:
            self._ids[at] = {client_id}
            heapq.heappush(self._times, at)
        else:
            ids.add(client_id)

    def take(self, at: int) -> set[str]:
        """The client ids due at or before `at`, which leave the agenda."""
        due: set[str] = set()
        times = self._times
        while times and times[0] <= at:
            due |= self._ids.pop(heapq.heappop(times))
        return due


@dataclass(slots=True)
class _Mount:
    source: str
    instance: str
    mount: str
    last_seen: int
    sessions: dict[str, Session] = field(default_factory=dict)
    ignored: set[str] = field(default_factory=set)
    """Listed client ids that `admit` left out."""
    gone: dict[str, Gone] = field(default_factory=dict)
    resumed_at: int = 0
    """When audimeter started again with this mount restored: its outage counts from then."""
    behind: int = 0
    """How far the clock was behind the mount's time at its last poll (after a step back)."""
    agenda: _Agenda = field(default_factory=_Agenda)


class Sessionizer:
    def __init__(
        self,
        *,
        keepalive_interval: int,
        outage_grace: int,
        source_graces: Mapping[str, int] | None = None,
        catchup_gap: int | None = None,
        min_session: int = 0,
        admit: Admit | None = None,
        exact_ends: Mapping[str, int] | None = None,
        mounts: Iterable[MountRecord] = (),
        sessions: Iterable[Session] = (),
        gone: Mapping[tuple[str, str, str, str], int] | None = None,
        remembered: Iterable[SessionRemembered] = (),
        instances: Mapping[str, str] | None = None,
        resumed_at: int | None = None,
    ) -> None:
        """`exact_ends` maps sources with an exact end channel to how long to wait.

        The rest restores what the store kept: `gone` maps sessions that were waiting for their
        exact end to their last sighting, `instances` the server instance of each source.
        `resumed_at` is when audimeter started again: outage graces and waits for exact ends
        count from then, so that time audimeter was down does not end sessions by itself.
        """
        if keepalive_interval < 1:
            raise ValueError("keepalive_interval must be at least 1 second")
        self._interval = keepalive_interval
        self._catchup = max(keepalive_interval, catchup_gap or 0)
        self._min_session = min_session
        self._admit = admit
        self._exact_ends = dict(exact_ends or {})
        self._changes: list[StateChange] = []
        self._grace = outage_grace
        self._source_graces = dict(source_graces or {})
        self._mounts: dict[tuple[str, str], _Mount] = {}
        self._instances: dict[str, str] = dict(instances or {})
        self._slots: dict[tuple[str, str], SlotPool] = {}
        self._memory = Memory()
        resumed = resumed_at or 0
        for record in mounts:
            self._mounts[(record.source, record.mount)] = _Mount(
                record.source, record.instance, record.mount, record.last_seen, resumed_at=resumed
            )
            self._instances.setdefault(record.source, record.instance)
        for session in sessions:
            state = self._mounts.get((session.source, session.mount))
            if state is None or state.instance != session.instance:
                raise ValueError(
                    f"stored session {session.key} has no stored mount: the state is inconsistent"
                )
            last_seen = (gone or {}).get(session.key)
            if last_seen is None:
                state.sessions[session.client_id] = session
                state.agenda.add(session.client_id, 0)
                identity = (session.ip, session.user_agent)
                self._slots.setdefault(identity, SlotPool()).take(session.slot)
            else:
                deadline = max(last_seen, resumed) + self._exact_ends.get(session.source, 0)
                state.gone[session.client_id] = Gone(session, last_seen, deadline)
        for entry in sorted(remembered, key=lambda entry: entry.end):
            self._remember(entry, store=False)

    # -- queries -------------------------------------------------------------------------------

    def sessions(self) -> Iterator[Session]:
        for state in self._mounts.values():
            yield from state.sessions.values()

    def open_counts(self) -> dict[tuple[str, str], int]:
        """Open sessions per (source, mount), counted yet or not: as cheap as the mounts are few."""
        return {key: len(state.sessions) for key, state in self._mounts.items()}

    def instance_of(self, source: str) -> str | None:
        """The server instance last seen for a source."""
        return self._instances.get(source)

    def take_changes(self) -> list[StateChange]:
        """Sessions opened and closed since the last call, in order, for the store."""
        changes, self._changes = self._changes, []
        return changes

    def mount_records(self) -> list[MountRecord]:
        return [
            MountRecord(m.source, m.instance, m.mount, m.last_seen) for m in self._mounts.values()
        ]

    def instances(self) -> dict[str, str]:
        """The server instance of each source seen, for the store."""
        return dict(self._instances)

    # -- transitions ---------------------------------------------------------------------------

    def observe(self, observation: Observation) -> list[Event]:
        events: list[Event] = []
        if isinstance(observation, MountPolled):
            self._check_instance(observation.source, observation.instance, events)
            self._mount_polled(observation, events)
        elif isinstance(observation, SourceSeen):
            self._check_instance(observation.source, observation.instance, events)
            for key, state in list(self._mounts.items()):
                if state.source == observation.source and state.mount not in observation.mounts:
                    self._end_all(state, EndReason.MOUNT_REMOVED, events)
                    del self._mounts[key]
        elif isinstance(observation, ListenerLeft):
            self._listener_left(observation, events)
        elif isinstance(observation, ListenerJoined):
            self._listener_joined(observation, events)
        elif isinstance(observation, Tick):
            for state in self._mounts.values():
                grace = self._source_graces.get(state.source, self._grace)
                now = observation.at + state.behind
                if state.sessions and now - max(state.last_seen, state.resumed_at) > grace:
                    self._end_all(state, EndReason.SOURCE_LOST, events)
                self._expire(state, now, events)
            for key in self._memory.mounts():
                self._forget(key, observation.at)
        return events

    def _check_instance(self, source: str, instance: str, events: list[Event]) -> None:
        known = self._instances.get(source)
        if known == instance:
            return
        self._instances[source] = instance
        if known is None:
            return
        for key, state in list(self._mounts.items()):
            if state.source == source:
                self._end_all(state, EndReason.SERVER_RESTARTED, events)
                del self._mounts[key]

    def _mount_polled(self, obs: MountPolled, events: list[Event]) -> None:
        key = (obs.source, obs.mount)
        state = self._mounts.get(key)
        first_poll = state is None
        if state is None:
            state = self._mounts[key] = _Mount(obs.source, obs.instance, obs.mount, obs.at)
        last_seen = state.last_seen
        table = obs.listeners
        at = obs.at
        # New listeners start no earlier: whoever was there at the previous poll was listed.
        floor = None if first_poll else last_seen
        if at < last_seen:
            if state.sessions or state.gone:
                # The clock stepped back. Time must not run backwards inside a session; how
                # long the listeners have been connected tells how much of it really passed.
                at = max(last_seen, _time_by_listeners(state.sessions, table))
            else:
                floor = None  # nothing open: the mount follows the clock back
        client_ids = table.client_ids
        present = set(client_ids)
        sessions = state.sessions
        missing = list(itertools.filterfalse(present.__contains__, sessions))
        ignored = state.ignored
        if ignored:
            ignored.intersection_update(present)
        repeated = len(present) < len(client_ids)
        # Gone before the events are made: with 100,000 listeners, each garbage collection
        # while the set is young reads every id again.
        del present

        wait = self._exact_ends.get(obs.source)
        for client_id in missing:
            session = sessions.pop(client_id)
            if wait is None:
                self._close(session, last_seen, last_seen, EndReason.LEFT, events)
            else:
                self._release_slot(session)
                state.gone[client_id] = Gone(session, last_seen, at + wait)
                self._changes.append(SessionGone(session, last_seen))
        self._expire(state, at, events)
        recent = self._memory.of(obs.source, obs.mount).get(obs.instance, {})

        interval = self._interval
        min_session = self._min_session
        agenda = state.agenda
        wanted = agenda.take(at)
        # Listed without an open session (new, left out, waiting): looked up in listing order,
        # which is nearly the order the sessions were opened in, so memory is read in order.
        wanted.update(itertools.filterfalse(sessions.__contains__, client_ids))
        listed: Iterable[int]
        if not repeated:
            listed = itertools.compress(itertools.count(), map(wanted.__contains__, client_ids))
        else:  # a broken listing names a client twice: once counts
            first: dict[str, int] = {}
            for index, client_id in enumerate(client_ids):
                first.setdefault(client_id, index)
            listed = sorted(i for c, i in first.items() if c in wanted)
        for index in listed:
            client_id = client_ids[index]
            known = sessions.get(client_id)
            if known is None:
                if client_id in ignored or client_id in state.gone:
                    continue  # left out, or waiting for its exact end
                ended = recent.get(client_id)
                if ended is not None and ended.exact:
                    continue  # ended by an exact notice before the server noticed
                listener = table.details(index)
                if self._admit is not None:
                    admitted = self._admit(obs.source, listener)
                    if admitted is None:
                        ignored.add(client_id)
                        continue
                    listener = admitted
                start = at - plausible(listener.connected)
                if floor is not None and start < floor:
                    start = floor
                session = Session(
                    source=obs.source,
                    instance=obs.instance,
                    mount=obs.mount,
                    client_id=client_id,
                    ip=listener.ip,
                    user_agent=listener.user_agent,
                    referrer=listener.referrer,
                    started_at=start,
                    slot=self._take_slot(listener.ip, listener.user_agent),
                )
                sessions[client_id] = session
                self._changes.append(SessionOpened(session))
                counted = False
            else:
                session = known
                start = session.started_at
                if start <= last_seen:
                    previous = last_seen - (last_seen - start) % interval
                    due = previous + interval
                    if last_seen - start >= min_session and due <= at < due + interval:
                        # The common case, made short: one keep-alive due since the last poll.
                        events.append(SessionKeptAlive(session, due, previous))
                        agenda.add(client_id, due + interval)
                        continue
                # A session started by ListenerJoined after the previous poll: seen at its start.
                counted = max(last_seen, start) - start >= min_session
            if counted:
                previous = start + (max(last_seen, start) - start) // interval * interval
            elif at - start >= min_session:
                events.append(SessionStarted(session))
                previous = start
            else:
                agenda.add(client_id, start + min_session)  # held back until then
                continue
            if previous + interval <= at:
                _keep_alive(session, previous, at, interval, self._catchup, events)
            agenda.add(
                client_id, start + (max(at, start) - start) // interval * interval + interval
            )
        state.last_seen = at
        state.behind = at - obs.at

    def _end_all(self, state: _Mount, reason: EndReason, events: list[Event]) -> None:
        for session in state.sessions.values():
            self._close(session, state.last_seen, state.last_seen, reason, events)
        state.sessions = {}
        state.agenda = _Agenda()
        for gone in state.gone.values():
            self._close(
                gone.session, gone.last_seen, gone.last_seen, reason, events, slot_held=False
            )
        state.gone = {}

    def _close(
        self,
        session: Session,
        seen: int,
        end: int,
        reason: EndReason,
        events: list[Event],
        *,
        slot_held: bool = True,
        exact: bool = False,
    ) -> None:
        """End a session last sighted at `seen` at `end` (later when an exact notice says so).

        An exact end may come after keep-alives fell due, or after `min_session` was reached,
        since the last poll: those events come first, so that every session that ends has
        started and its events add up to its length. It never ends before what was sent.
        """
        start = session.started_at
        interval = self._interval
        seen = max(seen, start)
        counted = seen - start >= self._min_session
        previous = start + (seen - start) // interval * interval
        end = max(end, previous if counted else start)
        if slot_held:
            self._release_slot(session)
        self._changes.append(SessionClosed(session))
        if session.source in self._exact_ends:
            self._remember(SessionRemembered(session, end, seen, exact))
        if end - start < self._min_session:
            return
        if not counted:
            events.append(SessionStarted(session))
            previous = start
        if previous + interval <= end:
            _keep_alive(session, previous, end, interval, self._catchup, events)
            previous = start + (end - start) // interval * interval
        events.append(SessionEnded(session, end, previous, reason))

    def _release_slot(self, session: Session) -> None:
        identity = (session.ip, session.user_agent)
        pool = self._slots[identity]
        pool.release(session.slot)
        if not pool.used:
            del self._slots[identity]

    def _expire(self, state: _Mount, at: int, events: list[Event]) -> None:
        """End gone sessions whose wait is over at their last sighting."""
        for client_id in [c for c, g in state.gone.items() if g.deadline <= at]:
            gone = state.gone.pop(client_id)
            self._close(
                gone.session,
                gone.last_seen,
                gone.last_seen,
                EndReason.LEFT,
                events,
                slot_held=False,
            )

    def _remember(self, entry: SessionRemembered, *, store: bool = True) -> None:
        self._memory.remember(entry)
        if store:
            self._changes.append(entry)

    def _forget(self, key: tuple[str, str], at: int) -> None:
        """Drop remembered sessions of a mount that ended more than `RECENT_SECONDS` ago."""
        state = self._mounts.get(key)
        # While a server is silent, notices of its listeners may still come (its log is read
        # on): they are remembered for that long after its last poll.
        horizon = (at if state is None else min(at, state.last_seen)) - RECENT_SECONDS
        for session in self._memory.forget(key, horizon):
            self._changes.append(SessionForgotten(session))

    # -- exact ends and starts ------------------------------------------------------------------

    def _listener_left(self, obs: ListenerLeft, events: list[Event]) -> None:
        start = obs.at - plausible(obs.duration)
        # Sessions hold listeners as `admit` left them (proxy resolved, [privacy] applied): a
        # log line is matched to them as admitted too. None: it would never have counted.
        heard = Listener(obs.client_id, obs.ip, obs.user_agent, 0, obs.referrer, obs.forwarded_for)
        listener = heard if self._admit is None else self._admit(obs.source, heard)
        if obs.mount:
            mounts = [obs.mount]
            state = self._mounts.get((obs.source, obs.mount))
        else:  # a log that does not name the stream (SHOUTcast 2's W3C log): any of the source's
            states = [s for s in self._mounts.values() if s.source == obs.source]
            state = states[0] if len(states) == 1 else None
            known = itertools.chain(self._mounts, self._memory.mounts())
            mounts = sorted({mount for source, mount in known if source == obs.source})
        for mount in mounts:
            live = self._mounts.get((obs.source, mount))
            found = find_session(obs, live, self._memory.of(obs.source, mount), listener, start)
            if found is not None:
                if found.client_id is not None and live is not None:
                    self._end_live(live, found.client_id, obs, events)
                return
        # Never seen by a poll: the whole session at once, if it is known where it listened.
        instance = self._instances.get(obs.source)
        if listener is None or instance is None or (not obs.mount and state is None):
            return
        mount = obs.mount or (state.mount if state is not None else "")
        client_id = obs.client_id or f"log:{start}:{listener.ip}"
        # Its requests come after those of sessions that ended since: a slot none of them used
        # keeps them out of those visits.
        identity = (listener.ip, listener.user_agent)
        remembered = self._memory.of(obs.source, mount).get(instance, {})
        ended = [entry.session for entry in remembered.values()]
        if state is not None:
            ended += [g.session for g in state.gone.values()]
        taken = {s.slot for s in ended if (s.ip, s.user_agent) == identity}
        session = Session(
            obs.source,
            instance,
            mount,
            client_id,
            listener.ip,
            listener.user_agent,
            listener.referrer,
            start,
            self._free_slot(listener.ip, listener.user_agent, taken),
            obs.query,
        )
        self._remember(SessionRemembered(session, obs.at, start, exact=True))
        events.extend(
            replay_session(
                session,
                obs.at,
                keepalive_interval=self._interval,
                catchup_gap=self._catchup,
                min_session=self._min_session,
            )
        )

    def _end_live(
        self, state: _Mount, client_id: str, notice: ListenerLeft, events: list[Event]
    ) -> bool:
        """End an open or gone session of `state` as `notice` says; False if there is none."""
        session = state.sessions.pop(client_id, None)
        if session is not None:
            end = exact_end(session, notice)
            self._close(session, state.last_seen, end, EndReason.LEFT, events, exact=True)
            return True
        gone = state.gone.pop(client_id, None)
        if gone is not None:
            self._close(
                gone.session,
                gone.last_seen,
                exact_end(gone.session, notice),
                EndReason.LEFT,
                events,
                slot_held=False,
                exact=True,
            )
            return True
        return False

    def _listener_joined(self, obs: ListenerJoined, events: list[Event]) -> None:
        state = self._mounts.get((obs.source, obs.mount))
        if state is None or obs.client_id in state.sessions:
            return  # an unpolled mount waits for its first poll, which lists everyone
        if obs.client_id in state.ignored or obs.client_id in state.gone:
            return
        if obs.client_id in self._memory.of(obs.source, obs.mount).get(state.instance, {}):
            return  # ended already: a late notice
        listener = Listener(
            obs.client_id, obs.ip, obs.user_agent, 0, obs.referrer, obs.forwarded_for
        )
        if self._admit is not None:
            admitted = self._admit(obs.source, listener)
            if admitted is None:
                state.ignored.add(obs.client_id)
                return
            listener = admitted
        session = Session(
            obs.source,
            state.instance,
            obs.mount,
            obs.client_id,
            listener.ip,
            listener.user_agent,
            listener.referrer,
            max(obs.at, state.last_seen),
            self._take_slot(listener.ip, listener.user_agent),
            obs.query,
        )
        state.sessions[obs.client_id] = session
        state.agenda.add(obs.client_id, 0)
        self._changes.append(SessionOpened(session))
        if self._min_session == 0:
            events.append(SessionStarted(session))

    def _take_slot(self, ip: str, user_agent: str) -> int:
        return self._slots.setdefault((ip, user_agent), SlotPool()).acquire()

    def _free_slot(self, ip: str, user_agent: str, taken: Collection[int] = ()) -> int:
        pool = self._slots.get((ip, user_agent))
        if pool is not None:
            return pool.smallest(taken)
        slot = 0
        while slot in taken:
            slot += 1
        return slot


_SAMPLE = 101
"""Listeners enough to tell the time by."""


def _time_by_listeners(sessions: Mapping[str, Session], table: ListenerTable) -> int:
    """A poll's time as its listeners tell it: a known one's start plus how long it has been
    connected (the median of a sample, so that no odd value decides); 0 when none is known."""
    told: list[int] = []
    for index, client_id in enumerate(table.client_ids):
        session = sessions.get(client_id)
        if session is not None:
            told.append(session.started_at + plausible(table.details(index).connected))
            if len(told) == _SAMPLE:
                break
    return statistics.median_low(told) if told else 0


def _keep_alive(
    session: Session, previous: int, at: int, interval: int, catchup: int, events: list[Event]
) -> None:
    """The keep-alives due after `previous` up to `at`; the latest always, earlier ones thinned.

    An earlier one is skipped when the next one still comes within `catchup` seconds of the
    previous request, which keeps a Matomo visit whole with fewer requests.
    """
    start = session.started_at
    last_due = start + (at - start) // interval * interval
    # A due time is skipped while the one after it still comes within `catchup` of the previous
    # request, so the ones kept are `step` apart: worked out, not walked interval by interval
    # (a session of a day has hundreds of intervals).
    step = keepalive_step(interval, catchup) * interval
    for due in range(previous + step, last_due, step):
        events.append(SessionKeptAlive(session, due, due - step))
        previous = due
    if last_due > previous:
        events.append(SessionKeptAlive(session, last_due, previous))


def replay_session(
    session: Session,
    end: int,
    *,
    keepalive_interval: int,
    catchup_gap: int | None = None,
    min_session: int = 0,
    reason: EndReason = EndReason.LEFT,
) -> list[Event]:
    """Every event of a session known only once it is over (a log line, a late notice).

    Nothing when it lasted less than `min_session`, as for a session seen live.
    """
    start = session.started_at
    end = max(end, start)
    if end - start < min_session:
        return []
    events: list[Event] = [SessionStarted(session)]
    catchup = max(keepalive_interval, catchup_gap or 0)
    _keep_alive(session, start, end, keepalive_interval, catchup, events)
    previous = start + (end - start) // keepalive_interval * keepalive_interval
    events.append(SessionEnded(session, end, previous, reason))
    return events


def keepalive_step(interval: int, catchup: int | None) -> int:
    """The intervals between the keep-alives of a session seen late (`_keep_alive`)."""
    return max(1, max(interval, catchup or 0) // interval)


def replayed_requests(seconds: int, interval: int, step: int) -> int:
    """How many events `replay_session` gives a session of `seconds` (not too short), with
    `keepalive_interval=interval` and a `keepalive_step` of `step`, worked out without building
    them: a dry run of a month of log counts millions."""
    # The keep-alives are `step` intervals apart, the last at the last interval passed.
    return 2 - (-(seconds // interval) // step) if seconds > 0 else 2
