"""One reading of listener addresses: filters, proxies and anonymisation agree on every notation."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from audimeter.addresses import anonymize_address, parse_address, unmapped_network, within
from audimeter.config import parse_config
from audimeter.observations import Listener
from audimeter.policy import ListenerPolicy, client_address

V4_PROXIES = [ip_network("10.0.0.0/8")]


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("203.0.113.57", "203.0.113.57"),
        (" 203.0.113.57 ", "203.0.113.57"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("::ffff:203.0.113.57", "203.0.113.57"),
        ("[::FFFF:203.0.113.57]", "203.0.113.57"),
        ("::ffff:cb00:7139", "203.0.113.57"),
        ("fe80::1%eth0", "fe80::1"),
        ("::1", "::1"),
        ("2002:cb00:7139::1", "2002:cb00:7139::1"),  # 6to4 is an IPv6 address of its own
    ],
)
def test_parse_address_normalises(text: str, address: str) -> None:
    assert parse_address(text) == ip_address(address)
    assert str(parse_address(text)) == address


@pytest.mark.parametrize("text", ["", "example.org", "203.0.113.256", "1.2.3.4/24", "::g"])
def test_parse_address_refuses_what_is_not_one(text: str) -> None:
    assert parse_address(text) is None


@pytest.mark.parametrize(
    ("network", "unmapped"),
    [
        ("::ffff:203.0.113.0/120", "203.0.113.0/24"),
        ("::ffff:0:0/96", "0.0.0.0/0"),
        ("::ffff:203.0.113.57/128", "203.0.113.57/32"),
        ("203.0.113.0/24", "203.0.113.0/24"),
        ("2001:db8::/32", "2001:db8::/32"),
        ("::/0", "::/0"),  # wider than the mapped range: stays IPv6
    ],
)
def test_unmapped_network(network: str, unmapped: str) -> None:
    assert unmapped_network(ip_network(network)) == ip_network(unmapped)


@pytest.mark.parametrize(
    ("text", "networks", "inside"),
    [
        ("::ffff:203.0.113.5", ["203.0.113.0/24"], True),
        ("203.0.113.5", ["203.0.113.0/24"], True),
        ("::ffff:198.51.100.5", ["203.0.113.0/24"], False),
        ("2001:db8::5", ["2001:db8::/32", "203.0.113.0/24"], True),
        ("garbage", ["0.0.0.0/0"], False),
    ],
)
def test_within(text: str, networks: list[str], inside: bool) -> None:
    assert within(parse_address(text), [ip_network(n) for n in networks]) is inside


def listener(ip: str, xff: str = "") -> Listener:
    return Listener("1", ip, "VLC/3.0.20 LibVLC/3.0.20", 0, "", xff)


@pytest.mark.parametrize(
    ("ip", "excluded"),
    [
        ("203.0.113.5", ["203.0.113.0/24"]),
        ("::ffff:203.0.113.5", ["203.0.113.0/24"]),
        ("[::ffff:203.0.113.5]", ["203.0.113.5/32"]),
        ("203.0.113.5", ["::ffff:203.0.113.0/120"]),
        ("::ffff:203.0.113.5", ["::ffff:203.0.113.0/120"]),
        ("fe80::1%eth0", ["fe80::/64"]),
    ],
)
def test_an_excluded_address_is_left_out_in_any_notation(ip: str, excluded: list[str]) -> None:
    policy = ListenerPolicy(exclude_addresses=[ip_network(n) for n in excluded])
    assert policy("main", listener(ip)) is None
    assert policy("main", listener("198.51.100.9")) is not None


@pytest.mark.parametrize(
    ("header", "client"),
    [
        ("::ffff:203.0.113.5", "203.0.113.5"),
        ("203.0.113.5, ::ffff:10.0.0.2", "203.0.113.5"),  # a mapped proxy hop is skipped
        ("::ffff:203.0.113.5, ::ffff:10.0.0.2, 10.0.0.3", "203.0.113.5"),
        ("198.51.100.1, ::ffff:10.0.0.9", "198.51.100.1"),
        ("::ffff:10.0.0.3, 10.0.0.2", None),  # proxies only
        ("203.0.113.5, ::ffff:garbage, 10.0.0.2", None),
    ],
)
def test_forwarded_for_chains_with_mapped_hops(header: str, client: str | None) -> None:
    assert client_address(header, V4_PROXIES) == client


@pytest.mark.parametrize("proxy", ["10.0.0.2", "::ffff:10.0.0.2", "[::ffff:10.0.0.2]"])
@pytest.mark.parametrize("proxies", [["10.0.0.0/8"], ["::ffff:10.0.0.0/104"]])
def test_a_mapped_proxy_listener_is_resolved(proxy: str, proxies: list[str]) -> None:
    policy = ListenerPolicy(
        trusted_proxies={"main": [ip_network(n) for n in proxies]},
        exclude_addresses=[ip_network("198.51.100.0/24")],
    )
    resolved = policy("main", listener(proxy, xff="203.0.113.5, ::ffff:10.0.0.3"))
    assert resolved == listener("203.0.113.5", xff="203.0.113.5, ::ffff:10.0.0.3")
    assert policy("main", listener(proxy, xff="::ffff:198.51.100.7")) is None


def test_config_networks_in_any_notation() -> None:
    source = {"name": "main", "kind": "icecast", "url": "http://127.0.0.1:8000", "password": "p"}
    config = parse_config(
        {
            "sources": [{**source, "trusted_proxies": ["::ffff:10.0.0.0/104"]}],
            "filters": {"exclude_addresses": ["::ffff:203.0.113.0/120"]},
        }
    )
    policy = ListenerPolicy.from_config(config)
    assert policy("main", listener("203.0.113.5")) is None
    assert policy("main", listener("10.0.0.2", xff="::ffff:203.0.113.9")) is None
    assert policy("main", listener("10.0.0.2", xff="198.51.100.9")) == listener(
        "198.51.100.9", xff="198.51.100.9"
    )


@pytest.mark.parametrize(
    "notations",
    [
        ["203.0.113.57", "::ffff:203.0.113.57", "[::ffff:203.0.113.57]", "::ffff:cb00:7139"],
        ["2001:db8:abcd:12::7", "[2001:DB8:ABCD:12:0:0:0:7]"],
    ],
)
def test_anonymisation_is_the_same_in_every_notation(notations: list[str]) -> None:
    policy = ListenerPolicy(ip="anonymize")
    kept = {anonymize_address(n) for n in notations}
    assert len(kept) == 1
    assert {policy("main", listener(n)) for n in notations} == {listener(kept.pop())}
