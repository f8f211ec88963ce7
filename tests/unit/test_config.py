"""Configuration errors name the key and the problem, in one line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from audimeter.config import TOKEN_ENV, ConfigError, exposure_warning, load_config, parse_config

SOURCE = {"name": "main", "kind": "icecast", "url": "http://127.0.0.1:8000", "password": "pw"}
MATOMO = {"url": "https://matomo.example.org/", "site_id": 1, "token_auth": "secret-token"}


def config(**tables: Any) -> dict[str, Any]:
    return {"sources": [SOURCE], **tables}


def test_minimal_config_has_sane_defaults() -> None:
    cfg = parse_config(config())
    assert cfg.matomo is None
    assert cfg.state.path == Path("audimeter.db")
    (source,) = cfg.sources
    assert (source.username, source.poll_interval, source.outage_grace) == ("admin", 10.0, 120)
    assert cfg.effective_keepalive == 120


def test_report_defaults_and_dayparts() -> None:
    reports = parse_config(config()).reports
    assert (reports.timezone, reports.min_session) == ("UTC", 60)
    assert [(p.name, sorted(p.days), p.start, p.end) for p in reports.parsed_dayparts] == [
        ("Morning drive", [0, 1, 2, 3, 4], 360, 600),
        ("Midday", [0, 1, 2, 3, 4], 600, 900),
        ("Afternoon drive", [0, 1, 2, 3, 4], 900, 1140),
        ("Evening", [0, 1, 2, 3, 4], 1140, 1440),
        ("Weekend", [5, 6], 360, 1440),
        ("Overnight", [0, 1, 2, 3, 4, 5, 6], 0, 360),
    ]
    mine = parse_config(config(reports={"dayparts": {"Breakfast": "Sat-Sun 07:00-10:30"}}))
    (part,) = mine.reports.parsed_dayparts
    assert (part.name, sorted(part.days), part.start, part.end) == ("Breakfast", [5, 6], 420, 630)


def test_matomo_urls() -> None:
    cfg = parse_config(config(matomo=MATOMO))
    assert cfg.matomo is not None
    assert cfg.matomo.tracking_url == "https://matomo.example.org/matomo.php"
    assert cfg.matomo.api_url == "https://matomo.example.org/index.php"
    assert (cfg.matomo.keepalive_interval, cfg.matomo.visit_length) == (120, 1800)
    assert cfg.matomo.now_playing_dimension is None
    titled = parse_config(config(matomo={**MATOMO, "now_playing_dimension": 4})).matomo
    assert titled is not None
    assert titled.now_playing_dimension == 4


ERRORS = {
    "no sources": ({}, "sources: required but missing"),
    "empty sources": ({"sources": []}, "sources: List should have at least 1 item"),
    "unknown key": (config(state={"paht": "x.db"}), "state.paht: not a known key"),
    "unknown table": (config(matomoo={}), "matomoo: not a known key"),
    "wrong type": (
        {"sources": [{**SOURCE, "poll_interval": "often"}]},
        "sources[0].poll_interval: Input should be a valid number",
    ),
    "missing password": (
        {"sources": [{k: v for k, v in SOURCE.items() if k != "password"}]},
        "sources[0].password: required but missing",
    ),
    "unknown kind": (
        {"sources": [{**SOURCE, "kind": "winamp"}]},
        "sources[0].kind: Input should be 'icecast'",
    ),
    "bad url": (
        {"sources": [{**SOURCE, "url": "nope"}]},
        "sources[0].url: Input should be a valid URL",
    ),
    "duplicate names": ({"sources": [SOURCE, SOURCE]}, "two sources are named 'main'"),
    "bad name": ({"sources": [{**SOURCE, "name": "a b"}]}, "sources[0].name: String should match"),
    "keepalive too long": (
        config(matomo={**MATOMO, "keepalive_interval": 1800}),
        "matomo: keepalive_interval (1800) must be less than visit_length (1800)",
    ),
    "keepalive plus poll too long": (
        {
            "sources": [{**SOURCE, "poll_interval": 60}],
            "matomo": {**MATOMO, "keepalive_interval": 1750},
        },
        "plus the longest poll_interval (60) must be less than matomo.visit_length (1800)",
    ),
    "site id": (config(matomo={**MATOMO, "site_id": 0}), "matomo.site_id: Input should be greater"),
    "now playing dimension": (
        config(matomo={**MATOMO, "now_playing_dimension": 0}),
        "matomo.now_playing_dimension: Input should be greater than or equal to 1",
    ),
    "now playing dimension type": (
        config(matomo={**MATOMO, "now_playing_dimension": "title"}),
        "matomo.now_playing_dimension: Input should be a valid integer",
    ),
    "now playing dimension taken": (
        config(matomo={**MATOMO, "now_playing_dimension": 3, "dimensions": {"show": 3}}),
        "matomo: now_playing_dimension (3) is the dimension of the query parameter 'show'",
    ),
    "missing token": (
        config(matomo={k: v for k, v in MATOMO.items() if k != "token_auth"}),
        f"matomo.token_auth: required but missing (set it in the file or in the environment "
        f"variable {TOKEN_ENV})",
    ),
    "report zone": (
        config(reports={"timezone": "Europe/Atlantis"}),
        "reports.timezone: 'Europe/Atlantis' is not a time zone of the IANA database",
    ),
    "report key": (config(reports={"min_sesion": 30}), "reports.min_sesion: not a known key"),
    "report min_session": (
        config(reports={"min_session": 0}),
        "reports.min_session: Input should be greater than or equal to 1",
    ),
    "daypart": (
        config(reports={"dayparts": {"Drive": "Mon-Fri 06:00-10:10"}}),
        "reports.dayparts: 'Drive': 10:10 is not on a quarter hour",
    ),
}


@pytest.mark.parametrize(("data", "message"), ERRORS.values(), ids=ERRORS.keys())
def test_errors(data: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(ConfigError) as error:
        parse_config(data, "audimeter.toml")
    text = str(error.value)
    assert text.startswith("audimeter.toml: ")
    assert message in text
    assert "\n" not in text


def test_token_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    matomo = {k: v for k, v in MATOMO.items() if k != "token_auth"}
    cfg = parse_config(config(matomo=matomo))
    assert cfg.matomo is not None
    assert cfg.matomo.token_auth.get_secret_value() == "from-env"


def test_secrets_stay_out_of_errors_and_reprs() -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(config(matomo={**MATOMO, "site_id": "x"}))
    assert "secret-token" not in str(error.value)
    cfg = parse_config(config(matomo=MATOMO))
    assert "secret-token" not in repr(cfg)
    assert "pw" not in repr(cfg.sources[0]).replace("password=SecretStr('**********')", "")


def test_warns_when_listeners_would_drop_out_of_realtime() -> None:
    cfg = parse_config(config(matomo={**MATOMO, "keepalive_interval": 300}))
    (warning,) = cfg.warnings()
    assert "real-time" in warning


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[state\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    good = tmp_path / "good.toml"
    good.write_text(
        '[[sources]]\nname = "a"\nkind = "icecast"\nurl = "http://x:1"\npassword = "p"\n'
    )
    assert load_config(good).sources[0].name == "a"


def test_source_options_for_many_servers_and_sites() -> None:
    cfg = parse_config(
        {
            "sources": [
                {
                    **SOURCE,
                    "kind": "shoutcast2",
                    "streams": [1, 2],
                    "site_id": 2,
                    "sites": {"/talk": 3},
                    "public_url": "https://radio.example/",
                    "include": ["/live*", "/talk"],
                    "exclude": ["*.ogg"],
                    "trusted_proxies": ["10.0.0.0/8"],
                },
            ],
            "filters": {"exclude_addresses": ["192.0.2.0/24"], "min_session": 60},
        }
    )
    (source,) = cfg.sources
    assert source.stream_base_url == "https://radio.example"
    assert [source.wants_mount(m) for m in ("/live.mp3", "/live.ogg", "/talk", "/jazz")] == [
        True,
        False,
        True,
        False,
    ]
    assert cfg.filters.min_session == 60
    assert cfg.filters.exclude_user_agents  # the defaults stay unless replaced


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"streams": [1]}, 'sources[0]: streams applies to kind = "shoutcast2" only'),
        ({"title": "{station}"}, "sources[0].title: unknown placeholder or stray brace"),
        ({"trusted_proxies": ["10.0.0.300/8"]}, "sources[0].trusted_proxies[0]:"),
        ({"sites": {"/a": 0}}, "sources[0].sites./a: Input should be greater than or equal to 1"),
    ],
)
def test_source_option_errors(source: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config({"sources": [{**SOURCE, **source}]})


def test_bad_user_agent_pattern() -> None:
    with pytest.raises(ConfigError, match=r"filters.exclude_user_agents: '\(' is not a regular"):
        parse_config(config(filters={"exclude_user_agents": ["("]}))


def test_warns_when_a_file_with_secrets_is_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "audimeter.toml"
    path.write_text(
        '[[sources]]\nname = "a"\nkind = "icecast"\nurl = "http://x:1"\npassword = "p"\n'
    )
    cfg = load_config(path)
    path.chmod(0o644)
    warning = exposure_warning(path, cfg)
    assert warning is not None
    assert "chmod 600" in warning
    assert 'p"' not in warning
    path.chmod(0o600)
    assert exposure_warning(path, cfg) is None


@pytest.mark.parametrize(
    ("listen", "host", "port"), [("127.0.0.1:9464", "127.0.0.1", 9464), ("[::1]:9464", "::1", 9464)]
)
def test_metrics_listen(listen: str, host: str, port: int) -> None:
    metrics = parse_config(config(metrics={"listen": listen})).metrics
    assert metrics is not None
    assert (metrics.host, metrics.port) == (host, port)


@pytest.mark.parametrize("listen", ["9464", "::1:9464", "[127.0.0.1]:9464", "host:70000", ":9464"])
def test_metrics_listen_must_be_host_and_port(listen: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config(metrics={"listen": listen}))
    assert "metrics.listen" in str(caught.value)
    assert 'e.g. "127.0.0.1:9464" (IPv6 in brackets: "[::1]:9464")' in str(caught.value)


def test_metrics_off_and_health_defaults() -> None:
    cfg = parse_config(config())
    assert cfg.metrics is None
    assert cfg.health.delivery_lag == 300
    with pytest.raises(ConfigError, match=r"health\.delivery_lag"):
        parse_config(config(health={"delivery_lag": 0}))
