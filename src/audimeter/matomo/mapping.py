"""How a listening session becomes exactly one Matomo visit.

Matomo matches a request to the visitor's current visit while the visit's last *action* is newer
than `visit_standard_length`; pings never move that time, and only actions count a visitor as
online. So the mapping sends real actions:

* start: a pageview of the stream URL with `new_visit=1`, dated (`cdt`) at the connect time;
* keep-alive: an event every `keepalive_interval` seconds of listening;
* end: an event dated one second before the last moment the listener was seen (never before the
  start), because Matomo shows a visit's length as `last action - first action + 1`.

So Matomo shows a session of N >= 1 seconds as a visit of N seconds, and one shorter than a
second (a server's 0) as 1 s: a visit with two actions lasts at least a second. Each event's
value `e_v` is the seconds listened since the previous request, so the events of a session add
up to its length (0 for the shorter-than-a-second one).

Where the server reports the query string the listener asked for (Icecast's URL authentication),
its campaign parameters (`CAMPAIGN_PARAMETERS`: utm_*, mtm_*, pk_*, ...) go into the start's
`url`, the landing page, which is where Matomo reads a visit's campaign (`_rcn`/`_rck` would only
attribute conversions). Nothing else of the query goes there: it may hold a password or token.
The keep-alives and the end carry the bare stream URL: with no campaign of their own they leave
the visit's campaign alone. Configured query parameters become custom dimensions.

With `now_playing_dimension`, each keep-alive and end also carries the title on air on the
session's mount at the moment the request is dated (`cdt`), as that action-scoped custom
dimension. It is looked up when the request is made, from the plays the store recorded, not
journaled with the event: the journal stays as it was, and a request sent late (after an outage
of Matomo, a replayed session) still names what was on air then, not what is on air now.

`cid` pins the visitor: a salted hash of the listener's address,
player and slot (the slot separates identical listeners listening at the same time). The salt is
a fixed string or, with `[privacy] salt_rotation`, the salt of the period the session started
in (`audimeter.privacy.SaltBook`), so that every request of a session has the same `cid`.

`cip` and `ua` carry the listener's address and player as `[privacy]` left them; when nothing is
left of one ("") the parameter is not sent at all.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote_plus

from audimeter.campaigns import campaign_of
from audimeter.config import Config, MatomoConfig
from audimeter.events import Event, Session, SessionEnded, SessionKeptAlive, SessionStarted

DIMENSION_MAX = 250  # Matomo cuts custom dimension values there
EVENT_CATEGORY = "Listening"
KEEPALIVE_ACTION = "keep-alive"
END_ACTION = "end"

_UNQUOTED = re.compile(r"[A-Za-z0-9_.~-]*")
"""Values that `quote_plus` leaves as they are."""


def _quoted(value: str) -> str:
    # Mostly hex, digits and IPv4 addresses, which quoting leaves as they are.
    if (value.isalnum() and value.isascii()) or _UNQUOTED.fullmatch(value):
        return value
    return quote_plus(value, safe="")


def _encoded(params: Iterable[tuple[str, str]]) -> str:
    """`&` and `urlencode(params)`, or "" for none."""
    return "".join(f"&{key}={quote_plus(value, safe='')}" for key, value in params)


@dataclass(frozen=True, slots=True)
class _Fixed:
    """The parts of the requests of a source's mount and query that are alike for all its
    sessions: each request is `head` + cid [+ cip] [+ ua] + the part of its kind + its times."""

    head: str
    """Up to `cid=`."""
    start: str
    """After `ua`, up to the start's `cdt=`."""
    keepalive: str
    """After `ua`, up to the keep-alive's `e_v=`."""
    end: str
    """After `ua`, up to the end's `e_v=`."""


SaltSource = Callable[[int], str]
"""The visitor-id salt for a session that started at the given unix time."""
TitleLookup = Callable[[str, str, int], str]
"""The title on air on a source's mount at a unix time ("" for none)."""


