"""Campaign parameters in a listener's query string: the part of it worth keeping.

Nothing else of a query is kept or sent as it is: it may hold a password or a token.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

CAMPAIGN_PARAMETERS = frozenset(
    [f"utm_{name}" for name in ("campaign", "term", "source", "medium", "content", "id")]
    + [
        f"{prefix}_{name}"
        for prefix in ("mtm", "pk", "matomo", "piwik")
        for name in (
            *("campaign", "cpn", "kwd", "keyword", "source", "medium"),
            *("content", "cid", "group", "placement"),
        )
    ]
)
"""Query parameters Matomo reads a campaign from: its own and Google's names (core reads the
name and keyword; the MarketingCampaignsReporting plugin also source, medium, content, id,
group and placement)."""


def campaign_of(query: str) -> str:
    """The campaign parameters of a query string, url-encoded in their order ("" for none)."""
    if not query:
        return ""
    return urlencode(
        [(name, value) for name, value in parse_qsl(query) if name.lower() in CAMPAIGN_PARAMETERS]
    )
