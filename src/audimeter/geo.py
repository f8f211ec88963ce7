"""The country of a listener's address, from a GeoIP database in the MaxMind DB format (.mmdb).

The database is the one `[history] geoip` names: MaxMind's GeoLite2/GeoIP2 Country or City, or
DB-IP's "IP to Country Lite", read with MaxMind's `maxminddb` reader. No package of PyPI or Debian
12 ships a current country database in that format, so without the setting no country is
recorded. The address is the one `[privacy] ip` lets audimeter keep: the full one, its /24 or /48
network (`anonymize`, whose country is almost always the address's), or none (no country).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import maxminddb

from audimeter.addresses import parse_address

CACHED_ADDRESSES = 65_536
"""How many addresses' countries are remembered (a lookup costs a few microseconds; listeners
come back, and many share an anonymized network)."""


def open_countries(path: Path) -> maxminddb.Reader:
    """The database at `path`; ValueError saying what is wrong when it cannot be used."""
    if path.is_dir():
        raise ValueError(f"{path}: a directory, not a database file")
    try:
        reader = maxminddb.open_database(str(path))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file (download a GeoIP country database)") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except maxminddb.InvalidDatabaseError:
        raise ValueError(
            f"{path}: not a MaxMind DB (.mmdb) file, such as GeoLite2-Country.mmdb"
        ) from None
    return reader


def _country(record: Any) -> str:
    """The ISO 3166 code in a GeoLite2/DB-IP record: the country, else the registered one."""
    if not isinstance(record, dict):
        return ""
    for key in ("country", "registered_country"):
        part = record.get(key)
        if isinstance(part, dict) and isinstance(part.get("iso_code"), str):
            return str(part["iso_code"])
    return ""


class Countries:
    """`countries(address)`: the ISO country code of an address, "" when unknown."""

    def __init__(self, reader: maxminddb.Reader | None) -> None:
        self._reader = reader
        self.lookup = lru_cache(maxsize=CACHED_ADDRESSES)(self._lookup)

    @classmethod
    def at(cls, path: Path | None) -> Countries:
        return cls(open_countries(path) if path is not None else None)

    def _lookup(self, address: str) -> str:
        parsed = parse_address(address) if self._reader is not None else None
        if parsed is None or self._reader is None:
            return ""
        try:
            return _country(self._reader.get(parsed))
        except ValueError:  # not an address, or IPv6 in an IPv4-only database
            return ""

    def __call__(self, address: str) -> str:
        return self.lookup(address)