def visitor_id(salt: str | SaltSource, session: Session) -> str:
    """16 hex characters, stable for a listener's address and player while the salt is."""
    if not isinstance(salt, str):
        salt = salt(session.started_at)
    return listener_visitor_id(salt, session.ip, session.user_agent, session.slot)


def listener_visitor_id(salt: str, ip: str, user_agent: str, slot: int) -> str:
    """`visitor_id` of the session of this listener and slot."""
    material = "\x1f".join((salt, ip, user_agent, str(slot)))
    return hashlib.sha256(material.encode("utf-8", "surrogateescape")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class SiteMapping:
    """Where a source's sessions go in Matomo and how they are named."""

    site_id: int
    stream_base_url: str
    """Prefix of the mount to form the URL Matomo shows, e.g. http://radio.example:8000."""
    title: str = "{source} {mount}"
    """The pageview title and event name; {source} and {mount} are filled in."""
    mount_sites: Mapping[str, int] = field(default_factory=dict)
    """Sites of single mounts, overriding site_id."""

    def site_for(self, mount: str) -> int:
        return self.mount_sites.get(mount, self.site_id)


class RequestMapper:
    def __init__(
        self,
        salt: str | SaltSource,
        sites: dict[str, SiteMapping],
        default_site_id: int,
        dimensions: Mapping[str, int] | None = None,
        now_playing: tuple[int, TitleLookup] | None = None,
    ) -> None:
        """`salt`: one salt for good, or the salt for a session's start time. `now_playing`:
        the dimension id for the title on air, and where to look the title up."""
        self._salt = salt
        self._sites = sites
        self._dimensions = dict(dimensions or {})
        self._now_playing = now_playing
        # Sessions kept from a source since removed from the configuration still get their
        # keep-alives and end; events need no URL, and starts only come from polled sources.
        self._fallback = SiteMapping(default_site_id, "")
        self._quoted: dict[tuple[str, str], str] = {}
        self._fixed: dict[tuple[str, str, str], _Fixed] = {}

    def _site(self, session: Session) -> SiteMapping:
        return self._sites.get(session.source, self._fallback)

    def title(self, session: Session) -> str:
        return self._site(session).title.format(source=session.source, mount=session.mount)

    def site_id(self, session: Session) -> int:
        return self._site(session).site_for(session.mount)

    def _shared(self, session: Session) -> dict[str, str]:
        """The parameters after `ua` that every request of a session has alike: the stream URL
        and the dimensions of its query."""
        params = {}
        if (base := self._site(session).stream_base_url) != "":
            params["url"] = base + session.mount
        if self._dimensions and session.query:
            query = parse_qs(session.query)
            for name, dimension in self._dimensions.items():
                if query.get(name):
                    params[f"dimension{dimension}"] = query[name][0][:DIMENSION_MAX]
        return params

    def params(self, event: Event, visitor: str | None = None) -> dict[str, str]:
        """The tracking request parameters for one session event; `visitor` is its visitor id
        when it is known already (journaled), else it is computed with the salt."""
        session = event.session
        params = {
            "idsite": str(self.site_id(session)),
            "rec": "1",
            "apiv": "1",
            "cid": visitor_id(self._salt, session) if visitor is None else visitor,
        }
        if session.ip:
            params["cip"] = session.ip
        if session.user_agent:
            params["ua"] = session.user_agent
        params.update(self._shared(session))
        if isinstance(event, SessionStarted):
            params["new_visit"] = "1"
            params["action_name"] = self.title(session)
            params["cdt"] = str(session.started_at)
            if session.referrer:
                params["urlref"] = session.referrer
            campaign = campaign_of(session.query)
            if campaign and "url" in params:
                params["url"] += "?" + campaign
        elif isinstance(event, SessionKeptAlive):
            params.update(self._event(KEEPALIVE_ACTION, session, event.at, event.previous_at))
        elif isinstance(event, SessionEnded):
            params.update(self._event(END_ACTION, session, event.at, event.previous_at))
        return params

    def query_string(self, event: Event, visitor: str | None = None) -> str:
        """`"?" + urlencode(self.params(event, visitor))`, put together from parts quoted once:
        what the requests of a session's mount and query share (`_Fixed`), and each player's
        `ua`. Values of one listener or moment (visitor, address, times) are quoted each time,
        so that the memory stays that of the few repeating values."""
        session = event.session
        key = (session.source, session.mount, session.query)
        fixed = self._fixed.get(key)
        if fixed is None:
            if len(self._fixed) > 10_000:  # queries of URL authentication may all differ
                self._fixed.clear()
            fixed = self._fixed[key] = self._fix(session)
        cid = visitor_id(self._salt, session) if visitor is None else visitor
        text = fixed.head + _quoted(cid)
        if session.ip:
            text += "&cip=" + _quoted(session.ip)
        if session.user_agent:
            text += self._pair("ua", session.user_agent)
        cls = event.__class__
        if cls is SessionStarted:
            text += fixed.start + str(session.started_at)
            if session.referrer:
                text += self._pair("urlref", session.referrer)
            return text
        at: int = event.at
        previous: int = event.previous_at  # type: ignore[union-attr]
        dated = max(session.started_at, at - 1)
        tail = fixed.keepalive if cls is SessionKeptAlive else fixed.end
        text += tail + str(at - previous) + "&cdt=" + str(dated)
        if self._now_playing is not None:
            dimension, title_at = self._now_playing
            on_air = title_at(session.source, session.mount, dated)
            if on_air:
                text += self._pair(f"dimension{dimension}", on_air[:DIMENSION_MAX])
        return text

    def _fix(self, session: Session) -> _Fixed:
        shared = _encoded(self._shared(session).items())
        start = self._shared(session)
        campaign = campaign_of(session.query)
        if campaign and "url" in start:
            start["url"] += "?" + campaign
        title = quote_plus(self.title(session), safe="")
        events = f"&e_c={quote_plus(EVENT_CATEGORY, safe='')}&e_a="
        return _Fixed(
            head=f"?idsite={self.site_id(session)}&rec=1&apiv=1&cid=",
            start=f"{_encoded(start.items())}&new_visit=1&action_name={title}&cdt=",
            keepalive=f"{shared}{events}{quote_plus(KEEPALIVE_ACTION, safe='')}&e_n={title}&e_v=",
            end=f"{shared}{events}{quote_plus(END_ACTION, safe='')}&e_n={title}&e_v=",
        )

    def _pair(self, key: str, value: str) -> str:
        """`&key=value`, quoted, remembered: for values that repeat (players, referrers)."""
        pairs = self._quoted
        text = pairs.get((key, value))
        if text is None:
            if len(pairs) > 100_000:
                pairs.clear()
            text = pairs[key, value] = "&" + key + "=" + quote_plus(value, safe="")
        return text

    def _event(self, action: str, session: Session, at: int, previous_at: int) -> dict[str, str]:
        dated = max(session.started_at, at - 1)
        params = {
            "e_c": EVENT_CATEGORY,
            "e_a": action,
            "e_n": self.title(session),
            "e_v": str(at - previous_at),
            "cdt": str(dated),
        }
        if self._now_playing is not None:
            dimension, title_at = self._now_playing
            on_air = title_at(session.source, session.mount, dated)
            if on_air:
                params[f"dimension{dimension}"] = on_air[:DIMENSION_MAX]
        return params


def mapper_for(
    config: Config,
    matomo: MatomoConfig,
    salt: str | SaltSource,
    title_at: TitleLookup | None = None,
) -> RequestMapper:
    """The request mapper of a configuration, the same for `audimeter run` and `import`;
    `title_at` finds the titles on air (`matomo.now_playing_dimension`)."""
    dimension = matomo.now_playing_dimension
    return RequestMapper(
        salt,
        {
            s.name: SiteMapping(s.site_id or matomo.site_id, s.stream_base_url, s.title, s.sites)
            for s in config.sources
        },
        default_site_id=matomo.site_id,
        dimensions=matomo.dimensions,
        now_playing=None if dimension is None or title_at is None else (dimension, title_at),
    )
