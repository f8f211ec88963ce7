"""What is settled about a session event when it is journaled, once for every output.

The visitor id (Matomo's `cid`, the JSON lines' `visitor_id`, the history's) is computed here,
with the salt of the session's start (`audimeter.privacy.SaltBook`), so that every output and
the history agree whatever the salts do later. The Matomo site is settled here for the history
only: the Matomo output maps each event with the configuration current when it sends it; so are
the player's name and the country of a session's end (`audimeter.players`, `audimeter.geo`), which
the history keeps instead of the user agent's details and the address.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from audimeter.config import Config, ConfigError
from audimeter.events import Event, Session, SessionEnded
from audimeter.geo import Countries
from audimeter.matomo.mapping import SaltSource, visitor_id
from audimeter.players import player_name
from audimeter.store import Stamped


class Stamper:
    def __init__(self, config: Config, salt: str | SaltSource) -> None:
        self._salt = salt
        default = config.matomo.site_id if config.matomo else None
        self._default = default
        self._sites = {s.name: (s.site_id or default, s.sites) for s in config.sources}
        try:
            self._countries = Countries.at(config.history.geoip)
        except ValueError as exc:  # gone or replaced since the configuration was read
            raise ConfigError(f"history.geoip: {exc}") from None

    def site_id(self, event: Event) -> int | None:
        session = event.session
        site, mounts = self._sites.get(session.source, (self._default, {}))
        return mounts.get(session.mount, site)

    def __call__(self, event: Event) -> Stamped:
        stamped = Stamped(event, visitor_id(self._salt, event.session), self.site_id(event))
        return self._ended(stamped) if isinstance(event, SessionEnded) else stamped

    def _ended(self, stamped: Stamped) -> Stamped:
        """An end with what the history keeps of the session: its player and country."""
        session = stamped.event.session
        return stamped.ended(player_name(session.user_agent), self._countries(session.ip))

    def all(self, events: Iterable[Event]) -> list[Stamped]:
        return [self(event) for event in events]

    def each_session_once(self, events: Iterable[Event]) -> Iterator[Stamped]:
        """The events stamped, hashing the visitor id once per session: for a stream of many
        sessions whose events each end with their `SessionEnded`, as an import plans them."""
        known: dict[int, tuple[Session, str, int | None]] = {}
        for event in events:
            session = event.session
            found = known.get(id(session))
            if found is None or found[0] is not session:
                stamped = self(event)
                known[id(session)] = (session, stamped.visitor_id, stamped.site_id)
            elif event.__class__ is SessionEnded:
                stamped = self._ended(Stamped(event, found[1], found[2]))
            else:
                stamped = Stamped(event, found[1], found[2])
            if event.__class__ is SessionEnded:
                del known[id(session)]
            yield stamped
