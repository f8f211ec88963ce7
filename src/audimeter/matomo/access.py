"""Which Matomo sites the token may track listeners to, as Matomo's Reporting API tells it.

Tracking with `cip` (and a `cdt` older than a day) needs write or admin access to the site, or a
super user's token. Matomo 5 has no API method that answers this directly; measured on Matomo
5.0.2, `SitesManager.getSitesIdWithAdminAccess` lists a super user's every site and an admin's
sites, and `SitesManager.getSitesIdWithWriteAccess` the sites with write access. Their union is
exactly the set the tracker accepts. A deleted site is in neither, whoever asks.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from audimeter.matomo.api import MatomoApi, MatomoApiError

_METHODS = ("SitesManager.getSitesIdWithAdminAccess", "SitesManager.getSitesIdWithWriteAccess")


class SiteAccess:
    """The sites the token may track to, asked once per round trip and reused for answers
    that are recent enough."""

    def __init__(self, api: MatomoApi, clock: Callable[[], float] = time.monotonic) -> None:
        self._api = api
        self._clock = clock
        self._known: frozenset[int] | None = None
        self._asked_at = 0.0

    async def writable(self, since: float | None = None) -> frozenset[int]:
        """The site ids, from an answer asked for at or after `since` (a `clock()` time) when
        one is at hand, else asked now. Raises `MatomoApiError` when Matomo cannot tell."""
        if self._known is not None and since is not None and self._asked_at >= since:
            return self._known
        asked_at = self._clock()
        answer = await self._api.call(
            "API.getBulkRequest",
            **{f"urls[{i}]": f"method={method}" for i, method in enumerate(_METHODS)},
        )
        self._known = _site_ids(answer)
        self._asked_at = asked_at
        return self._known


def _site_ids(answer: object) -> frozenset[int]:
    if not isinstance(answer, list) or len(answer) != len(_METHODS):
        raise MatomoApiError(f"unexpected answer to {' and '.join(_METHODS)}: {answer!r:.200}")
    sites: set[int] = set()
    for part in answer:
        if isinstance(part, dict) and part.get("result") == "error":
            raise MatomoApiError(str(part.get("message", "error without a message")))
        if not isinstance(part, list):
            raise MatomoApiError(f"unexpected answer to {' and '.join(_METHODS)}: {part!r:.200}")
        try:
            sites.update(int(site) for site in part)
        except (TypeError, ValueError):
            raise MatomoApiError(f"site ids that are not numbers: {part!r:.200}") from None
    return frozenset(sites)
