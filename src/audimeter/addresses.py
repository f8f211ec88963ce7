"""Listener addresses as servers, headers and users write them: one reading for the whole project.

The same listener must always give the same address, whatever the notation: an IPv4 address
written as IPv6 (`::ffff:203.0.113.5`, which a dual-stack listener socket reports) is that IPv4
address, so that IPv4 filters, proxies and anonymisation apply to it; brackets (`[2001:db8::1]`)
and a zone (`fe80::1%eth0`) are left out. A network written the IPv4-mapped way
(`::ffff:203.0.113.0/120`) is the IPv4 network it covers, for the same reason. What `[privacy] ip`
keeps of an address (`mask_address`) is read the same way, by the admit policy alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from audimeter.config import IpPrivacy

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

_MAPPED = IPv6Network("::ffff:0:0/96")
_IPV4_KEEP = 0xFFFF_FF00  # /24
_IPV6_KEEP = ((1 << 48) - 1) << 80  # /48


def parse_address(text: str) -> Address | None:
    """The address in a server's or a user's text (brackets and a zone allowed), or None."""
    try:
        address = ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:
            return IPv6Address(int(address))
    return address


def unmapped_network(network: Network) -> Network:
    """An IPv4-mapped IPv6 network as the IPv4 network it covers; any other as it is."""
    if isinstance(network, IPv6Network) and network.subnet_of(_MAPPED):
        prefix = network.prefixlen - _MAPPED.prefixlen
        return IPv4Network((int(network.network_address) & 0xFFFF_FFFF, prefix))
    return network


def within(address: Address | None, networks: Iterable[Network]) -> bool:
    """Whether a parsed address lies in one of the networks (None never does)."""
    return address is not None and any(address in network for network in networks)


def anonymize_address(text: str) -> str:
    """The network of an address: IPv4 /24 (last octet zeroed), IPv6 /48; "" for no address.

    An IPv4 address carried in IPv6 (mapped, or 6to4, whose /48 holds the whole IPv4
    address) becomes the /24 of that IPv4 address.
    """
    address = parse_address(text)
    if address is None:
        return ""
    if isinstance(address, IPv6Address):
        if address.sixtofour is not None:
            address = address.sixtofour
        else:
            return str(IPv6Address(int(address) & _IPV6_KEEP))
    return str(IPv4Address(int(address) & _IPV4_KEEP))


def mask_address(text: str, mode: IpPrivacy) -> str:
    """The address as `[privacy] ip` lets it be kept and sent."""
    if mode == "full":
        return text
    if mode == "anonymize":
        return anonymize_address(text)
    return ""
