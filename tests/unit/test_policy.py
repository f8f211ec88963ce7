"""Listener policy: filters and proxy resolution."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from audimeter.config import DEFAULT_EXCLUDED_USER_AGENTS
from audimeter.observations import Listener
from audimeter.policy import ListenerPolicy, client_address

PROXIES = [ip_network("10.0.0.0/8"), ip_network("::1/128")]


@pytest.mark.parametrize(
    ("header", "client"),
    [
        ("203.0.113.5", "203.0.113.5"),
        ("203.0.113.5, 10.0.0.2", "203.0.113.5"),
        ("198.51.100.1, 203.0.113.5, 10.0.0.2", "203.0.113.5"),  # the left-most can be forged
        ("10.0.0.3, 10.0.0.2", None),
        ("garbage, 10.0.0.2", None),
        ("[2001:db8::1], ::1", "2001:db8::1"),
        ("", None),
    ],
)
def test_client_address(header: str, client: str | None) -> None:
    assert client_address(header, PROXIES) == client


def listener(ip: str = "10.0.0.2", ua: str = "VLC/3.0", xff: str = "") -> Listener:
    return Listener("1", ip, ua, 0, "", xff)


def test_proxy_resolution_only_for_trusted_proxies_of_that_source() -> None:
    policy = ListenerPolicy(trusted_proxies={"main": PROXIES})
    assert policy("main", listener(xff="203.0.113.5")) == listener(
        ip="203.0.113.5", xff="203.0.113.5"
    )
    assert policy("other", listener(xff="203.0.113.5")) == listener(xff="203.0.113.5")
    direct = listener(ip="192.0.2.1", xff="203.0.113.5")  # not from the proxy: header ignored
    assert policy("main", direct) == direct


@pytest.mark.parametrize(
    ("user_agent", "counted"),
    [
        ("VLC/3.0.18 LibVLC/3.0.18", True),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0", True),
        ("ExoPlayerLib/2.18.1", True),
        ("Icecast 2.4.4", False),
        ("Liquidsoap/2.2.1 (Unix; OCaml 4.14.1)", False),
        ("Streamripper 1.x", False),
        ("UptimeRobot/2.0", False),
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", False),
        ("curl/8.4.0", False),
        ("audimeter/0.1.0", False),
    ],
)
def test_default_user_agent_filters(user_agent: str, counted: bool) -> None:
    policy = ListenerPolicy(exclude_user_agents=DEFAULT_EXCLUDED_USER_AGENTS)
    assert (policy("main", listener(ua=user_agent)) is not None) is counted


def test_address_filters_apply_to_the_resolved_address() -> None:
    policy = ListenerPolicy(
        exclude_addresses=[ip_network("203.0.113.0/24")], trusted_proxies={"main": PROXIES}
    )
    assert policy("main", listener(xff="203.0.113.5")) is None
    assert policy("main", listener(xff="198.51.100.9")) is not None
    assert policy("main", listener(ip="not-an-ip")) is not None


def test_admitted_listeners_with_one_agent_share_one_copy_of_it() -> None:
    policy = ListenerPolicy(exclude_user_agents=DEFAULT_EXCLUDED_USER_AGENTS)
    agent = "VLC/3.0.20 LibVLC/3.0.20"
    copies = ["".join(agent), agent[:4] + agent[4:]]
    assert copies[0] is not copies[1]
    first, second = (policy("main", listener(ua=copy)) for copy in copies)
    assert first is not None
    assert second is not None
    assert first == second == listener(ua=agent)
    assert first.user_agent is second.user_agent
    bot = "curl/8.4.0"
    assert policy("main", listener(ua=bot[:2] + bot[2:])) is None
    assert policy("main", listener(ua=bot)) is None
