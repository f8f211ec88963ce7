"""The title on air per mount, recorded as plays: a pure state machine beside the sessionizer.

A *play* is one title on air on one mount from `started_at` to `ended_at` (that second
excluded). Sources put the title into each `MountPolled` ("" when nothing is on air, None when
they cannot say, which changes nothing). Like the sessionizer, the tracker reads no clock and does
no I/O: `observe` turns an observation into play changes, `take_changes` hands them to the store,
which commits them with the rest of the same poll.

* A poll showing the open play's title, of the same server instance, within the source's outage
  grace of the previous one: the play goes on.
* A poll showing another title (or none): the open play ends, and the new title (if any) starts,
  at that poll's time. The title changed somewhere between the two polls; dating both at the poll
  that saw it keeps a mount's plays back to back. A title that comes back after another is a new
  play.
* The mount unseen for longer than the outage grace (a `Tick` says so, or the next poll comes that
  late, also across a restart of audimeter), no longer listed (`SourceSeen`), or polled under a new
  server instance: the play ends at the mount's last poll, the last moment it was known on air.
* Time never runs backwards inside a play: a poll dated before the previous one (the clock
  stepped back) counts as that previous one.

Per mount the state is the open play and the mount's last poll with its instance; the store keeps
the plays (`titles`), and the last poll and instance are the sessionizer's mount records, written
in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from audimeter.observations import MountPolled, Observation, SourceSeen, Tick
from audimeter.sessionizer import MountRecord


@dataclass(frozen=True, slots=True)
class Play:
    source: str
    mount: str
    title: str
    started_at: int


@dataclass(frozen=True, slots=True)
class PlayStarted:
    """A play the store must record as open."""

    play: Play


@dataclass(frozen=True, slots=True)
class PlayEnded:
    """The open play of `play.mount` ended at `ended_at`."""

    play: Play
    ended_at: int


PlayChange = PlayStarted | PlayEnded


@dataclass(slots=True)
class _Mount:
    instance: str
    last_seen: int
    play: Play | None = None


class TitleTracker:
    def __init__(
        self,
        *,
        outage_grace: int,
        source_graces: Mapping[str, int] | None = None,
        plays: Iterable[Play] = (),
        mounts: Iterable[MountRecord] = (),
    ) -> None:
        """`plays` are the open plays the store kept, `mounts` the sessionizer's mount records
        (each mount's instance and last poll): a play whose mount is not among them ends at its
        start (nothing tells when it was last on air)."""
        self._grace = outage_grace
        self._graces = dict(source_graces or {})
        self._mounts: dict[tuple[str, str], _Mount] = {
            (m.source, m.mount): _Mount(m.instance, m.last_seen) for m in mounts
        }
        self._changes: list[PlayChange] = []
        for play in plays:
            state = self._mounts.get((play.source, play.mount))
            if state is None:
                self._changes.append(PlayEnded(play, play.started_at))
            else:
                state.play = play

    def take_changes(self) -> list[PlayChange]:
        changes, self._changes = self._changes, []
        return changes

    def observe(self, observation: Observation) -> None:
        if isinstance(observation, MountPolled):
            self._polled(observation)
        elif isinstance(observation, SourceSeen):
            for (source, mount), state in list(self._mounts.items()):
                if source == observation.source and mount not in observation.mounts:
                    self._end(state, state.last_seen)
                    del self._mounts[source, mount]
        elif isinstance(observation, Tick):
            for (source, _), state in self._mounts.items():
                if observation.at - state.last_seen > self._graces.get(source, self._grace):
                    self._end(state, state.last_seen)

    def _polled(self, obs: MountPolled) -> None:
        if obs.title is None:
            return
        key = (obs.source, obs.mount)
        state = self._mounts.get(key)
        if state is None:
            state = self._mounts[key] = _Mount(obs.instance, obs.at)
        at = max(obs.at, state.last_seen)
        grace = self._graces.get(obs.source, self._grace)
        if state.instance != obs.instance or at - state.last_seen > grace:
            self._end(state, state.last_seen)
        play = state.play
        if play is None or play.title != obs.title:
            self._end(state, at)
            if obs.title:
                state.play = Play(obs.source, obs.mount, obs.title, at)
                self._changes.append(PlayStarted(state.play))
        state.instance = obs.instance
        state.last_seen = at

    def _end(self, state: _Mount, at: int) -> None:
        play = state.play
        if play is not None:
            self._changes.append(PlayEnded(play, max(at, play.started_at)))
            state.play = None
