"""Hardened XML parsing for server answers: no entity expansion, no network, no huge trees."""

from __future__ import annotations

from lxml import etree

_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True
)


class FormatError(ValueError):
    """A server's answer is not in the format that was asked for."""


def parse_xml(body: bytes, expected_root: str, what: str) -> etree._Element:
    """Parse `body`, which must have the root element `expected_root`."""
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise FormatError(f"not {what} XML ({exc})") from None
    if root is None:
        raise FormatError(f"not {what} XML (empty answer)")
    if root.tag != expected_root:
        raise FormatError(f"not {what} XML (root element <{root.tag}>)")
    return root
