"""A small GeoIP country database (MaxMind DB format) for tests, written with `mmdb-writer`.

It maps the loopback listeners of the tests to countries as GeoLite2-Country does (a `country`
with its `iso_code`): 127.0.0.11 DE, 127.0.0.12 FR, 127.0.0.13 US, the rest of 127.0.0.0/24 GB,
2001:db8::/32 JP, 198.51.100.0/24 AT; 127.0.1.0/24 has only a `registered_country` (NL).
Everything else is unknown.
"""

from __future__ import annotations

from pathlib import Path

from mmdb_writer import MMDBWriter
from netaddr import IPSet  # type: ignore[import-untyped]

NETWORKS = {
    "127.0.0.0/24": {"country": {"iso_code": "GB"}},
    "127.0.0.11/32": {"country": {"iso_code": "DE"}},
    "127.0.0.12/32": {"country": {"iso_code": "FR"}},
    "127.0.0.13/32": {"country": {"iso_code": "US"}},
    "127.0.1.0/24": {"registered_country": {"iso_code": "NL"}},
    "2001:db8::/32": {"country": {"iso_code": "JP"}},
    "198.51.100.0/24": {"country": {"iso_code": "AT"}},
}


def write_countries(path: Path) -> Path:
    """Write the database to `path` and return it."""
    writer = MMDBWriter(
        ip_version=6, ipv4_compatible=True, database_type="GeoLite2-Country", languages=["en"]
    )
    # Wider networks first: a later, narrower one takes its addresses over.
    for network in sorted(NETWORKS, key=lambda n: int(n.rsplit("/", 1)[1])):
        writer.insert_network(IPSet([network]), NETWORKS[network])
    writer.to_db_file(str(path))
    return path
