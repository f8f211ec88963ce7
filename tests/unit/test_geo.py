"""Countries of addresses from a GeoIP database, and the setting that names the database."""

from __future__ import annotations

from pathlib import Path

import pytest

from audimeter.config import ConfigError, parse_config
from audimeter.events import EndReason, Session, SessionEnded, SessionStarted
from audimeter.geo import CACHED_ADDRESSES, Countries
from audimeter.journal import Stamper
from tests.support.geoip import write_countries

SOURCES = [{"name": "main", "kind": "icecast", "url": "http://127.0.0.1:8000", "password": "x"}]


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_countries(tmp_path_factory.mktemp("geo") / "countries.mmdb")


@pytest.mark.parametrize(
    ("address", "country"),
    [
        ("127.0.0.11", "DE"),
        ("127.0.0.12", "FR"),
        ("::ffff:127.0.0.12", "FR"),  # an IPv4 listener on a dual-stack socket
        ("127.0.0.0", "GB"),  # what [privacy] ip = "anonymize" keeps of 127.0.0.11
        ("127.0.1.7", "NL"),  # only a registered country
        ("2001:db8::1", "JP"),
        ("[2001:db8::1]", "JP"),
        ("10.0.0.1", ""),  # not in the database
        ("", ""),  # [privacy] ip = "none"
        ("not an address", ""),
    ],
)
def test_countries_of_addresses(database: Path, address: str, country: str) -> None:
    assert Countries.at(database)(address) == country


def test_without_a_database_no_country_is_known() -> None:
    assert Countries.at(None)("127.0.0.11") == ""


def test_lookups_are_remembered_within_a_bound(database: Path) -> None:
    countries = Countries.at(database)
    for _ in range(3):
        countries("127.0.0.11")
    info = countries.lookup.cache_info()
    assert (info.hits, info.misses, info.maxsize) == (2, 1, CACHED_ADDRESSES)


def test_the_setting_names_a_readable_database(database: Path, tmp_path: Path) -> None:
    config = parse_config({"history": {"geoip": str(database)}, "sources": SOURCES})
    assert config.history.geoip == database
    text = tmp_path / "countries.txt"
    text.write_text("127.0.0.0/8,DE\n")
    for path, problem in [
        (tmp_path / "missing.mmdb", "no such file"),
        (text, "not a MaxMind DB (.mmdb) file"),
        (tmp_path, "a directory, not a database file"),
    ]:
        with pytest.raises(ConfigError) as error:
            parse_config({"history": {"geoip": str(path)}, "sources": SOURCES}, "a.toml")
        assert str(error.value).startswith(f"a.toml: history.geoip: {path}: {problem}")
        assert "\n" not in str(error.value)


def test_a_sessions_end_is_stamped_with_its_player_and_country(database: Path) -> None:
    """What `audimeter run` and `audimeter import` journal: the end carries both, for the
    history; other events neither."""
    config = parse_config({"history": {"geoip": str(database)}, "sources": SOURCES})
    stamp = Stamper(config, "salt")
    session = Session("main", "", "/live", "7", "127.0.0.12", "WinampMPEG/5.66", "", 100, 0)
    end = stamp(SessionEnded(session, 400, 220, EndReason.LEFT))
    assert (end.player, end.country) == ("Winamp", "FR")
    start = stamp(SessionStarted(session))
    assert (start.player, start.country, start.visitor_id) == ("", "", end.visitor_id)
